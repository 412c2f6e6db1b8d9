"""``python -m benchmarks.cluster_scale``: the cluster tasks at scale, on a real control plane.

Starts a local control plane in a temporary state directory (or uses
``--kubeconfig``), seeds it (by default 10,000 finished Jobs in 100
namespaces, 1,000 Deployments with 10 ReplicaSets each and 5,000 bare pods,
30 % of them finished), then runs each task in a child process with a
policy that acts (dryRun false; limitrange, patch, delete) and measures:

- API requests made against the minimum (``cluster_measure``);
- wall time and throughput at ``--qps``;
- the peak RSS of the process running the task;
- at unlimited QPS, the jobs task deleting every Job (events off, so both
  sides send the same DELETEs) against a baseline doing what a plain script
  does with the same Jobs, re-seeded identically: list them (same page size),
  then delete them in list order with plain parallel DELETEs at the same
  concurrency. Its delete phase alone (as if handed the names) is shown too.

The runs go requests, jobs, the baseline comparison, revisions: patching the
revision limits makes the Deployment controller prune thousands of
ReplicaSets, which would load the API server during any later run.

Prints Markdown tables on stdout (progress on stderr) and exits 0 whatever
the numbers: a missed target says MISSED, nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from agents.cluster.resources import RESOURCES
from benchmarks import cluster_seed as seed
from benchmarks.cluster_measure import (
    Measured,
    RunSpec,
    first_action_after,
    listed_objects,
    minimum,
    outcomes,
    policy_text,
    report_lines,
    run_child,
)
from benchmarks.cluster_objects import BENCH_LABEL, NAMESPACE_PREFIX, Scale
from benchmarks.cluster_rest import Rest, in_parallel
from benchmarks.cluster_tables import Seeding, render

TASK_ORDER = ("requests", "jobs", "revisions")


class _Bench:
    """The seeded cluster and the runs made on it, with their files in ``work``."""

    def __init__(self, args: argparse.Namespace, scale: Scale, kubeconfig: str, work: Path):
        self.args, self.scale, self.kubeconfig, self.work = args, scale, kubeconfig, work
        self.rest = Rest(kubeconfig, args.context, pool=args.seed_concurrency + 2)
        self.now = datetime.now(UTC)
        self.seeding: list[Seeding] = []

    def step(self, name: str, work: Callable[[], int | None]) -> None:
        """Time one seeding step and keep it for the seeding table."""
        _progress(f"{name} ...")
        started = time.monotonic()
        requests = work()
        self.seeding.append(Seeding(name, requests, time.monotonic() - started))

    def seed(self) -> None:
        scale, workers = self.scale, self.args.seed_concurrency
        self.step("namespaces", lambda: seed.namespaces(self.rest, scale, workers))
        self.step(f"deployments with {scale.revisions} ReplicaSets each",
                  lambda: seed.deployments(self.rest, scale, workers))
        self.step("jobs (create, then finish through status)", self.seed_jobs)
        self.step("wait for the default ServiceAccounts",
                  lambda: seed.wait_service_accounts(self.rest, scale))
        self.step("bare pods (finished ones through status)",
                  lambda: seed.pods(self.rest, scale, self.now, workers))
        self.step("wait until the Deployment controller is idle",
                  lambda: seed.wait_settled(self.rest, self.args.settle_timeout))

    def seed_jobs(self) -> int:
        """(Re-)seed the Jobs: same names, same states, same finish times."""
        _clear_jobs(self.rest, self.args.seed_concurrency)
        return seed.jobs(self.rest, self.scale, self.now, self.args.seed_concurrency)

    def run(self, spec: RunSpec) -> Measured:
        """One task run in a child process, with its minimum computed from this cluster."""
        _progress(f"run: {spec.label} ...")
        slug = spec.label.replace(" ", "_").replace(",", "").replace("@", "at")
        policy, report = self.work / f"{slug}.policy.yaml", self.work / f"{slug}.report.jsonl"
        policy.write_text(policy_text(spec, self.args.page_size, self.args.concurrency))
        listed = listed_objects(self.rest, spec)
        stats = run_child(["task", "--kubeconfig", self.kubeconfig, *self._context(),
                           "--policy", str(policy), "--task", spec.task,
                           "--report", str(report)], self.work / f"{slug}.stderr")
        lines = report_lines(report)
        stats["first_action_s"] = first_action_after(lines, stats["started_at"])
        return Measured(spec, stats, minimum(listed, self.args.page_size, lines, spec),
                        outcomes(lines))

    def baseline(self) -> Measured:
        """A plain script's run over the same Jobs: list them, then delete them in parallel."""
        _progress("run: baseline, a plain list then parallel DELETEs ...")
        stats = run_child(["baseline", "--kubeconfig", self.kubeconfig, *self._context(),
                           "--namespace-prefix", NAMESPACE_PREFIX,
                           "--page-size", str(self.args.page_size),
                           "--concurrency", str(self.args.concurrency)],
                          self.work / "baseline.stderr")
        spec = RunSpec("baseline: plain list + parallel DELETEs", "jobs", 0, events=False,
                       orphan_pods=False)
        return Measured(spec, stats, Counter(stats["by_request"]))

    def _context(self) -> list[str]:
        return ["--context", self.args.context] if self.args.context else []


