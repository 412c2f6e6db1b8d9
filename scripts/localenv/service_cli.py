"""The `up`/`down` command line shared by the local services' shell entry points."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from scripts.localenv import processes

S = TypeVar("S")


def main(argv: Sequence[str] | None, prog: str, description: str, default_state: Path,
         start: Callable[[Path], S], stop: Callable[[Path], None],
         export: Callable[[S], str]) -> int:
    """`up` starts (or reuses) the service and prints its export line for `eval`;
    `down` stops it and wipes its state directory."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=default_state)
    args = parser.parse_args(argv)
    if args.action == "down":
        stop(args.state_dir)
        return 0
    try:
        service = start(args.state_dir)
    except processes.ServiceStartError as err:
        print(err, file=sys.stderr)
        return 1
    print(export(service))
    return 0
