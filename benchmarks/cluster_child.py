"""One measured run in a fresh process; prints what it cost as one JSON line on stdout.

A process of its own, so that its peak RSS (``VmHWM``) is the run's own,
imports included, as a CronJob pod would see it.

- ``task``: ``tasks.run_tasks`` exactly as ``kubekeeper cluster run`` calls
  it, with the report lines going to a file; prints the wall time of the run
  (and when it started, to place the report's timestamps), the request
  counter and the summary.
- ``baseline``: deletes the given Jobs (``namespace/name`` per line) with
  plain parallel DELETEs (``propagationPolicy: Background``) on a thread pool
  of the given size: no listing, no planning, no report, no events.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agents.cluster.resources import RESOURCES
from benchmarks.cluster_rest import Rest, in_parallel


def _task(args: argparse.Namespace) -> dict:
    from agents.cluster.connection import connect
    from agents.cluster.tasks import run_tasks
    from agents.policy_loader import load_policy

    policy = load_policy(args.policy)
    api = connect(args.kubeconfig, args.context, policy.cluster)
    with open(args.report, "w", encoding="utf-8") as stream:
        epoch, started = time.time(), time.perf_counter()
        summary = run_tasks(api, policy, args.task, stream=stream, fmt="json")
        wall = time.perf_counter() - started
    return {"wall_s": wall, "started_at": epoch, "total": api.counter.total,
            "retries": api.counter.retries, "by_request": api.counter.by_request,
            "summary": summary}


def _baseline(args: argparse.Namespace) -> dict:
    jobs = RESOURCES["job"]
    names = [line.split("/", 1) for line in Path(args.names).read_text().split()]
    rest = Rest(args.kubeconfig, args.context, pool=args.concurrency + 2)
    body = {"propagationPolicy": "Background"}

    def delete(target: list[str]) -> None:
        rest.call("DELETE", jobs.path(target[0], target[1]), body)

    started = time.perf_counter()
    done = in_parallel(delete, names, args.concurrency)
    wall = time.perf_counter() - started
    rest.close()
    return {"wall_s": wall, "total": done, "by_request": {"delete jobs": done}}


def _peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries the
    parent's RSS at fork into it across exec, so a child of a big parent would
    report the parent's size."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.cluster_child")
    parser.add_argument("mode", choices=("task", "baseline"))
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", default=None)
    parser.add_argument("--policy", help="task: the policy file")
    parser.add_argument("--task", help="task: requests|revisions|jobs|all")
    parser.add_argument("--report", help="task: where the report lines go")
    parser.add_argument("--names", help="baseline: file of namespace/name lines")
    parser.add_argument("--concurrency", type=int, default=4, help="baseline: threads")
    args = parser.parse_args(argv)
    result = _task(args) if args.mode == "task" else _baseline(args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result |= {"maxrss_kib": _peak_rss_kib(), "cpu_s": usage.ru_utime + usage.ru_stime}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
