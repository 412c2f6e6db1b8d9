"""A read-only, frozen picture of the runtime objects the cleanup planners judge.

This module fills it from Docker; ``cri_inventory`` fills the same shape from
the CRI, so the planners read one meaning whichever port answered.

Taking the snapshot is the only I/O before planning.  It is taken in two steps
so a large node stays cheap: ``take`` makes one list call per object type (plus
one for the sizes of finished containers), and ``with_details`` then inspects
only the containers and images whose finish or tag time can change a decision
(``planner.details_needed`` says which).  A field left ``None`` means "not
fetched" or "not visible", never zero.

A time Docker leaves out or zeroes (``Created``, ``CreatedAt``, ``FinishedAt``)
is None, never 1970: the planners keep an object whose age is unknown.
First-seen times come from the node's own record (``state.annotate``), not
from Docker.

Sizes are what Docker reports: a container's writable layer (``SizeRw``), an
image's full ``Size`` including its parents, and for a local volume the bytes
found by walking its directory through ``--host-root`` (None when not visible).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agents.node.docker_port import DockerPort, Gone
from agents.node.host_paths import HostPaths

_ANONYMOUS_NAME = re.compile(r"^[0-9a-f]{64}$")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    state: str
    created: datetime | None
    image_id: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    volumes: tuple[str, ...] = ()
    size: int | None = None
    finished_at: datetime | None = None
    """When it stopped; fetched only where it can change a decision."""
    first_seen: datetime | None = None


@dataclass(frozen=True)
class Image:
    id: str
    created: datetime | None
    size: int
    parent_id: str = ""
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tagged_at: datetime | None = None
    """Docker's LastTagTime (set by tag and build); fetched only where it can matter."""
    first_seen: datetime | None = None
    last_seen_in_use: datetime | None = None
    """The last run that saw a container using it, from the node's record."""
    pinned: bool = False
    """The CRI's own keep flag (set for the sandbox image); Docker has none."""

    @property
    def references(self) -> tuple[str, ...]:
        return self.tags + self.digests


@dataclass(frozen=True)
class Volume:
    name: str
    created: datetime | None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    size: int | None = None
    first_seen: datetime | None = None

    @property
    def anonymous(self) -> bool:
        """Docker names anonymous volumes with 64 hex digits (newer engines also label them)."""
        return bool(_ANONYMOUS_NAME.match(self.name)) or ANONYMOUS_LABEL in self.labels


@dataclass(frozen=True)
class Sandbox:
    """A CRI pod sandbox: a runtime object of its own, not a container.

    Its image (where the runtime tells it) is in use for as long as the
    sandbox exists, whatever its state; Docker's sandboxes are containers
    with the ``io.kubernetes.docker.type`` label instead.
    """

    id: str
    name: str
    namespace: str
    state: str
    image_id: str = ""
    """Empty when the runtime does not say which image it runs (``pinned`` covers it)."""


@dataclass(frozen=True)
class Disk:
    """Usage of the filesystem holding the image store, or where we looked for it.

    Measured as the kubelet's image GC measures it: ``(capacity - available) /
    capacity``, where ``available`` is what unprivileged writers may still use.
    Blocks reserved for root count as used, since the kubelet and the images'
    writers cannot use them either; ``used / total`` would read several points
    low on ext4 (5% reserved) and trip the watermarks late.
    """

    host_path: str
    local_path: str
    capacity: int | None = None
    available: int | None = None

    @property
    def visible(self) -> bool:
        return bool(self.capacity)

    @property
    def used(self) -> int:
        """Bytes not available: used, plus reserved for root."""
        return (self.capacity or 0) - (self.available or 0)

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.capacity if self.capacity else 0.0


