"""Reading report lines back: from files, stdin or ``kubectl logs --prefix`` output.

Both ``kubekeeper report`` and ``kubekeeper restore`` read what runs wrote,
and what on-call has at hand is rarely a clean file: ``kubectl logs -l
app.kubernetes.io/name=kubekeeper --prefix --all-containers`` puts
``[pod/<name>/<container>] `` before every line and mixes in the stderr
diagnostics, and a pod killed mid-write leaves half a line. So every line is
taken on its own: a prefix is stripped, a line that is not one of
kubekeeper's is counted as foreign, one that starts like JSON but does not
parse is counted as torn, and neither ever stops the reading.
"""

from __future__ import annotations

import json
import json.scanner
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

EVENTS = frozenset({"action", "action.intent", "run.summary"})
_AGENTS = frozenset({"node", "cluster"})
_PREFIX = re.compile(r"\[[^\]\s]+\] ")
_scan = json.scanner.make_scanner(json.JSONDecoder())
"""The C scanner ``json.loads`` ends in, called without its two whitespace regexes."""


@dataclass
class Counts:
    """What the input held besides kubekeeper's lines."""

    lines: int = 0
    torn: int = 0
    foreign: int = 0


def records(lines: Iterable[str], counts: Counts) -> Iterator[dict[str, Any]]:
    """Every kubekeeper report line of ``lines``, parsed, in order; the rest counted.

    Lazy and one line at a time, so a day of logs is read in constant memory.
    """
    for raw in lines:
        counts.lines += 1
        text = raw
        if text.startswith("[") and (prefix := _PREFIX.match(text)):
            text = text[prefix.end():]
        if not text.startswith("{"):
            counts.foreign += bool(text.strip())
            continue
        try:
            line, end = _scan(text, 0)
        except (StopIteration, ValueError):
            counts.torn += 1
            continue
        if text[end:].strip():
            counts.torn += 1
        elif type(line) is dict and line.get("event") in EVENTS and line.get("agent") in _AGENTS:
            yield line
        else:
            counts.foreign += 1


def opened(sources: Iterable[str]) -> Iterator[str]:
    """The lines of each file in turn (``-`` is stdin); undecodable bytes become U+FFFD,
    so a torn multi-byte character tears one line, not the whole read."""
    for source in sources:
        if source == "-":
            yield from sys.stdin
            continue
        with open(source, encoding="utf-8", errors="replace") as stream:
            yield from stream
