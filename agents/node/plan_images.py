"""Which images to remove, judged on the containers that will remain; pure.

Never planned, whatever the snapshot:
- an image any remaining container uses, running or not;
- an image the runtime pins (the CRI's ``pinned``, set for the sandbox image)
  and the image of any CRI pod sandbox, in any state, whatever the policy;
- an image another kept image is built on: an image is planned only when every
  child is planned too, and the executor removes children before parents;
- an image with the keep label or matching an ``images.protect`` glob (on
  ``repo:tag``, ``repo@digest`` or the id, with or without ``sha256:``; a
  Docker Hub reference also in Docker's short form, as the CRI lists
  ``docker.io/team/app:1`` where Docker lists ``team/app:1``);
- with ``protectSandboxImages``: ``registry.k8s.io/pause*``, ``k8s.gcr.io/pause*``
  and the image of every pod sandbox container in the snapshot.

"Last used" (``ages.image_last_used``) is the newest of: first seen on this
node (the node's own record), last seen in use by a container (the record),
the creation of any container in the snapshot that uses the image (including
containers removed in this same run) and, for a tagged image, its
LastTagTime.  Never its build time: an image built months ago and pulled a
minute ago was last used a minute ago.  Both age rules and the disk-pressure
LRU order use this one notion.  An image whose first sighting is unknown is
kept and reported (``skip``), unless the rule's ``olderThan`` is 0s.  Disk
pressure never evicts an image first seen less than ``diskPressure.minAge``
ago (the kubelet's ``imageMinimumGCAge``), so an image being pulled or just
pulled stays.

Bytes are an estimate: an image's ``Size`` minus its parent's ``Size`` when it
is built on a parent (the layers only it adds), else its whole ``Size``, which
over-counts layers shared with unrelated images.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node.ages import image_last_used
from agents.node.inventory import Container, Disk, Image, Snapshot
from agents.node.protection import (
    SANDBOX_IMAGE_GLOBS,
    familiar,
    first_match,
    is_sandbox,
    keep_labelled,
)
from agents.policy import ImageRules
from agents.units import format_age, format_bytes, format_duration

_UNKNOWN = datetime.min.replace(tzinfo=UTC)
"""Where an image of unknown last use sorts: it is only ever planned when any age qualifies."""


def plan_images(snap: Snapshot, rules: ImageRules, remaining: Sequence[Container],
                now: datetime, freed_elsewhere: int = 0) -> list[Action]:
    """Removal actions; every child of a planned image is planned before it.

    Images kept for an unknown age come last, as ``skip`` actions, and keep
    their ancestors too.
    """
    last_used = image_last_used(snap)
    pinned = set(pinned_images(snap, rules, remaining))
    decisions = {i.id: decision for i in snap.images if i.id not in pinned
                 for decision in [_age_rule(i, rules, now, last_used[i.id])] if decision}
    eligible = {k: v for k, v in decisions.items() if v[2] is None}
    staying = {i.id for i in snap.images} - set(eligible)
    planned = set(eligible) - _ancestors(snap, staying)
    actions = [_removal(snap, snap.image(i), *eligible[i][:2])
               for i in _leaves_first(snap, planned, last_used)]
    unknown = [_removal(snap, snap.image(i), rule, why, skip=skip)
               for i, (rule, why, skip) in sorted(decisions.items()) if skip]
    if rules.diskPressure.enabled:
        freed = freed_elsewhere + sum(a.bytes or 0 for a in actions)
        actions += _pressure(snap, rules, last_used, pinned, planned, freed, now)
    return actions + unknown


def _pressure(snap: Snapshot, rules: ImageRules, last_used: Mapping[str, datetime | None],
              pinned: set[str], planned: set[str], freed: int, now: datetime) -> list[Action]:
    """The disk line of the run, then the evictions if the disk is above ``highPercent``."""
    disk = snap.disk
    if disk is None:
        return []
    if not disk.visible:
        return [_disk_not_visible(disk)]
    if disk.percent <= rules.diskPressure.highPercent:
        why = (f"disk {describe(disk)}, at most highPercent "
               f"{rules.diskPressure.highPercent:g}%: no eviction")
        return [_disk_line(disk, why)]
    evictions = _evictions(snap, rules, last_used, pinned, planned, freed, now)
    why = (f"disk {describe(disk)} > highPercent {rules.diskPressure.highPercent:g}%: "
           f"{len(evictions)} images evicted to reach {rules.diskPressure.lowPercent:g}%")
    return [_disk_line(disk, why), *evictions]


def describe(disk: Disk) -> str:
    """``77% full (308.0Mi of 400.0Mi used or reserved, 92.0Mi available)``."""
    return (f"{disk.percent:.0f}% full ({format_bytes(disk.used)} of "
            f"{format_bytes(disk.capacity)} used or reserved, "
            f"{format_bytes(disk.available)} available)")


def _disk_line(disk: Disk, why: str) -> Action:
    details = {"path": disk.host_path, "capacity": disk.capacity, "available": disk.available,
               "percent": round(disk.percent, 1)}
    return Action(kind="disk", name=disk.host_path, verb=Verb.REPORT, rule="images.diskPressure",
                  why=why, details=MappingProxyType(details))


def _disk_not_visible(disk: Disk) -> Action:
    why = (f"image store {disk.host_path} is not visible at {disk.local_path or '-'} "
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
    for s in snap.sandboxes:
        if s.image_id:
            pinned.setdefault(s.image_id, f"image of pod sandbox {s.namespace}/{s.name}")
    for image in snap.images:
        why = "pinned by the runtime" if image.pinned else _protected(image, rules)
        if why:
            pinned.setdefault(image.id, why)
    return pinned


def estimated_bytes(snap: Snapshot, image: Image) -> int:
    parent = snap.image(image.parent_id) if image.parent_id else None
    if parent is not None and parent.size <= image.size:
        return image.size - parent.size
    return image.size


def _protected(image: Image, rules: ImageRules) -> str | None:
    if keep_labelled(image.labels):
        return "label kubekeeper.keep=true"
    names = [*image.references, *(familiar(r) for r in image.references), image.id,
             image.id.removeprefix("sha256:")]
    for name in names:
        glob = first_match(name, rules.protect)
        if glob:
            return f"images.protect {glob}"
        if rules.protectSandboxImages and first_match(name, SANDBOX_IMAGE_GLOBS):
            return "pod sandbox image"
    return None


def _age_rule(image: Image, rules: ImageRules, now: datetime, last_used: datetime | None
              ) -> tuple[str, str, str | None] | None:
    """(rule, why, skip) when the image's age rule applies or its age is unknown, else None."""
    rule = rules.unused if image.tags else rules.dangling
    name = "images.unused" if image.tags else "images.dangling"
    state = "unused" if image.tags else "untagged"
    threshold = f"olderThan {format_duration(rule.olderThan)}"
    if not rule.enabled:
        return None
    if rule.olderThan <= timedelta(0):
        return name, f"{state}, any age qualifies ({threshold})", None
    if last_used is None:
        return name, f"{state} ({threshold})", "age unknown: no first-seen record; kept"
    unused_for = now - last_used
    if unused_for < rule.olderThan:
        return None
    if image.tags:
        return name, f"unused for {format_age(unused_for)} ({threshold})", None
    return name, f"untagged, last used {format_age(unused_for)} ago ({threshold})", None


