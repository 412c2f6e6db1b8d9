"""``kubekeeper report``: what a day of runs did, in the order on-call needs it.

The reader aggregates as it reads and keeps no line: counts per group
(agent, task, action, kind, namespace or node, policy rule), a few example
names per group, bytes per node, and the write-ahead intents whose outcome
has not arrived yet. An intent leaves that set when its outcome (same
``run`` and ``op``) is read, so it holds at most the actions in flight per
run plus those of killed runs, which are exactly what on-call must see.
Memory is bounded by the number of groups, never by the number of lines.

A run's lines are read in the order it wrote them (as in its pod's log):
an outcome read before its intent counts, and the intent then shows as
unfinished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.report import printable
from agents.report_lines import Counts, records
from agents.units import format_bytes

EXAMPLES = 3
MAX_PROBLEMS = 1000
"""Distinct (group, error) pairs kept; further errors of a group are merged."""
MAX_RUNS_LISTED = 1000
MAX_PLACES = 10_000
_MORE = "(more distinct errors)"
_PENDING_FIELDS = ("ts", "agent", "task", "node", "run", "op", "kind", "namespace", "name",
                   "action", "reason", "recycle_bin")
_SUMMARY_FIELDS = ("ts", "agent", "task", "node", "run", "dry_run", "aborted", "error")


@dataclass(frozen=True)
class Filters:
    """Which lines count. Times are RFC 3339 in the report's own form (``…T15:47:44.120Z``),
    so they compare as text; an empty set admits everything."""

    since: str | None = None
    until: str | None = None
    kinds: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    results: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()

    def when(self, line: dict[str, Any]) -> bool:
        ts = line.get("ts") or ""
        return (self.since is None or ts >= self.since) and (self.until is None
                                                              or ts < self.until)

    def run(self, line: dict[str, Any]) -> bool:
        """A summary: kind, namespace and result do not apply to a whole run."""
        return (self.when(line) and (not self.nodes or line.get("node") in self.nodes)
                and (not self.tasks or line.get("task") in self.tasks))

    def action(self, line: dict[str, Any], result: str | None) -> bool:
        return (self.run(line) and (not self.kinds or line.get("kind") in self.kinds)
                and (not self.namespaces or line.get("namespace") in self.namespaces)
                and (not self.results or result in self.results))


@dataclass
class _Group:
    """Counts by result, bytes, a few example names and (problems) the places seen."""

    results: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    examples: list[str] = field(default_factory=list)
    places: set[str] = field(default_factory=set)

    def add(self, result: str, size: int, name: str) -> None:
        self.results[result] += 1
        self.bytes += size
        if len(self.examples) < EXAMPLES and name not in self.examples:
            self.examples.append(name)

    def seen_at(self, where: str) -> None:
        if len(self.places) < MAX_PLACES:
            self.places.add(where)


class Digest:
    """The running aggregate of report lines; ``add`` one line at a time."""

    def __init__(self, filters: Filters | None = None):
        self.filters = filters or Filters()
        self._everything = self.filters == Filters()
        self.counts = Counts()
        self.filtered = 0
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.problems: dict[tuple[str, ...], _Group] = {}
        self.reclaimed: dict[str, Counter[str]] = {}
        self.pending: dict[tuple[str, int], dict[str, Any]] = {}
        self.runs = Counter[str]()
        self.aborted: list[dict[str, Any]] = []
        self.run_errors: list[dict[str, Any]] = []

    def read(self, lines: Iterable[str]) -> Digest:
        for line in records(lines, self.counts):
            self.add(line)
        return self

    def add(self, line: dict[str, Any]) -> None:
        event = line["event"]
        if event == "action":
            self._outcome(line)
        elif event == "action.intent":
            if self._admits(line, "pending" if self.filters.results else None):
                self.pending[(line.get("run"), line.get("op"))] = line
            else:
                self.filtered += 1
        elif self.filters.run(line):
            self._summary(line)
        else:
            self.filtered += 1

    def _admits(self, line: dict[str, Any], result: str | None) -> bool:
        return self._everything or self.filters.action(line, result)

    def _outcome(self, line: dict[str, Any]) -> None:
        get = line.get
        self.pending.pop((get("run"), get("op")), None)
        result = get("result")
        if not self._admits(line, result):
            self.filtered += 1
            return
        agent, verb, name = get("agent"), get("action"), get("name")
        where = get("node") if agent == "node" else get("namespace") or "-"
        rule = (get("reason") or "").partition(": ")[0]  # the policy key path
        size = get("bytes") or 0
        key = (agent, get("task"), verb, get("kind"), where, rule)
        group = self.groups.get(key) or self.groups.setdefault(key, _Group())
        if result == "done" or result == "planned":
            group.add(result, size, name)
            if agent == "node" and (verb == "delete" or verb == "truncate"):
                self.reclaimed.setdefault(where, Counter())[result] += size
            return
        group.add(result, 0, name)
        if result == "failed" or result == "skipped":
            self._problem((result, *key[:4], rule, get("error") or ""), where, name)

    def _problem(self, key: tuple[str, ...], where: str, name: str) -> None:
        """Problems are grouped across places (the same error on 300 nodes is one row)."""
        problem = self.problems.get(key)
        if problem is None:
            if len(self.problems) >= MAX_PROBLEMS:
                key = (*key[:-1], _MORE)
            problem = self.problems.setdefault(key, _Group())
        problem.add(key[0], 0, f"{where}/{name}")
        problem.seen_at(where)

    def _summary(self, line: dict[str, Any]) -> None:
        self.runs["runs"] += 1
        self.runs["dry_runs"] += bool(line.get("dry_run"))
        self.runs["with_errors"] += bool(line.get("errors"))
        kept = {k: line.get(k) for k in _SUMMARY_FIELDS}
        for flag, listed in (("aborted", self.aborted), ("error", self.run_errors)):
            if line.get(flag):
                self.runs[flag] += 1
                if len(listed) < MAX_RUNS_LISTED:
                    listed.append(kept)

    def results(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for group in self.groups.values():
            total.update(group.results)
        return total

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary (``-o json``)."""
        def rows(groups: dict[tuple[str, ...], _Group], names: tuple[str, ...]) -> list[dict]:
            return [{**dict(zip(names, key, strict=True)), "count": g.results.total(),
                     "results": dict(g.results), "bytes": g.bytes, "examples": g.examples,
                     **({"places": len(g.places)} if g.places else {})}
                    for key, g in sorted(groups.items(), key=lambda kv: -kv[1].results.total())]

        group_keys = ("agent", "task", "action", "kind", "where", "rule")
        return {
            "input": {"lines": self.counts.lines, "torn": self.counts.torn,
                      "foreign": self.counts.foreign, "filtered_out": self.filtered},
            "runs": {k: self.runs[k] for k in ("runs", "dry_runs", "with_errors", "aborted",
                                               "error")},
            "results": dict(self.results()),
            "problems": rows(self.problems, ("result", *group_keys[:4], "rule", "error")),
            "unfinished": sorted(({k: p.get(k) for k in _PENDING_FIELDS}
                                  for p in self.pending.values()), key=lambda p: str(p["ts"])),
            "aborted_runs": self.aborted,
            "run_errors": self.run_errors,
            "groups": rows(self.groups, group_keys),
            "reclaimed_by_node": {node: dict(c) for node, c in sorted(self.reclaimed.items())},
        }


