"""One measured run in a fresh process; prints what it cost as one JSON line on stdout.

A process of its own, so that its peak RSS (``VmHWM``) is the run's own,
imports included, as a CronJob pod would see it.

- ``task``: ``tasks.run_tasks`` exactly as ``kubekeeper cluster run`` calls
  it, with the report lines going to a file; prints the wall time of the run
  (and when it started, to place the report's timestamps), the request
  counter and the summary.
- ``baseline``: what a plain script does: lists the Jobs cluster-wide (the
  same page size), then deletes those in the benchmark's namespaces with plain
  parallel DELETEs (``propagationPolicy: Background``) on a thread pool of the
  given size: no planning, no report, no preconditions, no events. Prints the
  list and delete phases apart too.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
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
    """What a plain script does: list the Jobs page by page, then delete them in parallel."""
    jobs = RESOURCES["job"]
    rest = Rest(args.kubeconfig, args.context, pool=args.concurrency + 2)
    body = {"propagationPolicy": "Background"}

    def delete(target: tuple[str, str]) -> None:
        rest.call("DELETE", jobs.path(*target), body)

    started = time.perf_counter()
    pages = Counter()
    names = [(j["metadata"]["namespace"], j["metadata"]["name"])
             for j in rest.items(jobs.path(), limit=args.page_size, pages=pages)
             if j["metadata"]["namespace"].startswith(args.namespace_prefix)]
    listed = time.perf_counter()
    done = in_parallel(delete, names, args.concurrency)
    ended = time.perf_counter()
    rest.close()
    return {"wall_s": ended - started, "list_s": listed - started, "delete_s": ended - listed,
            "total": done + pages["pages"],
            "by_request": {"list jobs": pages["pages"], "delete jobs": done}}


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
    parser.add_argument("--namespace-prefix", help="baseline: whose Jobs to delete")
    parser.add_argument("--page-size", type=int, default=500, help="baseline: list page size")
    parser.add_argument("--concurrency", type=int, default=4, help="baseline: threads")
    args = parser.parse_args(argv)
    result = _task(args) if args.mode == "task" else _baseline(args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result |= {"maxrss_kib": _peak_rss_kib(), "cpu_s": usage.ru_utime + usage.ru_stime}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
