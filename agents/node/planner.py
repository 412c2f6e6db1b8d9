"""The cleanup plan in the order Docker applies it; pure.

Containers are planned first.  Images and volumes are then judged on the
containers that will remain, so an image used only by a container removed in
this run is already unused, and the dry-run report lists exactly what a real
run would remove.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.actions import Action
from agents.node.inventory import Snapshot
from agents.node.plan_containers import plan_containers, removed_volumes
from agents.node.plan_images import plan_images
from agents.node.plan_volumes import plan_volumes
from agents.node.protection import protected
from agents.policy import NodePolicy


def plan_cleanup(snap: Snapshot, policy: NodePolicy, now: datetime) -> list[Action]:
    """Containers, then images (children first), then volumes."""
    kept_volumes = frozenset(v.name for v in snap.volumes
                             if protected(policy.volumes.protect, v.name, v.labels))
    containers = plan_containers(snap, policy.containers, now, kept_volumes)
    removed = {a.id for a in containers}
    remaining = [c for c in snap.containers if c.id not in removed]
    freed = sum(a.bytes or 0 for a in containers)
    images = plan_images(snap, policy.images, remaining, now, freed_elsewhere=freed)
    volumes = plan_volumes(snap, policy.volumes, remaining, now,
                           frozenset(removed_volumes(containers)))
    return containers + images + volumes


def details_needed(snap: Snapshot, policy: NodePolicy,
                   now: datetime) -> tuple[set[str], set[str]]:
    """Container ids whose finish time, and image ids whose tag time, can change the plan.

    Each costs an inspect call, so on a node with thousands of stopped
    containers only these are fetched.  A finish time cannot matter when the
    container was created too recently (it finished later still) or when
    ``olderThan`` is 0s; a tag time cannot matter for an untagged image, nor
    for a tagged one created too recently, unless disk pressure orders images
    by last use.
    """
    rules = policy.containers
    containers = {c.id for c in snap.containers
                  if rules.enabled and c.state in ("exited", "dead")
                  and _could_be_old(now - c.created, rules.olderThan)}
    pressure = policy.images.diskPressure
    lru = bool(pressure.enabled and snap.disk and snap.disk.visible
               and snap.disk.percent > pressure.highPercent)
    unused = policy.images.unused
    images = {i.id for i in snap.images if i.tags and (
        lru or (unused.enabled and _could_be_old(now - i.created, unused.olderThan)))}
    return containers, images


def _could_be_old(age: timedelta, threshold: timedelta) -> bool:
    """False when the fetched time cannot flip the answer (see ``details_needed``)."""
    return threshold > timedelta(0) and age >= threshold
