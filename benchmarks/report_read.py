"""``kubekeeper report`` over a day of logs from 1,000 nodes, against plain ``json.loads``.

``.venv/bin/python -m benchmarks.report_read [--lines 1000000 --nodes 1000 --repeat 3]``

It writes the day as ``kubectl logs --prefix --all-containers`` would show it
(every line prefixed ``[pod/<pod>/<container>] ``): each node's cleanup runs
every 30 minutes and log audits every hour, with intents and outcomes, a
little stderr noise, a few torn lines and killed runs, one run aborted by the
cap, and the hourly jobs CronJob whose deletion intents carry manifests.
Then, each in a fresh process and timed from spawn to exit, it runs

- the baseline: strip the prefix and ``json.loads`` every line, nothing else;
- ``kubekeeper report FILE -o json`` (the whole command, imports included),

at a tenth of the lines and at the full count, so the table shows both the
rate and that peak RSS does not grow with the input. It prints a Markdown
table and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import machine

ROOT = Path(__file__).resolve().parents[1]
_DAY = datetime(2026, 12, 1, tzinfo=UTC)
_BASELINE = """
import json, sys
n = 0
with open(sys.argv[1], encoding="utf-8", errors="replace") as lines:
    for line in lines:
        try:
            json.loads(line.partition("] ")[2])
        except ValueError:
            pass
        n += 1
