"""Since when an object counts as idle: the one definition every node planner uses.

An age is never taken from a build time alone, and an unknown time is never
"long ago": each function returns None when a time it needs is missing, and
the planners then keep the object and say why.  The node's own first-seen
record (``state``) is a floor under every age, so nothing becomes eligible
for age before ``olderThan`` has passed since kubekeeper first saw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agents.node.inventory import Container, Image, Snapshot, Volume

UNKNOWN_FIRST_SEEN = "first-seen time unknown (no node record)"


def container_idle_since(c: Container) -> tuple[datetime | None, str]:
    """When the container stopped (created, if it never ran), floored by first seen.

    Returns the time, or None with the reason the age is unknown.
    """
    if c.first_seen is None:
        return None, UNKNOWN_FIRST_SEEN
    if c.state == "created":
        stopped, what = c.created, "Created"
    else:
        stopped, what = c.finished_at, "FinishedAt"
        if c.created is not None and stopped is not None:
            stopped = max(stopped, c.created)
    if stopped is None:
        return None, f"Docker reports no {what} time"
    return max(stopped, c.first_seen), ""


def volume_idle_since(v: Volume) -> tuple[datetime | None, str]:
    if v.first_seen is None:
        return None, UNKNOWN_FIRST_SEEN
    if v.created is None:
        return None, "Docker reports no CreatedAt time"
    return max(v.created, v.first_seen), ""


def image_last_used(snap: Snapshot, tag_times: bool = True) -> dict[str, datetime | None]:
    """Per image id, the newest sign of use; None when the image's first sighting is unknown.

    Signs of use: first seen on this node, last seen in use by a container (the
    record), the creation of any container in the snapshot that uses it
    (including containers removed in this same run), and for a tagged image its
    LastTagTime (left out with ``tag_times=False``, to decide whether fetching it
    can matter).  Its build time (``Created``) is not one.
    """
    used = {i.id: _own_signs(i, tag_times) for i in snap.images}
    for c in snap.containers:
        current = used.get(c.image_id)
        if current is not None and c.created is not None and c.created > current:
            used[c.image_id] = c.created
    return used


def _own_signs(image: Image, tag_times: bool) -> datetime | None:
    if image.first_seen is None:
        return None
    tagged = image.tagged_at if image.tags and tag_times else None
    signs: Iterable[datetime | None] = (image.first_seen, image.last_seen_in_use, tagged)
    return max(s for s in signs if s is not None)