@dataclass(frozen=True)
class Snapshot:
    """Everything the cleanup planners read; sequences are stored as tuples."""

    docker_root: str
    containers: tuple[Container, ...] = ()
    images: tuple[Image, ...] = ()
    volumes: tuple[Volume, ...] = ()
    disk: Disk | None = None
    sandboxes: tuple[Sandbox, ...] = ()
    """CRI pod sandboxes (empty on Docker, whose sandboxes are containers)."""
    _images_by_id: Mapping[str, Image] = field(
        default_factory=lambda: MappingProxyType({}), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("containers", "images", "volumes", "sandboxes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "_images_by_id",
                           MappingProxyType({i.id: i for i in self.images}))

    def image(self, image_id: str) -> Image | None:
        return self._images_by_id.get(image_id)


def take(port: DockerPort, paths: HostPaths) -> Snapshot:
    """List containers, images and volumes; measure the Docker root's filesystem."""
    root = port.info().get("DockerRootDir") or "/var/lib/docker"
    sizes = {c["Id"]: c.get("SizeRw") or 0 for c in port.containers(finished_with_size=True)}
    containers = [_container(c, sizes.get(c["Id"])) for c in port.containers()]
    running_mounts = {v for c in containers if c.state in ("running", "paused", "restarting")
                      for v in c.volumes}
    volumes = [_volume(v, paths, measure=v.get("Name") not in running_mounts)
               for v in port.volumes()]
    images = [_image(i) for i in port.images()]
    return Snapshot(root, tuple(containers), tuple(images), tuple(volumes),
                    disk_usage(root, paths))


def with_details(port: DockerPort, snap: Snapshot, container_ids: Iterable[str],
                 image_ids: Iterable[str]) -> Snapshot:
    """Add finish times and tag times, one inspect call per object asked for.

    An object that vanished in between keeps ``None``; the executor will find it gone.
    """
    finished: dict[str, datetime | None] = {}
    for cid in container_ids:
        try:
            finished[cid] = docker_time(port.inspect_container(cid)["State"].get("FinishedAt"))
        except Gone:
            continue
    tagged: dict[str, datetime | None] = {}
    for iid in image_ids:
        try:
            tagged[iid] = docker_time(
                (port.inspect_image(iid).get("Metadata") or {}).get("LastTagTime"))
        except Gone:
            continue
    containers = [replace(c, finished_at=finished.get(c.id, c.finished_at))
                  for c in snap.containers]
    images = [replace(i, tagged_at=tagged.get(i.id, i.tagged_at)) for i in snap.images]
    return replace(snap, containers=tuple(containers), images=tuple(images))


def disk_usage(host_path: str, paths: HostPaths) -> Disk:
    """The filesystem holding ``host_path`` (the image store), if it is visible here."""
    local = paths.resolve(host_path)
    if local is None:
        return Disk(host_path, paths.local(host_path))
    try:
        fs = os.statvfs(local)
    except OSError:
        return Disk(host_path, local)
    return Disk(host_path, local, fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize)


def docker_time(value: Any) -> datetime | None:
    """Parse Docker's RFC 3339 times (nanoseconds, ``Z``); Go's zero time means unknown."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC) if value > 0 else None
    if not value or str(value).startswith("0001-01-01"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value)).replace("Z", "+00:00")
    return datetime.fromisoformat(text).astimezone(UTC)


def _container(raw: Mapping[str, Any], size: int | None) -> Container:
    names = raw.get("Names") or [raw["Id"][:12]]
    mounts = tuple(m["Name"] for m in raw.get("Mounts") or []
                   if m.get("Type") == "volume" and m.get("Name"))
    return Container(
        id=raw["Id"], name=names[0].lstrip("/"), state=raw.get("State", ""),
        created=docker_time(raw.get("Created")), image_id=raw.get("ImageID", ""),
        labels=MappingProxyType(dict(raw.get("Labels") or {})),
        volumes=mounts, size=size)


def _image(raw: Mapping[str, Any]) -> Image:
    return Image(
        id=raw["Id"], created=docker_time(raw.get("Created")),
        size=int(raw.get("Size") or 0), parent_id=raw.get("ParentId") or "",
        tags=tuple(t for t in raw.get("RepoTags") or [] if "<none>" not in t),
        digests=tuple(d for d in raw.get("RepoDigests") or [] if "<none>" not in d),
        labels=MappingProxyType(dict(raw.get("Labels") or {})))


def _volume(raw: Mapping[str, Any], paths: HostPaths, measure: bool) -> Volume:
    size = None
    if measure and raw.get("Driver") == "local" and raw.get("Mountpoint"):
        size = tree_size(paths.resolve(raw["Mountpoint"]))
    return Volume(name=raw["Name"],
                  created=docker_time(raw.get("CreatedAt")),
                  labels=MappingProxyType(dict(raw.get("Labels") or {})), size=size)


def tree_size(local_dir: str | None) -> int | None:
    """Bytes of the regular files under a directory, links not followed; None if not visible."""
    if local_dir is None or not os.path.isdir(local_dir):
        return None
    total, pending = 0, [local_dir]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total
