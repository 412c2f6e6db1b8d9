"""Which top-level owner each pod belongs to: what the requests task reports against.

A Deployment's pod belongs to it through its ReplicaSet, a CronJob's through
its Job; a pod whose owner has no controller belongs to that owner, a pod
with no owner to itself. Usage (per pod) and findings (per owner) meet on
this key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

from agents.cluster.inventory import Inventory
from agents.cluster.usage import Key

_TOP = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset",
        "CronJob": "cronjob"}


class PodUsage(Protocol):
    namespace: str
    pod: str
    container: str


S = TypeVar("S", bound=PodUsage)


def owners(inventory: Inventory) -> dict[tuple[str, str], tuple[str, str]]:
    """(namespace, pod) → (owner kind, owner name) of every listed pod's top-level owner."""
    parents = {("ReplicaSet", r.meta.namespace, r.meta.name): r.meta.controller
               for r in inventory.replicaset}
    parents |= {("Job", j.meta.namespace, j.meta.name): j.meta.controller for j in inventory.job}
    found = {}
    for pod in inventory.pod:
        owner, kind, name = pod.meta.controller, "pod", pod.meta.name
        if owner is not None:
            kind, name = owner.kind.lower(), owner.name
            above = parents.get((owner.kind, pod.meta.namespace, owner.name))
            if above is not None and above.kind in _TOP:
                kind, name = _TOP[above.kind], above.name
        found[(pod.meta.namespace, pod.meta.name)] = (kind, name)
    return found


def attributed(samples: Iterable[S], owner_of: Mapping[tuple[str, str], tuple[str, str]]
               ) -> Iterator[tuple[Key, S]]:
    """Each sample with its owner's key; samples of pods not listed (out of scope) drop."""
    for sample in samples:
        owner = owner_of.get((sample.namespace, sample.pod))
        if owner is not None:
            yield (sample.namespace, *owner, sample.container), sample
