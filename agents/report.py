"""The run report: one line per action and one ``run.summary`` per run.

JSON lines go to stdout for log collectors; a terminal gets the same facts as
text.  Every line is flushed as it is written, so a run killed half-way still
leaves the record of what it already did.

Write-ahead: before an executor changes anything it writes an
``action.intent`` line (with the deleted object's manifest, where there is
one) and only then makes the call; the outcome follows as the ``action``
line with the same ``run`` and ``op``.  A run killed between the two leaves
an intent without an outcome, never a change without a record.

Every value that reaches a terminal has its control characters escaped:
names and labels come from untrusted sources, and a label holding
``ESC]0;...BEL`` must not retitle the admin's terminal.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from agents.actions import Action, Outcome, Result, Verb
from agents.units import format_bytes

_LEVELS = {Result.DONE: "info", Result.PLANNED: "info", Result.SKIPPED: "warning",
           Result.FAILED: "error"}
_FREES_SPACE = (Verb.DELETE, Verb.TRUNCATE)
_WRITTEN_AHEAD = ("manifest",)
"""Details the intent line carries, so the outcome line need not repeat them."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class RawJSON(str):
    """A value that is already JSON text: embedded in the line as is, never re-encoded.

    Deleted objects' manifests travel as the compact text they were listed as;
    parsing and encoding them again per line would cost more than the delete.
    """


def rfc3339(moment: datetime | None = None) -> str:
    moment = moment.astimezone(UTC) if moment else datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(moment: datetime | None = None) -> str:
    """A run's id: its start time and a random suffix (``20261202T011323Z-3fa2c1``)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def printable(value: object) -> str:
    """``str(value)`` with control characters escaped (``\\x1b``), safe for a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def choose_format(requested: str, stream: IO[str]) -> str:
    """``auto`` means text on a terminal and JSON lines anywhere else."""
    if requested != "auto":
        return requested
    return "text" if stream.isatty() else "json"


class ReportObserver(Protocol):
    """Sees each outcome line and the summary as written (``agents.metrics.Metrics``).

    It reads the line itself, so whatever it derives agrees with the report.
    """

    def action(self, line: dict[str, Any]) -> None: ...

    def summary(self, line: dict[str, Any]) -> None: ...


class Reporter:
    """Writes action lines and the summary for one run; safe across threads."""

    def __init__(self, agent: str, task: str, dry_run: bool, node: str | None = None,
                 stream: IO[str] | None = None, fmt: str = "json", run_id: str | None = None,
                 observer: ReportObserver | None = None):
        self.agent, self.task, self.dry_run, self.node = agent, task, dry_run, node
        self.run_id = run_id or new_run_id()
        self._ops = 0
        self._ahead: set[int] = set()
        self._stream = stream or sys.stdout
        self._format = fmt
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._bytes = 0
        self._failed = 0
        self._started = time.monotonic()
        self._observer = observer

    def intent(self, action: Action, task: str | None = None, op: int | None = None) -> int:
        """Record, flushed, that ``action`` is about to be carried out; returns its ``op``.

        The caller makes the change only after this returns, and reports the
        outcome with ``action(outcome, op=op)``. Given an ``op`` already written
        ahead, the line supersedes that op's intent: the action was planned again
        (a 409) and a reader keeps the last intent of each op, whose manifest is
        the version actually sent.
        """
        with self._lock:
            if op is None:
                self._ops += 1
                op = self._ops
            self._ahead.add(op)
        line = self._line(action, task, op, "action.intent", "pending", "info")
        line["bytes"], line["error"] = action.bytes, None
        for key, value in action.details.items():
            line.setdefault(key, value)
        out = self._render(line, _text_intent)
        with self._lock:
            self._write(out)
        return op

    def action(self, outcome: Outcome, task: str | None = None, op: int | None = None) -> None:
        """The outcome line of one action (after its intent line, if it had one)."""
        action = outcome.action
        with self._lock:
            if op is None:
                self._ops += 1
                op = self._ops
            ahead = op in self._ahead
            self._ahead.discard(op)
        line = self._line(action, task, op, "action", str(outcome.result), _level(outcome))
        line["bytes"], line["error"] = _bytes(outcome), outcome.error
        for key, value in {**action.details, **outcome.details}.items():
            if not (ahead and key in _WRITTEN_AHEAD):
                line.setdefault(key, value)
        out = self._render(line, _text_action)
        with self._lock:
            self._counts[(action.kind, str(outcome.result))] += 1
            if action.verb in _FREES_SPACE and outcome.result in (Result.DONE, Result.PLANNED):
                self._bytes += _bytes(outcome) or 0
            self._failed += outcome.result is Result.FAILED
            self._write(out)
            if self._observer is not None:
                self._observer.action(line)

    def _line(self, action: Action, task: str | None, op: int, event: str, result: str,
              level: str) -> dict[str, Any]:
        return {
            "ts": rfc3339(), "level": level, "event": event, "agent": self.agent,
            "task": task or self.task, "node": self.node, "dry_run": self.dry_run,
            "run": self.run_id, "op": op, "kind": action.kind, "id": action.id,
            "name": action.name, "namespace": action.namespace, "action": str(action.verb),
            "reason": action.reason, "result": result,
        }

    def note(self, rule: str, message: str, **fields: Any) -> None:
        """A ``run.note`` line: a fact about the whole run that no action carries (no
        usage source, say), written once, before the actions when the caller plans first."""
        line = {"ts": rfc3339(), "level": "warning", "event": "run.note", "agent": self.agent,
                "task": self.task, "node": self.node, "dry_run": self.dry_run,
                "run": self.run_id, "rule": rule, "message": message, **fields}
        out = self._render(line, _text_note)
        with self._lock:
            self._write(out)

    def summary(self, aborted: str | None = None, error: str | None = None,
                task: str | None = None, runtimes: list[str] | None = None) -> dict[str, Any]:
        """Write the run's last line and return it (the CLI derives the exit code from it).

        ``runtimes``: the node runtimes the run cleaned, for the node agent's summary.
        """
        with self._lock:
            by_kind: dict[str, dict[str, int]] = {}
            by_result: Counter[str] = Counter()
            for (kind, result), n in sorted(self._counts.items()):
                by_kind.setdefault(kind, {})[result] = n
                by_result[result] += n
            line = {
                "ts": rfc3339(), "level": "error" if error or self._failed else "info",
                "event": "run.summary", "agent": self.agent, "task": task or self.task,
                "node": self.node, "dry_run": self.dry_run, "run": self.run_id,
                "actions": sum(by_result.values()),
                "results": dict(by_result), "counts": by_kind, "bytes_reclaimed": self._bytes,
                "duration_s": round(time.monotonic() - self._started, 3),
                "errors": self._failed + (1 if error else 0), "aborted": aborted, "error": error,
            }
            if runtimes is not None:
                line["runtimes"] = runtimes
            self._write(self._render(line, _text_summary))
            if self._observer is not None:
                self._observer.summary(line)
        return line

    def _render(self, line: dict[str, Any], as_text: Callable[[dict[str, Any]], str]) -> str:
        """Encode outside the lock, so parallel workers only queue for the write itself."""
        if self._format != "json":
            return as_text(line)
        raw = {k: v for k, v in line.items() if isinstance(v, RawJSON)}
        text = json.dumps({k: v for k, v in line.items() if k not in raw}, default=str)
        return text[:-1] + "".join(f", {json.dumps(k)}: {v}" for k, v in raw.items()) + "}"

    def _write(self, out: str) -> None:
        self._stream.write(out + "\n")
        self._stream.flush()


