"""Which stopped containers to remove: a pure function of the snapshot, the rules and ``now``.

Guarantees, whatever the snapshot:
- only ``exited``, ``dead`` and ``created`` containers are ever planned; running,
  paused, restarting and removing ones never are;
- age counts from ``FinishedAt``, or from ``Created`` for a container that never
  ran, and never from before the node's record first saw the container
  (``ages.container_idle_since``); a container whose age is unknown is kept
  and reported (``skip``), unless ``olderThan`` is 0s, which every age meets;
- for kubelet-managed containers the newest ``keepPerPodContainer`` stopped ones
  per pod and container name stay, newest by creation as the kubelet orders
  them (then by the attempt in the kubelet's container name), so
  ``kubectl logs --previous`` keeps working;
- pod sandbox containers of a live pod (one with a running, paused or
  restarting container) are never planned;
- the keep label and the ``protect`` labels and name globs win over age;
- a container is removed without its volumes (no ``docker rm -v``): its
  anonymous volumes are then judged by the volume rules like any other, so
  they go only when those rules say so, each as its own counted deletion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node.ages import container_idle_since
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
_NEWEST = datetime.max.replace(tzinfo=UTC)
LIVE = ("running", "paused", "restarting")


def plan_containers(snap: Snapshot, rules: ContainerRules, now: datetime) -> list[Action]:
    """Removal actions, oldest container first, then the ones kept for an unknown age."""
    if not rules.enabled:
        return []
    live_pods = {c.labels[POD_UID] for c in snap.containers
                 if c.state in LIVE and POD_UID in c.labels}
    kept_newest = _newest_per_pod_container(snap.containers, rules.keepPerPodContainer)
    candidates = [c for c in snap.containers
                  if c.state in FINISHED and c.id not in kept_newest
                  and not (is_sandbox(c.labels) and c.labels.get(POD_UID) in live_pods)
                  and protected(rules.protect, c.name, c.labels) is None]
    chosen: list[tuple[datetime, Container]] = []
    unknown: list[Action] = []
    for c in candidates:
        since, why_unknown = _idle_since(c, rules.olderThan, now)
        if why_unknown:
            unknown.append(_removal(c, rules, now, None, skip=f"age unknown: {why_unknown}; "
                                    "kept"))
        elif since is not None and now - since >= rules.olderThan:
            chosen.append((since, c))
    chosen.sort(key=lambda pair: (pair[0], pair[1].id))
    return [_removal(c, rules, now, since) for since, c in chosen] + unknown


def _idle_since(c: Container, older_than: timedelta,
                now: datetime) -> tuple[datetime | None, str]:
    """When it went idle; ``now`` when any age qualifies (0s); None when it is too young to
    matter, whatever its finish time (see ``planner.details_needed``)."""
    if older_than <= timedelta(0):
        return now, ""
    if c.first_seen is not None and now - c.first_seen < older_than:
        return None, ""
    if c.created is not None and now - c.created < older_than:
        return None, ""
    return container_idle_since(c)


def _newest_per_pod_container(containers: Sequence[Container], keep: int) -> set[str]:
    """Ids of the newest ``keep`` stopped containers of each (pod, container name)."""
    groups: dict[tuple[str, str], list[Container]] = defaultdict(list)
    for c in containers:
        key = _pod_container(c)
        if key and c.state in FINISHED:
            groups[key].append(c)
    kept: set[str] = set()
    for members in groups.values():
        # An unknown creation time sorts as the newest: such a container is kept.
        members.sort(key=lambda c: (c.created or _NEWEST, _attempt(c), c.id), reverse=True)
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


def _removal(c: Container, rules: ContainerRules, now: datetime, since: datetime | None,
             skip: str | None = None) -> Action:
    details: dict[str, object] = {"state": c.state, "image": c.image_id}
    key = _pod_container(c)
    if key:
        details["pod"] = c.labels.get(POD_NAME, key[0])
        details["container"] = key[1]
    return Action(kind="container", name=c.name, id=c.id, verb=Verb.DELETE, rule="containers",
                  why=_why(c, rules, now, since, key is not None),
                  namespace=c.labels.get(POD_NAMESPACE), bytes=c.size,
                  details=MappingProxyType(details), skip=skip)


def _why(c: Container, rules: ContainerRules, now: datetime, since: datetime | None,
         kubelet: bool) -> str:
    threshold = f"olderThan {format_duration(rules.olderThan)}"
    if since is None:
        text = f"{c.state} ({threshold})"
    elif rules.olderThan <= timedelta(0):
        text = f"{c.state}, any age qualifies ({threshold})"
    elif c.first_seen is not None and since == c.first_seen:
        text = f"{c.state}, first seen {format_age(now - since)} ago ({threshold})"
    elif c.state == "created":
        text = f"created {format_age(now - since)} ago, never started ({threshold})"
    else:
        text = f"{c.state} {format_age(now - since)} ago ({threshold})"
    if kubelet:
        text += f"; not among the newest {rules.keepPerPodContainer} kept for its pod container"
    return text