def render_text(digest: dict[str, Any]) -> str:
    """The on-call view of ``Digest.as_json()``: problems first, then what was done."""
    out = [_headline(digest)]
    _section(out, "FAILED AND SKIPPED", digest["problems"], _problem_row)
    _section(out, "UNFINISHED: intent written, no outcome (the run was killed; the object "
                  "may or may not have changed)", digest["unfinished"], _unfinished_row)
    _section(out, "ABORTED BY THE CAP (the run changed nothing)", digest["aborted_runs"],
             lambda r: _run_row(r, r["aborted"]))
    _section(out, "RUN ERRORS", digest["run_errors"], lambda r: _run_row(r, r["error"]))
    deleted = [g for g in digest["groups"] if g["action"] == "delete"]
    _section(out, "DELETED, by namespace and kind", [g for g in deleted if g["agent"] != "node"],
             _group_row)
    _section(out, "DELETED, by node", [g for g in deleted if g["agent"] == "node"], _group_row)
    _section(out, "RECLAIMED PER NODE", list(digest["reclaimed_by_node"].items()), _bytes_row)
    _section(out, "OTHER ACTIONS (patches, creates, truncations, findings)",
             [g for g in digest["groups"] if g["action"] != "delete"], _group_row)
    return "".join(f"{printable(line)}\n" for line in out)


