"""Filling the control plane for the benchmark with parallel raw REST calls.

Each step returns how many requests it sent, so the seeding table can show a
rate; none of this is part of the measurement. Errors propagate: a benchmark on
a half-seeded cluster would measure nothing useful.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from agents.cluster.resources import RESOURCES
from benchmarks import cluster_objects as objects
from benchmarks.cluster_objects import BENCH_LABEL, Scale
from benchmarks.cluster_rest import Rest, in_parallel

_NS, _JOBS, _PODS = RESOURCES["namespace"], RESOURCES["job"], RESOURCES["pod"]
_DEPLOYMENTS, _REPLICASETS = RESOURCES["deployment"], RESOURCES["replicaset"]
_SETTLE_POLL_S = 3.0


def namespaces(rest: Rest, scale: Scale, workers: int) -> int:
    names = [scale.namespace(i) for i in range(scale.namespaces)]
    return in_parallel(lambda n: rest.call("POST", _NS.path(), objects.namespace_body(n)),
                       names, workers)


def wait_service_accounts(rest: Rest, scale: Scale, timeout: float = 300.0) -> None:
    """Pods are refused until their namespace's default ServiceAccount exists."""
    deadline = time.monotonic() + timeout
    wanted = {scale.namespace(i) for i in range(scale.namespaces)}
    while True:
        have = {sa["metadata"]["namespace"] for sa in rest.items(
            "/api/v1/serviceaccounts", field_selector="metadata.name=default")}
        if wanted <= have:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted - have)} namespaces have no default ServiceAccount")
        time.sleep(1.0)


def deployments(rest: Rest, scale: Scale, workers: int) -> int:
    """Each Deployment with its ReplicaSets, then unpaused; returns the requests sent."""
    def one(index: int) -> None:
        namespace = scale.namespace(index)
        created = rest.call("POST", _DEPLOYMENTS.path(namespace),
                            objects.deployment_body(index, scale.revisions))
        for revision in range(1, scale.revisions + 1):
            body = objects.replicaset_body(index, revision, created["metadata"]["uid"])
            rest.call("POST", _REPLICASETS.path(namespace), body)
            rest.call("PATCH", _REPLICASETS.path(namespace, body["metadata"]["name"]) + "/status",
                      objects.REPLICASET_STATUS)
        rest.call("PATCH", _DEPLOYMENTS.path(namespace, objects.deployment_name(index)),
                  {"spec": {"paused": False}})

    in_parallel(one, range(scale.deployments), workers)
    return scale.deployments * (2 + 2 * scale.revisions)


def jobs(rest: Rest, scale: Scale, now: datetime, workers: int) -> int:
    """Every Job created and then finished through the status subresource."""
    def one(index: int) -> None:
        namespace, name = scale.namespace(index), objects.job_name(index)
        rest.call("POST", _JOBS.path(namespace), objects.job_body(index))
        rest.call("PATCH", _JOBS.path(namespace, name) + "/status",
                  objects.job_status(index, now))

    in_parallel(one, range(scale.jobs), workers)
    return 2 * scale.jobs


def pods(rest: Rest, scale: Scale, now: datetime, workers: int) -> int:
    def one(index: int) -> None:
        namespace = scale.namespace(index)
        rest.call("POST", _PODS.path(namespace), objects.pod_body(index))
        if scale.finished_pod(index):
            rest.call("PATCH", _PODS.path(namespace, objects.pod_name(index)) + "/status",
                      objects.pod_status(index, now))

    in_parallel(one, range(scale.pods), workers)
    return scale.pods + scale.finished_pods


def wait_settled(rest: Rest, timeout: float) -> None:
    """Wait until the Deployment controller has caught up and stopped writing.

    A Deployment it is still updating would answer the revisions task's
    guarded patch with 409, and its writes would load the API server during
    the measurement. Settled: every benchmark Deployment observed its
    generation and none changed between two polls; on timeout, a warning.
    """
    deadline, previous = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen, behind = {}, 0
        for item in rest.items(_DEPLOYMENTS.path(), label_selector=f"{BENCH_LABEL}=1"):
            meta = item["metadata"]
            seen[(meta["namespace"], meta["name"])] = meta["resourceVersion"]
            behind += (item.get("status") or {}).get("observedGeneration") != meta["generation"]
        if not behind and seen == previous:
            return
        previous = seen
        time.sleep(_SETTLE_POLL_S)
    print(f"warning: Deployments still changing after {timeout:.0f}s", file=sys.stderr)


def remaining_jobs(rest: Rest) -> int:
    return sum(1 for _ in rest.items(_JOBS.path(), label_selector=f"{BENCH_LABEL}=1"))


def existing_namespaces(rest: Rest, prefix: str) -> list[str]:
    return [n["metadata"]["name"] for n in rest.items(_NS.path())
            if n["metadata"]["name"].startswith(prefix)]
