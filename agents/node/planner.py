"""The cleanup plan in the order Docker applies it; pure.

Containers are planned first.  Images and volumes are then judged on the
containers that will remain, so an image used only by a container removed in
this run is already unused, and the dry-run report lists exactly what a real
run would remove.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.actions import Action
from agents.node.ages import image_last_used
from agents.node.inventory import Snapshot
from agents.node.plan_containers import plan_containers
from agents.node.plan_images import plan_images
from agents.node.plan_volumes import plan_volumes
from agents.policy import NodePolicy


def plan_cleanup(snap: Snapshot, policy: NodePolicy, now: datetime) -> list[Action]:
    """Containers, then images (children first), then volumes.

    ``snap`` carries the node record's first-seen times (``state.annotate``);
    without them every age is unknown and nothing is removed for age.
    """
    containers = plan_containers(snap, policy.containers, now)
    removed = {a.id for a in containers if a.mutates}
    remaining = [c for c in snap.containers if c.id not in removed]
    freed = sum(a.bytes or 0 for a in containers if a.mutates)
    images = plan_images(snap, policy.images, remaining, now, freed_elsewhere=freed)
    volumes = plan_volumes(snap, policy.volumes, remaining, now)
    return containers + images + volumes


def details_needed(snap: Snapshot, policy: NodePolicy,
                   now: datetime) -> tuple[set[str], set[str]]:
    """Container ids whose finish time, and image ids whose tag time, can change the plan.

    Each costs an inspect call, so on a node with thousands of stopped
    containers only these are fetched.  A finish time cannot matter when the
    container was created or first seen too recently (it is young whatever
    its finish) or when ``olderThan`` is 0s; a tag time can only make an image
    younger, so it matters only for a tagged image old enough without it, or
    when disk pressure orders images by last use.
    """
    rules = policy.containers
    containers = {c.id for c in snap.containers
                  if rules.enabled and c.state in ("exited", "dead")
                  and _could_be_old(now, rules.olderThan, c.created, c.first_seen)}
    pressure = policy.images.diskPressure
    lru = bool(pressure.enabled and snap.disk and snap.disk.visible
               and snap.disk.percent > pressure.highPercent)
    unused = policy.images.unused
    last_used = image_last_used(snap, tag_times=False)
    images = {i.id for i in snap.images if i.tags and last_used[i.id] is not None and (
        lru or (unused.enabled and _could_be_old(now, unused.olderThan, last_used[i.id])))}
    return containers, images


def _could_be_old(now: datetime, threshold: timedelta, *floors: datetime | None) -> bool:
    """False when the fetched time cannot flip the answer (see ``details_needed``)."""
    return threshold > timedelta(0) and all(f is None or now - f >= threshold for f in floors)