def _headline(d: dict[str, Any]) -> str:
    i, r = d["input"], d["runs"]
    results = ", ".join(f"{n:,} {k}" for k, n in sorted(d["results"].items())) or "no actions"
    return (f"{i['lines']:,} lines read ({i['torn']:,} torn, {i['foreign']:,} not kubekeeper's, "
            f"{i['filtered_out']:,} filtered out); {r['runs']:,} runs ({r['dry_runs']:,} dry), "
            f"{r['with_errors']:,} with errors, {r['aborted']:,} aborted by the cap; "
            f"actions: {results}")


def _section(out: list[str], title: str, rows: list, render: Any) -> None:
    if rows:
        out.extend(("", f"{title} ({len(rows)})"))
        out.extend(f"  {render(row)}" for row in rows)


def _where(g: dict[str, Any]) -> str:
    return f"node {g['where']}" if g["agent"] == "node" else f"namespace {g['where']}"


def _group_row(g: dict[str, Any]) -> str:
    results = ", ".join(f"{n:,} {r}" for r, n in sorted(g["results"].items()))
    size = f", {format_bytes(g['bytes'])}" if g["bytes"] else ""
    return (f"{g['count']:>7,} {g['action']} {g['kind']:<12} {_where(g)}  ({results}{size})  "
            f"[{g['rule']}]  {g['agent']}/{g['task']}  e.g. {', '.join(g['examples'])}")


def _problem_row(p: dict[str, Any]) -> str:
    places = "nodes" if p["agent"] == "node" else "namespaces"
    return (f"{p['count']:>7,} {p['result']:<7} {p['action']} {p['kind']} in {p['places']:,} "
            f"{places}  [{p['rule']}]  {p['agent']}/{p['task']}: {p['error']}  "
            f"e.g. {', '.join(p['examples'])}")


def _unfinished_row(p: dict[str, Any]) -> str:
    where = f"{p['namespace']}/" if p.get("namespace") else ""
    node = f" on {p['node']}" if p.get("node") else ""
    kept = f"; complete manifest in {p['recycle_bin']}" if p.get("recycle_bin") else ""
    return (f"{p['ts']} {p['agent']}/{p['task']}{node} run {p['run']} op {p['op']}: "
            f"{p['action']} {p['kind']} {where}{p['name']}  [{p['reason']}]{kept}")


def _run_row(r: dict[str, Any], why: str) -> str:
    node = f" on {r['node']}" if r.get("node") else ""
    return f"{r['ts']} {r['agent']}/{r['task']}{node} run {r['run']}: {why}"


def _bytes_row(item: tuple[str, dict[str, int]]) -> str:
    node, sizes = item
    done = format_bytes(sizes.get("done", 0))
    planned = f", {format_bytes(sizes['planned'])} in dry runs" if sizes.get("planned") else ""
    return f"{node}: {done} reclaimed{planned}"
