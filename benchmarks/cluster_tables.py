"""The cluster benchmark's printout: Markdown tables, each number next to its target.

A missed target prints MISSED; nothing here fails the benchmark.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from benchmarks import machine
from benchmarks.cluster_measure import Measured
from benchmarks.cluster_objects import Scale

MAX_REQUEST_RATIO = 1.05
MIN_THROUGHPUT = 0.90
MAX_RSS_MIB = 150
MAX_BASELINE_RATIO = 1.2
Row = tuple[str, str, str, str]


@dataclass(frozen=True)
class Seeding:
    step: str
    requests: int | None
    seconds: float


def render(args: argparse.Namespace, scale: Scale, started: datetime, seeding: list[Seeding],
           runs: Sequence[Measured], pairs: Sequence[tuple[Measured, Measured]]) -> str:
    rows = [row for run in runs for row in _run_rows(run)]
    if pairs:
        rows += _comparison_rows(pairs)
    measured = [*runs, *(m for pair in pairs for m in pair)]
    return "\n\n".join([
        "## Cluster tasks at scale (`benchmarks/cluster_scale.py`)",
        _header(args, scale, started),
        _table(("metric", "measured", "target", "ratio / pass"), rows),
        "### Requests by kind (made vs minimum)",
        _table(("run", "request", "made", "minimum"), _breakdown(measured)),
        "### What each run did (report lines: kind action result)",
        "\n".join(f"- {m.spec.label}: " + ", ".join(f"{k} {n:,}" for k, n in
                                                  sorted(m.outcomes.items()))
                  for m in measured if m.outcomes),
        "### Seeding (not measured)",
        _table(("step", "requests", "seconds", "requests/s"), _seeding_rows(seeding)),
    ])


def _header(args: argparse.Namespace, scale: Scale, started: datetime) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    where = f"`--kubeconfig {args.kubeconfig}`" if args.kubeconfig else (
        "a local control plane (etcd, kube-apiserver, kube-controller-manager) on the "
        "same machine")
    return "\n".join([
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {machine.describe()}; load average at the end {load}",
        f"- Cluster: {where}",
        f"- Scale: {scale.jobs:,} finished Jobs in {scale.namespaces} namespaces, "
        f"{scale.deployments:,} Deployments x {scale.revisions} ReplicaSets, "
        f"{scale.pods:,} bare pods ({scale.finished_pods:,} Succeeded/Failed)",
        f"- Policy: dryRun false, pageSize {args.page_size}, concurrency "
        f"{args.concurrency}, events on (off in the baseline comparison), "
        "requests → limitrange, revisions → patch, jobs → delete (orphanPods on)",
        "- Minimum requests: ceil(objects / pageSize) list pages per kind read "
        "(at least 1) + 1 per mutation + 1 per Event",
        "- Baseline: a plain script's work on the same Jobs, re-seeded identically: list "
        f"them cluster-wide (pageSize {args.page_size}), then delete them in list order with "
        f"plain parallel DELETEs (propagationPolicy Background) on {args.concurrency} "
        "threads; no plan, report, preconditions or cap; events off on both sides",
        "- Peak RSS: VmHWM of the child process that runs the task (imports included)",
    ])




def _verdict(ratio: str, ok: bool) -> str:
    return f"{ratio} {'PASS' if ok else 'MISSED'}"


def _run_rows(m: Measured) -> list[Row]:
    label, need, qps = m.spec.label, sum(m.minimum.values()), m.spec.qps
    ratio, rate = m.total / need, m.total / m.wall_s
    rows = [(f"API requests vs minimum — {label}", f"{m.total:,} / {need:,}",
             f"≤ {MAX_REQUEST_RATIO} x minimum",
             _verdict(f"{ratio:.3f}", ratio <= MAX_REQUEST_RATIO))]
    if qps:
        ideal = need / qps
        rows += [(f"wall time — {label}", f"{m.wall_s:.1f} s ({m.where_time_went()})",
                  f"≥ {ideal:.1f} s (minimum / QPS)", f"{m.wall_s / ideal:.2f} (info)"),
                 (f"throughput — {label}", f"{rate:.1f} req/s",
                  f"≥ {MIN_THROUGHPUT * qps:.1f} req/s (90 % of {qps:g})",
                  _verdict(f"{rate / qps:.0%}", rate >= MIN_THROUGHPUT * qps))]
    else:
        rows.append((f"wall time — {label}",
                     f"{m.wall_s:.1f} s ({rate:.0f} req/s; {m.where_time_went()})", "—", "(info)"))
    rows.append(_rss_row(m))
    return rows


def _rss_row(m: Measured) -> Row:
    return (f"peak RSS — {m.spec.label}", f"{m.rss_mib:.0f} MiB", f"≤ {MAX_RSS_MIB} MiB",
            _verdict(f"{m.rss_mib / MAX_RSS_MIB:.2f}", m.rss_mib <= MAX_RSS_MIB))


def _comparison_rows(pairs: Sequence[tuple[Measured, Measured]]) -> list[Row]:
    """The best (shortest) task run against the best baseline run, and against the
    baseline's delete phase alone (what it costs when the names are known)."""
    task = min((t for t, _ in pairs), key=lambda m: m.wall_s)
    base = min((b for _, b in pairs), key=lambda m: m.wall_s)
    deletes = min(float(b.stats["delete_s"]) for _, b in pairs)
    ratio = task.wall_s / base.wall_s
    runs = f" (best of {len(pairs)})" if len(pairs) > 1 else ""
    return [*_run_rows(task),
            (f"baseline wall time — list + {base.stats['by_request']['delete jobs']:,}"
             f" plain parallel DELETEs{runs}",
             f"{base.wall_s:.1f} s (list {base.stats['list_s']:.1f} s + deletes "
             f"{base.stats['delete_s']:.1f} s; {base.where_time_went()})", "—", "(info)"),
            (f"wall time vs baseline — jobs @ unlimited QPS, events off{runs}",
             f"{task.wall_s:.1f} s vs {base.wall_s:.1f} s", f"≤ {MAX_BASELINE_RATIO} x baseline",
             _verdict(f"{ratio:.2f}", ratio <= MAX_BASELINE_RATIO)),
            ("wall time vs the baseline's deletes alone (names given)",
             f"{task.wall_s:.1f} s vs {deletes:.1f} s", "—", f"{task.wall_s / deletes:.2f} (info)"),
            _rss_row(base)]


def _breakdown(measured: Sequence[Measured]) -> list[Row]:
    rows = []
    for m in measured:
        made = m.stats.get("by_request") or {}
        for key in sorted(set(made) | set(m.minimum)):
            rows.append((m.spec.label, key, f"{made.get(key, 0):,}", f"{m.minimum[key]:,}"))
    return rows


def _seeding_rows(seeding: Sequence[Seeding]) -> list[Row]:
    return [(s.step, f"{s.requests:,}" if s.requests else "—", f"{s.seconds:.1f}",
             f"{s.requests / s.seconds:.0f}" if s.requests and s.seconds else "—")
            for s in seeding]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
