"""Which stopped containers to remove: a pure function of the snapshot, the rules and ``now``.

Guarantees, whatever the snapshot:
- only ``exited``, ``dead`` and ``created`` containers are ever planned; running,
  paused, restarting and removing ones never are;
- age counts from ``FinishedAt``, or from ``Created`` for a container that never
  ran (or whose finish time was not fetched because it cannot change the
  answer: see ``planner.details_needed``);
- for kubelet-managed containers the newest ``keepPerPodContainer`` stopped ones
  per pod and container name stay, newest by creation as the kubelet orders
  them (then by the attempt in the kubelet's container name), so
  ``kubectl logs --previous`` keeps working;
- pod sandbox containers of a live pod (one with a running, paused or
  restarting container) are never planned;
- the keep label and the ``protect`` labels and name globs win over age;
- a container is removed with its anonymous volumes (``docker rm -v``), unless
  one of them is protected (``protected_volumes``): then it is removed without
  ``-v`` and its volumes are left to the volume rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node.inventory import Container, Snapshot
from agents.node.protection import (
    CONTAINER_NAME,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    is_sandbox,
    protected,
)
from agents.policy import ContainerRules
from agents.units import format_age, format_duration

FINISHED = ("exited", "dead", "created")
LIVE = ("running", "paused", "restarting")


def plan_containers(snap: Snapshot, rules: ContainerRules, now: datetime,
                    protected_volumes: frozenset[str] = frozenset()) -> list[Action]:
    """Removal actions, oldest container first; each removes its anonymous volumes too."""
    if not rules.enabled:
        return []
    live_pods = {c.labels[POD_UID] for c in snap.containers
                 if c.state in LIVE and POD_UID in c.labels}
    kept_newest = _newest_per_pod_container(snap.containers, rules.keepPerPodContainer)
    chosen = [c for c in snap.containers
              if c.state in FINISHED and c.id not in kept_newest
              and not (is_sandbox(c.labels) and c.labels.get(POD_UID) in live_pods)
              and protected(rules.protect, c.name, c.labels) is None
              and now - _stopped_at(c) >= rules.olderThan]
    chosen.sort(key=lambda c: (_stopped_at(c), c.id))
    gone = {c.id for c in chosen}
    still_mounted = {v for c in snap.containers if c.id not in gone for v in c.volumes}
    anonymous = {v.name for v in snap.volumes if v.anonymous}
    return [_removal(c, rules, now, sorted(set(c.volumes) & anonymous - still_mounted),
                     keep_volumes=bool(set(c.volumes) & protected_volumes))
            for c in chosen]


def removed_volumes(actions: Sequence[Action]) -> set[str]:
    """Anonymous volumes that ``docker rm -v`` takes with the planned containers."""
    return {v for a in actions for v in a.details.get("volumes", ())}


def _newest_per_pod_container(containers: Sequence[Container], keep: int) -> set[str]:
    """Ids of the newest ``keep`` stopped containers of each (pod, container name)."""
    groups: dict[tuple[str, str], list[Container]] = defaultdict(list)
    for c in containers:
        key = _pod_container(c)
        if key and c.state in FINISHED:
            groups[key].append(c)
    kept: set[str] = set()
    for members in groups.values():
        members.sort(key=lambda c: (c.created, _attempt(c), c.id), reverse=True)
        kept.update(c.id for c in members[:keep])
    return kept


def _attempt(c: Container) -> int:
    """The kubelet's attempt number, from its name ``k8s_<container>_<pod>_<ns>_<uid>_<n>``.

    Docker lists creation times in whole seconds; the attempt orders containers
    the kubelet made within the same second.
    """
    last = c.name.rsplit("_", 1)[-1]
    return int(last) if c.name.startswith("k8s_") and last.isdigit() else -1


def _pod_container(c: Container) -> tuple[str, str] | None:
    uid = c.labels.get(POD_UID)
    name = c.labels.get(CONTAINER_NAME) or ("POD" if is_sandbox(c.labels) else None)
    return (uid, name) if uid and name else None


def _stopped_at(c: Container) -> datetime:
    if c.state != "created" and c.finished_at is not None:
        return max(c.finished_at, c.created)
    return c.created


def _removal(c: Container, rules: ContainerRules, now: datetime, volumes: list[str],
             keep_volumes: bool) -> Action:
    details: dict[str, object] = {"state": c.state, "image": c.image_id}
    if keep_volumes:
        details["keep_volumes"] = True
    elif volumes:
        details["volumes"] = volumes
    key = _pod_container(c)
    if key:
        details["pod"] = c.labels.get(POD_NAME, key[0])
        details["container"] = key[1]
    return Action(kind="container", name=c.name, id=c.id, verb=Verb.DELETE, rule="containers",
                  why=_why(c, rules, now, key is not None),
                  namespace=c.labels.get(POD_NAMESPACE), bytes=c.size,
                  details=MappingProxyType(details))


def _why(c: Container, rules: ContainerRules, now: datetime, kubelet: bool) -> str:
    threshold = f"olderThan {format_duration(rules.olderThan)}"
    if c.state == "created":
        text = f"created {format_age(now - c.created)} ago, never started ({threshold})"
    elif c.finished_at is None:
        text = f"{c.state}, finish time not needed ({threshold})"
    else:
        text = f"{c.state} {format_age(now - _stopped_at(c))} ago ({threshold})"
    if kubelet:
        text += f"; not among the newest {rules.keepPerPodContainer} kept for its pod container"
    return text
