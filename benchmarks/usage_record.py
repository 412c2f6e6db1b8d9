"""The usage record's size and cost per run, at 1,000 workloads and beyond.

``.venv/bin/python -m benchmarks.usage_record [--workloads 1000 --containers 2]``

Each container gets a week of 10-minute samples of varied usage (log-normal
CPU around a per-container level, memory uniform from 50 to 500 MB). The
record is then saved once (the first run: creates) and loaded and saved again
(every later run: one list, one patch per shard) through the in-memory port,
which counts requests the way ``KubeApi`` does. The minimum a run can send is
one list page and one write per 512 KiB of record. Prints a Markdown table;
asserts nothing. The metrics API's own list pages (⌈pods / pageSize⌉) come
on top and need the real node to measure.
"""

from __future__ import annotations

import argparse
import math
import random
import time

from agents.cluster import usage_store
from agents.cluster.usage import ContainerUsage, Key
from tests.memory_port import MemoryPort

_T0 = 1_780_000_000
_WEEK = 7 * 144


def _week(rng: random.Random) -> ContainerUsage:
    record, level = ContainerUsage.started(_T0), rng.lognormvariate(-2, 1)
    for i in range(_WEEK):
        record = record.add(level * rng.lognormvariate(0, 0.3), rng.uniform(5e7, 5e8),
                            _T0 + i * 600, 86400, 8 * 86400)
    return record


def measure(workloads: int, containers: int) -> dict[str, float]:
    rng = random.Random(3)
    shapes = [_week(rng) for _ in range(50)]
    entries: dict[Key, ContainerUsage] = {
        (f"team-{i % 40}", "deployment", f"svc-{i:05d}", f"c{j}"): shapes[(i * containers + j) % 50]
        for i in range(workloads) for j in range(containers)}
    port = MemoryPort()
    usage_store.save(port, "kubekeeper-system", entries,
                     usage_store.load(port, "kubekeeper-system", 500))
    before = port.counter.by_request
    started = time.perf_counter()
    loaded = usage_store.load(port, "kubekeeper-system", 500)
    usage_store.save(port, "kubekeeper-system", loaded.entries, loaded)
    seconds = time.perf_counter() - started
    after = port.counter.by_request
    shards = [o["data"][usage_store.DATA_KEY] for (kind, _, _), o in port.objects.items()
              if kind == "configmap"]
    size = sum(len(s.encode()) for s in shards)
    return {"containers": len(entries), "bytes": size, "per_container": size / len(entries),
            "shards": len(shards), "requests": sum(after.values()) - sum(before.values()),
            "minimum": 1 + math.ceil(size / usage_store.SHARD_BYTES), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, nargs="*", default=[100, 1000, 5000])
    parser.add_argument("--containers", type=int, default=2)
    args = parser.parse_args()
    print("| workloads | containers | record bytes | bytes/container | shards "
          "| requests per run | minimum | load+save CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for workloads in args.workloads:
        m = measure(workloads, args.containers)
        print(f"| {workloads} | {m['containers']} | {m['bytes']:.0f} | {m['per_container']:.0f} "
              f"| {m['shards']} | {m['requests']} | {m['minimum']} | {m['seconds']:.2f} |")


if __name__ == "__main__":
    main()