print(n)
"""


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    rss_mib: float


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.report_read", description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kk-report-bench-") as tmp:
        rows = []
        for lines in (args.lines // 10, args.lines):
            path = Path(tmp) / f"day-{lines}.log"
            started = time.monotonic()
            size = generate(path, lines, args.nodes)
            made = time.monotonic() - started
            rows.append((lines, size, made, *measure(path, args.repeat)))
    print(table(rows, args))
    return 0


def generate(path: Path, lines: int, nodes: int) -> int:
    """Write ``lines`` lines of a day's logs; returns the file's size in bytes."""
    rng = random.Random(14)
    per_node = max(1, lines // nodes)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for node in range(nodes):
            prefix = f"[pod/kubekeeper-node-{node:05x}/agent] "
            for text in _node_day(rng, f"node-{node:04d}", per_node, aborted=node == 7):
                out.write(prefix + text + "\n")
                written += 1
        cluster = "[pod/kubekeeper-jobs-29384711-x2b8k/jobs] "
        for text in _cluster_day(rng, lines - written):
            out.write(cluster + text + "\n")
    return path.stat().st_size


def _node_day(rng: random.Random, node: str, budget: int, aborted: bool):
    """Cleanup runs every 30 min and log audits every hour until ``budget`` lines."""
    runs = 48 + 24
    per_run = max(2, budget // runs)
    made = 0
    for number in range(runs):
        task = "cleanup" if number < 48 else "logs"
        start = _DAY + timedelta(minutes=30 * number if task == "cleanup" else 60 * (number - 48))
        run = f"{start:%Y%m%dT%H%M%SZ}-{rng.randrange(16 ** 6):06x}"
        want = min(per_run, budget - made) if number < runs - 1 else budget - made
        for text in _run_lines(rng, node, task, run, start, want, aborted and number == 3):
            made += 1
            yield text
        if made >= budget:
            return


def _run_lines(rng: random.Random, node: str, task: str, run: str, start: datetime,
               count: int, aborted: bool):
    base = {"agent": "node", "task": task, "node": node, "dry_run": False, "run": run}
    ts = start
    op = 0
    while count > 1:
        ts += timedelta(milliseconds=rng.randrange(5, 80))
        if rng.random() < 0.01:
            yield f"{_stamp(ts)} WARNING inspect of container took 31s; checking it again"
            count -= 1
            continue
        op += 1
        kind = rng.choice(("container", "container", "image", "volume")) if task == "cleanup" \
            else "log"
        line = {"ts": _stamp(ts), **base, "op": op, **_node_action(rng, kind, op)}
        if line["action"] != "report" and not aborted:
            yield json.dumps({**line, "level": "info", "event": "action.intent",
                              "result": "pending", "error": None})
            count -= 1
            if rng.random() < 0.0005:
                yield json.dumps(line)[: rng.randrange(20, 120)]
                return
        yield json.dumps({**line, **_result(rng, aborted and line["action"] != "report",
                                            fails=line["action"] != "report")})
        count -= 1
    yield json.dumps({"ts": _stamp(ts), "level": "info", "event": "run.summary", **base,
                      "actions": op, "results": {"done": op}, "counts": {},
                      "bytes_reclaimed": 0, "duration_s": 0.4, "errors": 0,
                      "aborted": "plan has 812 destructive actions, more than "
                                 "maxDeletionsPerRun=500" if aborted else None, "error": None})


def _node_action(rng: random.Random, kind: str, op: int) -> dict:
    rules = {"container": "node.containers: exited 3h ago > 1h",
             "image": "node.images.unused: unused for 9d > 7d",
             "volume": "node.volumes: dangling for 2d > 1d",
             "log": "node.logs.maxSize: 310MiB > 100MiB"}
    return {"kind": kind, "id": f"{rng.getrandbits(128):032x}", "name": f"{kind}-{op}",
            "namespace": None, "action": "report" if kind == "log" else "delete",
            "reason": rules[kind], "bytes": rng.randrange(1 << 10, 1 << 30)}


def _result(rng: random.Random, aborted: bool, fails: bool = True) -> dict:
    if aborted:
        return {"level": "warning", "event": "action", "result": "skipped",
                "error": "plan has 812 destructive actions, more than maxDeletionsPerRun=500"}
    if fails and rng.random() < 0.002:
        return {"level": "error", "event": "action", "result": "failed",
                "error": "409: conflict: unable to remove repository reference (must force)"}
    return {"level": "info", "event": "action", "result": "done", "error": None}


def _cluster_day(rng: random.Random, budget: int):
    """The hourly jobs CronJob: deletions whose intents carry a (redacted) manifest."""
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "main", "image": "registry.example/etl:1.4",
                     "env": [{"name": f"V{i}", "value": "redacted:sha256:0123456789ab"}
                             for i in range(12)]}]}}}}
    run, op = "", 0
    for number in range(budget):
        hour = number * 24 // max(budget, 1)
        if not run or op > 200:
            run, op = f"{_DAY + timedelta(hours=hour):%Y%m%dT%H%M%SZ}-{number:06x}", 0
        op += number % 2 == 0
        line = {"ts": _stamp(_DAY + timedelta(hours=hour, milliseconds=number)), "agent": "cluster",
                "task": "jobs", "node": None, "dry_run": False, "run": run, "op": op,
                "kind": "job", "id": f"{number:08x}", "name": f"etl-{op}",
                "namespace": f"team-{op % 100}", "action": "delete",
                "reason": "completedJobs.successfulTTL: Complete 2d ago > 1d", "bytes": None}
        if number % 2 == 0:
            yield json.dumps({**line, "level": "info", "event": "action.intent",
                              "result": "pending", "error": None, "manifest": manifest})
        else:
            yield json.dumps({**line, "level": "info", "event": "action", "result": "done",
                              "error": None})


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measure(path: Path, repeat: int) -> tuple[Measured, Measured]:
    baseline = [_child([sys.executable, "-c", _BASELINE, str(path)]) for _ in range(repeat)]
    report = [_child([sys.executable, "-m", "agents", "report", str(path), "-o", "json"])
              for _ in range(repeat)]
    return _median(baseline), _median(report)


def _child(argv: list[str]) -> Measured:
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[:4]} exited {proc.returncode}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _median(runs: list[Measured]) -> Measured:
    return Measured(*(statistics.median(getattr(r, f) for r in runs)
                      for f in ("wall_s", "cpu_s", "rss_mib")))


def table(rows: list, args: argparse.Namespace) -> str:
    out = [f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; median of {args.repeat} runs "
           "each, every run a fresh process (spawn to exit, imports included)",
           f"- Machine: {machine.describe()}; load average {os.getloadavg()[0]:.1f}",
           f"- Input: a day of `kubectl logs --prefix` lines from {args.nodes:,} nodes plus "
           "the jobs CronJob (see the module docstring)", "",
           "| lines | file | baseline: prefix strip + json.loads, wall (CPU) "
           "| kubekeeper report -o json, wall (CPU) | ratio report / baseline, wall (CPU) "
           "| peak RSS, baseline / report |",
           "|---|---|---|---|---|---|"]
    for lines, size, _, base, report in rows:
        out.append(f"| {lines:,} | {size / 2 ** 20:,.0f} MiB | {base.wall_s:.2f} s "
                   f"({base.cpu_s:.2f} s; {lines / base.wall_s:,.0f} lines/s) "
                   f"| {report.wall_s:.2f} s ({report.cpu_s:.2f} s; "
                   f"{lines / report.wall_s:,.0f} lines/s) | {report.wall_s / base.wall_s:.2f} "
                   f"({report.cpu_s / base.cpu_s:.2f}) "
                   f"| {base.rss_mib:.0f} / {report.rss_mib:.0f} MiB |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