def _measure(bench: _Bench) -> tuple[list[Measured], list[tuple[Measured, Measured]]]:
    """The paced runs (with dry-run passes first when asked) and the baseline pairs."""
    args, runs, pairs = bench.args, [], []
    tasks = [t for t in TASK_ORDER if t in args.tasks]
    for task in tasks if args.dry_run_pass else ():
        runs.append(bench.run(RunSpec(f"{task}, dry run @ {args.qps:g} QPS", task, args.qps,
                                      dry_run=True)))
    for task in [t for t in tasks if t != "revisions"]:
        runs.append(bench.run(RunSpec(f"{task} @ {args.qps:g} QPS", task, args.qps)))
    for repeat in range(args.repeats if args.baseline and "jobs" in tasks else 0):
        bench.step("re-seed the jobs for the baseline", bench.seed_jobs)
        base = bench.baseline()
        bench.step("re-seed the jobs for the task", bench.seed_jobs)
        label = "jobs @ unlimited QPS, events off" + (f" #{repeat + 1}" if repeat else "")
        pairs.append((bench.run(RunSpec(label, "jobs", 0, events=False, orphan_pods=False)),
                      base))
    if "revisions" in tasks:
        runs.append(bench.run(RunSpec(f"revisions @ {args.qps:g} QPS", "revisions", args.qps)))
    return runs, pairs


def _clear_jobs(rest: Rest, workers: int) -> None:
    """Delete whatever benchmark Jobs a run left, and wait until they are gone."""
    jobs = RESOURCES["job"]
    left = [(j["metadata"]["namespace"], j["metadata"]["name"])
            for j in rest.items(jobs.path(), label_selector=f"{BENCH_LABEL}=1")]
    in_parallel(lambda t: rest.call("DELETE", jobs.path(*t), {"propagationPolicy": "Background"}),
                left, workers)
    while seed.remaining_jobs(rest):
        time.sleep(1.0)


@contextmanager
def _cluster(args: argparse.Namespace, work: Path) -> Iterator[str]:
    """The kubeconfig to use: ``--kubeconfig``, or a fresh control plane stopped afterwards."""
    if args.kubeconfig:
        yield args.kubeconfig
        return
    from scripts.localenv import controlplane

    _progress("starting a local control plane ...")
    state = work / "controlplane"
    plane = controlplane.start(state)
    try:
        yield str(plane.kubeconfig)
    finally:
        if args.keep:
            _progress(f"control plane kept: export KUBECONFIG={plane.kubeconfig}")
        else:
            controlplane.stop(state)


def _cleanup(bench: _Bench) -> None:
    """On a cluster we did not start, remove the benchmark's namespaces (unless --keep)."""
    if bench.args.keep or not bench.args.kubeconfig:
        return
    namespaces = RESOURCES["namespace"]
    for i in range(bench.scale.namespaces):
        bench.rest.call("DELETE", namespaces.path(name=bench.scale.namespace(i)))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster_scale",
                                     description=__doc__.splitlines()[0].split(": ", 1)[1])
    add = parser.add_argument
    add("--jobs", type=int, default=10_000, help="finished Jobs (default 10000)")
    add("--namespaces", type=int, default=100, help="namespaces (default 100)")
    add("--deployments", type=int, default=1_000, help="Deployments (default 1000)")
    add("--replicasets-per-deployment", type=int, default=10, dest="revisions",
        help="ReplicaSets (revisions) per Deployment (default 10)")
    add("--pods", type=int, default=5_000, help="bare pods (default 5000)")
    add("--finished-pods-percent", type=int, default=30,
        help="share of the bare pods written Succeeded/Failed (default 30)")
    add("--qps", type=float, default=50, help="cluster.apiQPS of the paced runs (default 50)")
    add("--concurrency", type=int, default=4,
        help="cluster.concurrency, and the baseline's threads (default 4)")
    add("--page-size", type=int, default=500, help="cluster.pageSize (default 500)")
    add("--tasks", default=",".join(TASK_ORDER), type=lambda s: set(s.split(",")),
        help="comma-separated tasks to run (default requests,jobs,revisions)")
    add("--dry-run-pass", action="store_true", help="also run each task as a dry run first")
    add("--no-baseline", dest="baseline", action="store_false",
        help="skip the unlimited-QPS comparison with the baseline")
    add("--repeats", type=int, default=2,
        help="baseline/task pairs at unlimited QPS; the best of each is compared (default 2)")
    add("--seed-concurrency", type=int, default=16, help="threads for seeding (default 16)")
    add("--settle-timeout", type=float, default=900, help="seconds to wait for the controllers")
    add("--kubeconfig", help="use this running cluster instead of starting one")
    add("--context", help="kubeconfig context (with --kubeconfig)")
    add("--keep", action="store_true", help="leave the control plane (or namespaces) behind")
    return parser.parse_args(argv)


def _progress(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    scale = Scale(args.namespaces, args.jobs, args.deployments, args.revisions, args.pods,
                  args.finished_pods_percent)
    work = Path(tempfile.mkdtemp(prefix="kk-bench-"))
    started = datetime.now(UTC)
    with _cluster(args, work) as kubeconfig:
        bench = _Bench(args, scale, kubeconfig, work)
        if args.kubeconfig and seed.existing_namespaces(bench.rest, NAMESPACE_PREFIX):
            print(f"namespaces {NAMESPACE_PREFIX}* exist already; remove them first",
                  file=sys.stderr)
            return 2
        try:
            bench.seed()
            runs, pairs = _measure(bench)
        finally:
            _cleanup(bench)
    print(render(args, scale, started, bench.seeding, runs, pairs))
    _progress(f"reports and logs of every run: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
