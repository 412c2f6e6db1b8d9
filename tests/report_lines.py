"""Reading a run's report back in tests: outcome lines joined with their intent lines."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse(text: str | Iterable[str]) -> list[dict[str, Any]]:
    """Every JSON line, in order."""
    lines = text.splitlines() if isinstance(text, str) else text
    return [json.loads(line) for line in lines if line.strip()]


def outcomes(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``action`` lines, each with the details its intent line carried (the manifest)."""
    ahead = {(line["run"], line["op"]): line for line in lines
             if line["event"] == "action.intent"}
    joined = []
    for line in lines:
        if line["event"] == "action":
            intent = ahead.get((line["run"], line["op"]), {})
            joined.append({**{k: v for k, v in intent.items() if k not in line}, **line})
    return joined


def intents(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "action.intent"]


def summaries(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "run.summary"]
