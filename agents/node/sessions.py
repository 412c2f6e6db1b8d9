"""One connected runtime for one run: how to take its snapshot and how to change it.

The planners read one snapshot shape whichever runtime filled it; what differs
per runtime is here and only here:

- **Docker**: ``inventory`` and ``mutations`` (untag, then remove by id).
- **CRI** (containerd, CRI-O, cri-dockerd): ``cri_inventory`` and
  ``cri_mutations`` (remove by id, every tag at once).  Containers are left to
  the kubelet, which owns them and their pods: it removes a dead pod's
  containers with the pod and keeps ``maxPerPodContainer`` per container for
  ``kubectl logs --previous``, so a second remover could only race it.  The
  CRI has no volumes.  Each of the two rules says so in one line per run.
  The gRPC stack is imported only here, when a CRI socket is used (and the
  Docker SDK only when Docker is, in ``docker_port``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Outcome, Verb
from agents.node import cri_inventory, cri_mutations, inventory
from agents.node.docker_port import DockerDown, EnginePort
from agents.node.host_paths import HostPaths
from agents.node.inventory import Snapshot
from agents.node.runtimes import DOCKER, Runtime
from agents.policy import NodePolicy

CONTAINERS_LEFT = ("containers of a CRI runtime are the kubelet's: it removes them with their "
                   "pods and keeps the newest per pod container; left to it")
NO_VOLUMES = "the CRI has no volumes: nothing to judge on this runtime"


@dataclass
class Session:
    runtime: Runtime
    port: Any
    """``EnginePort`` or ``GrpcCriPort``."""

    @property
    def cri(self) -> bool:
        return self.runtime.kind != DOCKER

    @property
    def label(self) -> str:
        return self.runtime.label

    def take(self, paths: HostPaths) -> Snapshot:
        if not self.cri:
            return inventory.take(self.port, paths)
        return cri_inventory.take(self.port, paths)

    def with_details(self, snap: Snapshot, containers: Iterable[str],
                     images: Iterable[str]) -> Snapshot:
        """Docker's finish and tag times; the CRI has no tag times and its containers are
        not judged, so a CRI snapshot needs nothing more."""
        if self.cri:
            return snap
        return inventory.with_details(self.port, snap, containers, images)

    def rules(self, policy: NodePolicy) -> NodePolicy:
        """The node rules this runtime is judged by: on the CRI, no container or volume rules."""
        if not self.cri:
            return policy
        return replace(policy, containers=replace(policy.containers, enabled=False),
                       volumes=replace(policy.volumes, enabled=False))

    def notes(self, policy: NodePolicy) -> list[Action]:
        """The run's one line for each rule this runtime does not apply."""
        if not self.cri:
            return []
        lines = []
        if policy.containers.enabled:
            lines.append(_note("runtime", self.runtime.name, "containers", CONTAINERS_LEFT))
        if policy.volumes.enabled:
            lines.append(_note("runtime", self.runtime.name, "volumes", NO_VOLUMES))
        return lines

    def parallelism(self, policy: NodePolicy) -> int:
        """Removals in flight: containerd's share their garbage collections, Docker's a lock."""
        return policy.criParallelism if self.cri else policy.parallelism

    def mutate_all(self) -> Callable[[Sequence[Action]], list[Outcome | DockerDown]] | None:
        """The executor's batch hook for a CRI runtime; None for Docker's one at a time."""
        if not self.cri:
            return None
        return lambda actions: cri_mutations.carry_out_all(actions, self.port)

    def close(self) -> None:
        self.port.close()


def connect(runtime: Runtime, parallelism: int, timeout: float) -> Session:
    """A session on the runtime; raises ``DockerDown`` (or ``Unsupported``) as the port does."""
    if runtime.kind == DOCKER:
        port: Any = EnginePort(runtime.endpoint, pool_size=max(10, parallelism), timeout=timeout)
    else:
        from agents.node.cri_port import GrpcCriPort

        port = GrpcCriPort(runtime.endpoint, timeout=timeout)
    return Session(runtime, port)


def stamped(actions: Iterable[Action], runtime: str | None) -> list[Action]:
    """The actions with ``runtime`` in their details, so every report line names it."""
    return [replace(a, details=MappingProxyType({**a.details, "runtime": runtime}))
            for a in actions]


def _note(kind: str, name: str, rule: str, why: str) -> Action:
    return Action(kind=kind, name=name, verb=Verb.REPORT, rule=rule, why=why)
