"""One measured run of a cluster task, and the minimum number of requests it needed.

The minimum is kubekeeper's target from issue 6, computed independently of
how the task works: for every kind the task must read, ``ceil(objects /
pageSize)`` list pages (at least 1; the namespaces too), plus one request per
mutation it carried out (a server-side dry run is one), plus one per Event
when events are on. The objects are counted just before the run; the
mutations come from the run's own report lines (a 409 re-read and retry, a
retried 429 or a second list of the same kind are the overhead measured).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agents.cluster.resources import RESOURCES
from benchmarks.cluster_objects import NAMESPACE_PREFIX
from benchmarks.cluster_rest import Rest

_ROOT = Path(__file__).resolve().parents[1]
_MUTATIONS = ("delete", "patch", "create")
_EVENT_VERBS = ("delete", "patch")
_CARRIED_OUT = ("done", "planned", "failed")
_NEEDS = {
    "requests": ("namespace", "deployment", "statefulset", "daemonset", "cronjob", "job",
                 "replicaset", "pod", "limitrange"),
    "revisions": ("namespace", "deployment", "statefulset", "daemonset", "replicaset",
                  "controllerrevision"),
    "jobs": ("namespace", "job", "cronjob", "pod"),
}
"""What each task must read: requests resolves pod owners through ReplicaSets and
Jobs and keeps one LimitRange per namespace; revisions counts ReplicaSets and
ControllerRevisions; jobs needs CronJobs for their history limits and, with
orphanPods, the finished pods."""


@dataclass(frozen=True)
class RunSpec:
    """One run: ``qps`` 0 is unlimited; the policy has dryRun, events and orphanPods so."""

    label: str
    task: str
    qps: float
    dry_run: bool = False
    events: bool = True
    orphan_pods: bool = True


@dataclass
class Measured:
    spec: RunSpec
    stats: dict[str, Any]
    minimum: Counter[str]
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return int(self.stats["total"])

    @property
    def wall_s(self) -> float:
        return float(self.stats["wall_s"])

    @property
    def rss_mib(self) -> float:
        return self.stats["maxrss_kib"] / 1024

    def where_time_went(self) -> str:
        """Process CPU (imports included) and the time listing and planning took."""
        notes = [f"process CPU {self.stats['cpu_s']:.1f} s"]
        if self.stats.get("first_action_s") is not None:
            notes.append(f"first action after {self.stats['first_action_s']:.1f} s")
        return "; ".join(notes)


def policy_text(spec: RunSpec, page_size: int, concurrency: int) -> str:
    """The policy of one run: everything that mutates is switched to its acting form,
    the scope is the benchmark's namespaces, and the cap cannot stop a run."""
    def yaml_bool(value: bool) -> str:
        return "true" if value else "false"

    return (
        "apiVersion: kubekeeper/v1\n"
        f"dryRun: {yaml_bool(spec.dry_run)}\n"
        "maxDeletionsPerRun: 100000000\n"
        "cluster:\n"
        f"  apiQPS: {spec.qps:g}\n"
        f"  pageSize: {page_size}\n"
        f"  concurrency: {concurrency}\n"
        f"  events: {yaml_bool(spec.events)}\n"
        f"  namespaces: {{include: [\"{NAMESPACE_PREFIX}*\"]}}\n"
        "  resourceRequests: {action: limitrange}\n"
        "  revisionHistory: {action: patch}\n"
        f"  completedJobs: {{action: delete, orphanPods: {yaml_bool(spec.orphan_pods)}}}\n"
    )


def listed_objects(rest: Rest, spec: RunSpec) -> dict[str, int]:
    """How many objects of each kind the task must read, cluster-wide, right now."""
    counts = {}
    for kind in _NEEDS[spec.task]:
        path = RESOURCES[kind].path()
        if kind == "pod" and spec.task == "jobs":
            if spec.orphan_pods:
                counts[kind] = sum(rest.count(path, f"status.phase={phase}")
                                   for phase in ("Succeeded", "Failed"))
        elif kind == "limitrange":
            counts[kind] = rest.count(path, "metadata.name=kubekeeper-defaults")
        else:
            counts[kind] = rest.count(path)
    return counts


def minimum(listed: Mapping[str, int], page_size: int, lines: Iterable[dict],
            spec: RunSpec) -> Counter[str]:
    """The fewest requests of each kind (keyed like ``RequestCounter.by_request``)."""
    need: Counter[str] = Counter({f"list {RESOURCES[kind].plural}": max(1, math.ceil(n / page_size))
                                  for kind, n in listed.items()})
    for line in lines:
        verb = line.get("action")
        if line.get("event") != "action" or verb not in _MUTATIONS:
            continue
        if line["result"] in _CARRIED_OUT:
            need[f"{verb} {RESOURCES[line['kind']].plural}"] += 1
        if (spec.events and not spec.dry_run and verb in _EVENT_VERBS
                and line["result"] == "done" and not line.get("note")):
            need["create events"] += 1
    return need


def report_lines(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def outcomes(lines: Iterable[dict]) -> Counter[str]:
    """``kind action result`` → lines, to check the plan did what the seeding implies."""
    return Counter(f"{line['kind']} {line['action']} {line['result']}" for line in lines
                   if line.get("event") == "action")


def first_action_after(lines: Iterable[dict], started_at: float) -> float | None:
    """Seconds from the start of the run to its first action line: listing and planning."""
    stamps = [datetime.fromisoformat(line["ts"]).timestamp() for line in lines
              if line.get("event") == "action"]
    return min(stamps) - started_at if stamps else None


def run_child(arguments: list[str], stderr: Path) -> dict[str, Any]:
    """Run ``benchmarks.cluster_child`` and return its JSON line; raises if it failed."""
    with stderr.open("w", encoding="utf-8") as errors:
        process = subprocess.run(
            [sys.executable, "-m", "benchmarks.cluster_child", *arguments], cwd=_ROOT,
            stdout=subprocess.PIPE, stderr=errors, text=True, check=False)
    if process.returncode != 0 or not process.stdout.strip():
        raise RuntimeError(f"benchmarks.cluster_child {arguments[0]} exited "
                           f"{process.returncode}; see {stderr}")
    return json.loads(process.stdout.strip().splitlines()[-1])
