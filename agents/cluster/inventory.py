"""The read-only side of a run: cluster-wide paginated lists reduced to records.

Each resource is listed once per run, whichever tasks need it (``all`` lists
Jobs once for both the requests and the jobs task), with ``limit``/``continue``
so memory is bounded by two pages (the port fetches the next while this one
is reduced) plus the compact records. Objects in namespaces outside the scope
are dropped as their page is read.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from agents.cluster import records
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.recommend import Measured
from agents.cluster.resources import RESOURCES
from agents.policy import ClusterPolicy, Policy

LIMITRANGE_NAME = "kubekeeper-defaults"
_FINISHED_PODS = "status.phase!=Running,status.phase!=Pending,status.phase!=Unknown"


@dataclass(frozen=True)
class Inventory:
    """What the planners see; a kind that was not listed is an empty tuple."""

    deployment: tuple[records.Workload, ...] = ()
    statefulset: tuple[records.Workload, ...] = ()
    daemonset: tuple[records.Workload, ...] = ()
    replicaset: tuple[records.ReplicaSet, ...] = ()
    controllerrevision: tuple[records.Revision, ...] = ()
    job: tuple[records.Job, ...] = ()
    cronjob: tuple[records.CronJob, ...] = ()
    pod: tuple[records.Pod, ...] = ()
    limitrange: tuple[records.LimitRange, ...] = ()
    measured: Measured = field(default_factory=Measured)
    """The usage the requests task measured this run (no source: ``Measured()``)."""

    def with_record(self, record: Any) -> Inventory:
        """This inventory with one object replaced (or added): for re-planning after a 409."""
        meta = record.meta
        kept = tuple(r for r in getattr(self, meta.kind)
                     if (r.meta.namespace, r.meta.name) != (meta.namespace, meta.name))
        return replace(self, **{meta.kind: (*kept, record)})


def scope(policy: Policy, namespaces: Iterable[records.Namespace]) -> dict[str, ClusterPolicy]:
    """The effective settings of every namespace the tasks may touch, computed once per run.

    A namespace is in scope when the include/exclude globs cover it, it does
    not carry ``kubekeeper/ignore: "true"`` and it is not terminating (nothing
    can be created there and its objects are going anyway).
    """
    return {ns.name: policy.for_namespace(ns.name) for ns in namespaces
            if policy.cluster.namespaces.covers(ns.name) and not ns.ignored
            and not ns.terminating}


def list_namespaces(port: ClusterPort, page_size: int) -> list[records.Namespace]:
    return [records.namespace(raw) for raw in port.list_all(RESOURCES["namespace"],
                                                            page_size=page_size)]


def collect(port: ClusterPort, kinds: Iterable[str], policies: Mapping[str, ClusterPolicy],
            settings: ClusterPolicy, selectors: Mapping[str, str], manifests: bool,
            ) -> tuple[Inventory, dict[str, ApiError]]:
    """List each kind cluster-wide; a kind that cannot be listed is returned as an error.

    Kinds are listed ``settings.concurrency`` at a time, so the server's time to
    build one page overlaps the parsing of another; each list holds at most two
    pages. Records keep manifests only when ``manifests`` is asked for.
    """
    with collector_paused(), ThreadPoolExecutor(max(1, settings.concurrency),
                                                 thread_name_prefix="list") as pool:
        pending = {kind: pool.submit(_list, port, kind, policies, settings.pageSize,
                                     selectors.get(kind), records.parser(kind, manifests))
                   for kind in kinds}
    lists: dict[str, tuple] = {}
    failures: dict[str, ApiError] = {}
    for kind, future in pending.items():
        try:
            lists[kind] = future.result()
        except ApiError as exc:
            failures[kind] = exc
    return Inventory(**lists), failures


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while listing.

    Listing builds only acyclic data (decoded pages, records) that reference
    counting frees page by page, yet CPython's collector would scan every page
    as it ages through the generations: half the CPU of listing 25,000 objects
    went there. Whatever cyclic garbage the listing leaves is collected after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def finished_pods_only() -> dict[str, str]:
    """The field selector the jobs task alone needs: Running/Pending pods never matter to it."""
    return {"pod": _FINISHED_PODS}


def limitrange_selector() -> dict[str, str]:
    return {"limitrange": f"metadata.name={LIMITRANGE_NAME}"}


def _list(port: ClusterPort, kind: str, policies: Mapping[str, ClusterPolicy],
          page_size: int, field_selector: str | None, parse: Callable[[dict], Any]) -> tuple:
    return tuple(parse(raw) for raw in port.list_all(RESOURCES[kind], field_selector, page_size)
                 if (raw.get("metadata") or {}).get("namespace") in policies)
