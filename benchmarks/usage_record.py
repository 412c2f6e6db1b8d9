"""One requests run's usage cost at 1,000 workloads and beyond: requests, bytes, CPU.

``.venv/bin/python -m benchmarks.usage_record [--workloads 100 1000 5000 --containers 2]``

Each workload is a Deployment with one ReplicaSet and one running pod of
``--containers`` containers. The record starts as after a week of 10-minute runs
(each container's entry is one of 50 week-long shapes: log-normal CPU around a
per-container level, memory uniform from 50 to 500 MB), saved once. Then one
run's ``usage_observe.observe`` is measured as every later run makes it: the
metrics API's PodMetrics list, pages of ``pageSize`` (500); the record's list; its
writes. The in-memory port counts requests the way ``KubeApi`` does.

The minimum a run can send: ⌈pods / pageSize⌉ metrics pages, one list page for the
record (a page carries up to 16 shards), and one write per 512 KiB of record (every
entry changes each run, so every shard is written). The CPU baseline, measured in
the same run, is the metrics API's pages read and attributed with no record at all;
the ratio is what keeping the record adds. Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from datetime import UTC, datetime

from agents.cluster import records, usage_store
from agents.cluster.inventory import Inventory
from agents.cluster.owners import attributed, owners
from agents.cluster.usage import ContainerUsage, Key
from agents.cluster.usage_observe import observe
from agents.cluster.usage_sources import pod_metrics
from agents.policy_loader import parse_policy
from tests.memory_port import MemoryPort

_T0 = 1_780_000_000
_WEEK = 7 * 144
_NAMESPACE = "kubekeeper-system"
_PAGE = 500
_POLICY = parse_policy("apiVersion: kubekeeper/v1\ncluster: {apiQPS: 0, pageSize: 500}\n").cluster


def _week(rng: random.Random) -> ContainerUsage:
    record, level = ContainerUsage.started(_T0), rng.lognormvariate(-2, 1)
    for i in range(_WEEK):
        record = record.add(level * rng.lognormvariate(0, 0.3), rng.uniform(5e7, 5e8),
                            _T0 + i * 600, 86400, 8 * 86400)
    return record


def _meta(name: str, namespace: str, owner: str | None = None) -> dict:
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"}
    if owner:
        kind, owner_name = owner.split("/")
        meta["ownerReferences"] = [{"kind": kind, "name": owner_name, "uid": f"uid-{owner_name}",
                                    "controller": True}]
    return meta


def _cluster(workloads: int, containers: int) -> tuple[Inventory, list[dict], list[Key]]:
    """The inventory the requests task lists, the PodMetrics the metrics API serves, the keys."""
    replicasets, pods, metrics, keys = [], [], [], []
    for i in range(workloads):
        namespace, name = f"team-{i % 40}", f"svc-{i:05d}"
        names = [f"c{j}" for j in range(containers)]
        replicasets.append(records.replicaset({"metadata": _meta(f"{name}-rs", namespace,
                                                                 f"Deployment/{name}"),
                                               "spec": {"template": {"spec": {}}}}))
        pods.append(records.pod({"metadata": _meta(f"{name}-rs-p", namespace,
                                                   f"ReplicaSet/{name}-rs"),
                                 "spec": {"containers": [{"name": n} for n in names]},
                                 "status": {"phase": "Running"}}))
        metrics.append({"metadata": {"name": f"{name}-rs-p", "namespace": namespace},
                        "containers": [{"name": n, "usage": {"cpu": "123456n",
                                                             "memory": "81788Ki"}}
                                       for n in names]})
        keys += [(namespace, "deployment", name, n) for n in names]
    return Inventory(replicaset=tuple(replicasets), pod=tuple(pods)), metrics, keys


def measure(workloads: int, containers: int) -> dict[str, float]:
    rng = random.Random(3)
    shapes = [_week(rng) for _ in range(50)]
    inventory, metrics, keys = _cluster(workloads, containers)
    port = MemoryPort()
    port.metrics = metrics
    week = {key: shapes[i % 50] for i, key in enumerate(keys)}
    usage_store.save(port, _NAMESPACE, week, usage_store.load(port, _NAMESPACE, _PAGE))
    before = port.counter.by_request
    now = datetime.fromtimestamp(_T0 + _WEEK * 600, UTC)
    started = time.process_time()
    seen = observe(port, _POLICY, inventory, now, keep_record=True)
    seconds = time.process_time() - started
    assert not seen.problems and not seen.notes, (seen.problems, seen.notes)
    sent = {k: v - before.get(k, 0) for k, v in port.counter.by_request.items()}
    started = time.process_time()
    sum(1 for _ in attributed(pod_metrics(port, _PAGE), owners(inventory)))
    baseline = time.process_time() - started
    shards = [o["data"][usage_store.DATA_KEY] for (kind, _, _), o in port.objects.items()
              if kind == "configmap"]
    size = sum(len(s.encode()) for s in shards)
    return {"containers": len(keys), "bytes": size, "per_container": size / len(keys),
            "shards": len(shards), "pages": sent.get("list pods.metrics.k8s.io", 0),
            "min_pages": math.ceil(workloads / _PAGE),
            "lists": sent.get("list configmaps", 0), "min_lists": 1,
            "writes": sent.get("patch configmaps", 0) + sent.get("create configmaps", 0),
            "min_writes": math.ceil(size / usage_store.SHARD_BYTES),
            "seconds": seconds, "baseline": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, nargs="*", default=[100, 1000, 5000])
    parser.add_argument("--containers", type=int, default=2)
    args = parser.parse_args()
    print("| workloads | containers | metrics pages (min) | record lists (min) "
          "| record writes (min) | requests / minimum | record bytes | bytes/container "
          "| shards | run CPU s | metrics-only CPU s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for workloads in args.workloads:
        m = measure(workloads, args.containers)
        sent = m["pages"] + m["lists"] + m["writes"]
        least = m["min_pages"] + m["min_lists"] + m["min_writes"]
        print(f"| {workloads} | {m['containers']:.0f} | {m['pages']} ({m['min_pages']}) "
              f"| {m['lists']} ({m['min_lists']}) | {m['writes']} ({m['min_writes']}) "
              f"| {sent / least:.2f} | {m['bytes']:.0f} | {m['per_container']:.0f} "
              f"| {m['shards']} | {m['seconds']:.2f} | {m['baseline']:.2f} "
              f"| {m['seconds'] / max(m['baseline'], 1e-9):.1f} |")


if __name__ == "__main__":
    main()