def _children(images: Iterable[Image]) -> Mapping[str, list[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for image in images:
        if image.parent_id:
            children[image.parent_id].append(image.id)
    return children


def _leaves_first(snap: Snapshot, planned: set[str],
                  last_used: Mapping[str, datetime | None]) -> list[str]:
    """Children before parents (as the executor will remove them), then least recently used."""
    children = _children(snap.images)
    height: dict[str, int] = {}

    def height_of(image_id: str) -> int:
        if image_id not in height:
            height[image_id] = max((1 + height_of(c) for c in children.get(image_id, ())
                                    if c in planned), default=0)
        return height[image_id]

    return sorted(planned, key=lambda i: (height_of(i), last_used[i] or _UNKNOWN, i))


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


def _removal(snap: Snapshot, image: Image, rule: str, why: str,
             skip: str | None = None) -> Action:
    details = {"tags": list(image.tags), "digests": list(image.digests),
               "parent": image.parent_id or None}
    name = image.tags[0] if image.tags else image.id.removeprefix("sha256:")[:12]
    return Action(kind="image", name=name, id=image.id, verb=Verb.DELETE, rule=rule, why=why,
                  bytes=estimated_bytes(snap, image), details=MappingProxyType(details),
                  skip=skip)


def _evictions(snap: Snapshot, rules: ImageRules, last_used: Mapping[str, datetime | None],
               pinned: set[str], planned: set[str], freed: int, now: datetime) -> list[Action]:
    """Least recently used first, leaves before parents, until usage would reach lowPercent.

    Only images first seen at least ``minAge`` ago and with a known last use
    are candidates.
    """
    disk, pressure = snap.disk, rules.diskPressure
    assert disk is not None and disk.capacity is not None
    needed = disk.used - int(disk.capacity * pressure.lowPercent / 100) - freed
    children = _children(snap.images)
    gone = set(planned)

    def evictable(image_id: str) -> bool:
        image = snap.image(image_id)
        return (image is not None and image_id not in pinned and image_id not in gone
                and last_used.get(image_id) is not None and image.first_seen is not None
                and now - image.first_seen >= pressure.minAge
                and all(c in gone for c in children.get(image_id, ())))

    heap = [(last_used[i.id], i.id) for i in snap.images if evictable(i.id)]
    heapq.heapify(heap)
    actions: list[Action] = []
    while heap and needed > 0:
        used_at, image_id = heapq.heappop(heap)
        image = snap.image(image_id)
        assert image is not None and used_at is not None
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