def _level(outcome: Outcome) -> str:
    if outcome.action.verb is Verb.REPORT and outcome.result is Result.DONE:
        return "warning"
    return _LEVELS[outcome.result]


def _bytes(outcome: Outcome) -> int | None:
    return outcome.bytes if outcome.bytes is not None else outcome.action.bytes


def _text_action(line: dict[str, Any]) -> str:
    return _text_line(line, line["result"].upper())


def _text_intent(line: dict[str, Any]) -> str:
    return _text_line(line, "START")


def _text_line(line: dict[str, Any], status: str) -> str:
    where = f"{line['namespace']}/" if line.get("namespace") else ""
    size = f" {format_bytes(line['bytes'])}" if line.get("bytes") else ""
    error = f"  error: {line['error']}" if line.get("error") else ""
    ident = f" ({line['id'][:19]})" if line.get("id") and line["id"] != line["name"] else ""
    # A node with Docker and containerd is cleaned on both: say which one each line is about.
    runtime = f" on {line['runtime']}" if line.get("runtime") else ""
    return printable(f"{line['ts'][11:19]} {status:8} {line['action']:8} {line['kind']} "
                     f"{where}{line['name']}{ident}{runtime}{size}  [{line['reason']}]{error}")


def _text_note(line: dict[str, Any]) -> str:
    return printable(f"{line['ts'][11:19]} NOTE     {line['rule']}: {line['message']}")


def _text_summary(line: dict[str, Any]) -> str:
    mode = "dry-run" if line["dry_run"] else "real run"
    results = ", ".join(f"{n} {r}" for r, n in sorted(line["results"].items())) or "nothing to do"
    kinds = "; ".join(f"{k}: " + ", ".join(f"{n} {r}" for r, n in v.items())
                      for k, v in line["counts"].items())
    aborted = f"\n  ABORTED: {printable(line['aborted'])}" if line["aborted"] else ""
    error = f"\n  ERROR: {printable(line['error'])}" if line["error"] else ""
    head = (f"== {line['agent']} {line['task']} summary ({mode}, run {line['run']}): {results}"
            f"{f' ({kinds})' if kinds else ''}; {format_bytes(line['bytes_reclaimed'])} "
            f"{'reclaimable' if line['dry_run'] else 'reclaimed'}; {line['errors']} errors; "
            f"{line['duration_s']}s")
    return printable(head) + aborted + error


def as_text(line: dict[str, Any]) -> str:
    """One JSON report line as ``--log-format text`` would have written it: how a pod's
    JSON log (``kubectl logs``) reads for a person, with the same words as a text run."""
    render = {"action.intent": _text_intent, "action": _text_action, "run.note": _text_note,
              "run.summary": _text_summary}.get(line.get("event", ""))
    return render(line) if render else printable(json.dumps(line, default=str))


def annotated(outcome: Outcome) -> Action:
    """A plan table's row: the action, with why it would not happen, if it would not."""
    action = outcome.action
    if outcome.result in (Result.FAILED, Result.SKIPPED):
        return replace(action, why=f"{action.why} [{outcome.result}: {outcome.error}]")
    return action


def plan_table(actions: Iterable[Action]) -> str:
    """The ``plan`` subcommand's terminal view: what would happen, with bytes per item."""
    rows = [("ACTION", "KIND", "NAME", "BYTES", "REASON")]
    total = 0
    for a in actions:
        where = f"{a.namespace}/" if a.namespace else ""
        rows.append((str(a.verb), a.kind, f"{where}{a.name}", format_bytes(a.bytes)
                     if a.bytes is not None else "-", a.reason))
        total += a.bytes or 0
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [printable("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                       + "  " + r[4]) for r in rows]
    lines.append(f"{len(rows) - 1} actions, {format_bytes(total)} would be reclaimed")
    return "\n".join(lines)
