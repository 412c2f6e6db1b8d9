"""Which images to remove, judged on the containers that will remain; pure.

Never planned, whatever the snapshot:
- an image any remaining container uses, running or not;
- an image another kept image is built on: an image is planned only when every
  child is planned too, and the executor removes children before parents;
- an image with the keep label or matching an ``images.protect`` glob (on
  ``repo:tag``, ``repo@digest`` or the id, with or without ``sha256:``);
- with ``protectSandboxImages``: ``registry.k8s.io/pause*``, ``k8s.gcr.io/pause*``
  and the image of every pod sandbox container in the snapshot.

"Last used" is the newest of: the creation of any container in the snapshot
that uses the image (including containers removed in this same run), the
image's LastTagTime (set when it was built or tagged here; pulled images may
not have one) and its Created time.  Docker keeps no record of containers that
are already gone, so an image whose last container was removed in an earlier
run falls back to its tag or creation time.  Both age rules and the
disk-pressure LRU order use this one notion.  A pulled image may carry no
LastTagTime; then an image built long ago and pulled a moment ago looks old
until a container uses it, so keep ``unused.olderThan`` well above the time
between a pull and its container's start, and ``protect`` what must stay.

Bytes are an estimate: an image's ``Size`` minus its parent's ``Size`` when it
is built on a parent (the layers only it adds), else its whole ``Size``, which
over-counts layers shared with unrelated images.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node.inventory import Container, Disk, Image, Snapshot
from agents.node.protection import SANDBOX_IMAGE_GLOBS, first_match, is_sandbox, keep_labelled
from agents.policy import ImageRules
from agents.units import format_age, format_bytes, format_duration


def plan_images(snap: Snapshot, rules: ImageRules, remaining: Sequence[Container],
                now: datetime, freed_elsewhere: int = 0) -> list[Action]:
    """Removal actions; every child of a planned image is planned before it."""
    last_used = last_use(snap)
    pinned = set(pinned_images(snap, rules, remaining))
    eligible = {i.id: why for i in snap.images if i.id not in pinned
                for why in [_age_rule(i, rules, now - last_used[i.id])] if why}
    staying = {i.id for i in snap.images} - set(eligible)
    planned = set(eligible) - _ancestors(snap, staying)
    actions = [_removal(snap, snap.image(i), *eligible[i])
               for i in _leaves_first(snap, planned, last_used)]
    if _under_pressure(snap.disk, rules):
        freed = freed_elsewhere + sum(a.bytes or 0 for a in actions)
        actions += _evictions(snap, rules, last_used, pinned, planned, freed, now)
    elif rules.diskPressure.enabled and snap.disk is not None and not snap.disk.visible:
        actions.append(_disk_not_visible(snap.disk))
    return actions


def _disk_not_visible(disk: Disk) -> Action:
    why = (f"Docker root {disk.host_path} is not visible at {disk.local_path} "
           "(mount it under --host-root): disk pressure was not evaluated")
    return Action(kind="disk", name=disk.host_path, verb=Verb.REPORT, rule="images.diskPressure",
                  why=why, details=MappingProxyType({"path": disk.host_path, "visible": False}))


def pinned_images(snap: Snapshot, rules: ImageRules,
                  remaining: Iterable[Container]) -> dict[str, str]:
    """Images never removed, each with the reason it is kept."""
    pinned: dict[str, str] = {}
    for c in remaining:
        pinned.setdefault(c.image_id, f"used by container {c.name}")
    for c in snap.containers:
        if rules.protectSandboxImages and is_sandbox(c.labels):
            pinned.setdefault(c.image_id, f"image of pod sandbox {c.name}")
    for image in snap.images:
        why = _protected(image, rules)
        if why:
            pinned.setdefault(image.id, why)
    return pinned


def last_use(snap: Snapshot) -> dict[str, datetime]:
    """Per image id, the newest of container creation, LastTagTime (tagged images) and Created."""
    used = {i.id: max(i.created, i.tagged_at) if i.tags and i.tagged_at else i.created
            for i in snap.images}
    for c in snap.containers:
        if c.image_id in used and c.created > used[c.image_id]:
            used[c.image_id] = c.created
    return used


def estimated_bytes(snap: Snapshot, image: Image) -> int:
    parent = snap.image(image.parent_id) if image.parent_id else None
    if parent is not None and parent.size <= image.size:
        return image.size - parent.size
    return image.size


def _protected(image: Image, rules: ImageRules) -> str | None:
    if keep_labelled(image.labels):
        return "label kubekeeper.keep=true"
    names = [*image.references, image.id, image.id.removeprefix("sha256:")]
    for name in names:
        glob = first_match(name, rules.protect)
        if glob:
            return f"images.protect {glob}"
        if rules.protectSandboxImages and first_match(name, SANDBOX_IMAGE_GLOBS):
            return "pod sandbox image"
    return None


def _age_rule(image: Image, rules: ImageRules, unused_for: timedelta) -> tuple[str, str] | None:
    rule = rules.unused if image.tags else rules.dangling
    if not rule.enabled or unused_for < rule.olderThan:
        return None
    threshold = f"olderThan {format_duration(rule.olderThan)}"
    if image.tags:
        return "images.unused", f"unused for {format_age(unused_for)} ({threshold})"
    return "images.dangling", f"untagged, last used {format_age(unused_for)} ago ({threshold})"


def _children(images: Iterable[Image]) -> Mapping[str, list[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for image in images:
        if image.parent_id:
            children[image.parent_id].append(image.id)
    return children


def _leaves_first(snap: Snapshot, planned: set[str],
                  last_used: Mapping[str, datetime]) -> list[str]:
    """Children before parents (as the executor will remove them), then least recently used."""
    children = _children(snap.images)
    height: dict[str, int] = {}

    def height_of(image_id: str) -> int:
        if image_id not in height:
            height[image_id] = max((1 + height_of(c) for c in children.get(image_id, ())
                                    if c in planned), default=0)
        return height[image_id]

    return sorted(planned, key=lambda i: (height_of(i), last_used[i], i))


def _ancestors(snap: Snapshot, ids: set[str]) -> set[str]:
    """Every image some image in ``ids`` is built on (parent, grandparent, ...)."""
    found: set[str] = set()
    pending = list(ids)
    while pending:
        image = snap.image(pending.pop())
        parent = image.parent_id if image else ""
        if parent and parent not in found:
            found.add(parent)
            pending.append(parent)
    return found


def _removal(snap: Snapshot, image: Image, rule: str, why: str) -> Action:
    details = {"tags": list(image.tags), "digests": list(image.digests),
               "parent": image.parent_id or None}
    name = image.tags[0] if image.tags else image.id.removeprefix("sha256:")[:12]
    return Action(kind="image", name=name, id=image.id, verb=Verb.DELETE, rule=rule, why=why,
                  bytes=estimated_bytes(snap, image), details=MappingProxyType(details))


def _under_pressure(disk: Disk | None, rules: ImageRules) -> bool:
    pressure = rules.diskPressure
    return bool(pressure.enabled and disk is not None and disk.visible
                and disk.percent > pressure.highPercent)


def _evictions(snap: Snapshot, rules: ImageRules, last_used: Mapping[str, datetime],
               pinned: set[str], planned: set[str], freed: int, now: datetime) -> list[Action]:
    """Least recently used first, leaves before parents, until usage would reach lowPercent."""
    disk, pressure = snap.disk, rules.diskPressure
    assert disk is not None and disk.total is not None
    needed = (disk.used or 0) - int(disk.total * pressure.lowPercent / 100) - freed
    children = _children(snap.images)
    gone = set(planned)

    def evictable(image_id: str) -> bool:
        return (image_id not in pinned and image_id not in gone and snap.image(image_id) is not None
                and all(c in gone for c in children.get(image_id, ())))

    heap = [(last_used[i.id], i.id) for i in snap.images if evictable(i.id)]
    heapq.heapify(heap)
    actions: list[Action] = []
    while heap and needed > 0:
        used_at, image_id = heapq.heappop(heap)
        image = snap.image(image_id)
        assert image is not None
        why = (f"disk {disk.percent:.0f}% full > {pressure.highPercent:g}%: least recently used "
               f"(last used {format_age(now - used_at)} ago), {format_bytes(needed)} "
               f"still to free to reach {pressure.lowPercent:g}%")
        action = _removal(snap, image, "images.diskPressure", why)
        actions.append(action)
        needed -= action.bytes or 0
        gone.add(image_id)
        if image.parent_id and evictable(image.parent_id):
            heapq.heappush(heap, (last_used[image.parent_id], image.parent_id))
    return actions
