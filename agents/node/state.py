"""The node-local record of when each object was first seen and each image last seen in use.

Docker and the CRI know when an image was *built* (``Created``), not when it
arrived on this node: an image built months ago and pulled a minute ago
looks months old.  The kubelet counts image age from when it first saw the
image, and docuum keeps its own record of use; kubekeeper does the same.
Every age rule and the disk-pressure LRU order read these times, so no
object is old merely because its build is.

- No record yet (the first run on a node, a new ``--state-dir``): everything
  counts as seen now, so nothing is removed for age until ``olderThan`` has
  passed since installation.  The run says so in one report line.
- A corrupt or unreadable record is reported and treated as no record, which
  errs towards keeping.
- The record holds only objects that still exist (the rest are dropped at
  each observation), about 100 bytes per object, and is written atomically:
  temp file, fsync, rename, fsync of the directory.  A reader never sees a
  half-written file, and a crash loses at most the last observation.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Verb
from agents.node.inventory import Snapshot

VERSION = 1
MAX_BYTES = 64 * 2**20
"""A record larger than this is not ours (500,000 objects would take 50 MiB): refused."""


@dataclass(frozen=True)
class NodeState:
    """First-seen and last-in-use times, by object id (volume name), as UTC datetimes."""

    since: datetime
    images: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    image_use: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    containers: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    volumes: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    problem: str | None = None
    """Why the stored record could not be used; None when it was read (or there was none)."""
    found: bool = True
    """False when no usable record existed: every object is then first seen by this run."""


@dataclass(frozen=True)
class StateFile:
    """Where one runtime's record lives: ``<state-dir>/<runtime>.json``."""

    directory: str
    runtime: str = "docker"

    @property
    def path(self) -> str:
        return os.path.join(self.directory, f"{self.runtime}.json")

    def load(self, now: datetime) -> NodeState:
        """The stored record, or an empty one that says why there was none."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_BYTES + 1)
        except FileNotFoundError:
            return NodeState(since=now, found=False)
        except OSError as exc:
            return NodeState(since=now, found=False, problem=f"cannot read {self.path}: {exc}")
        try:
            if len(data) > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            return _decode(json.loads(data))
        except Exception as exc:
            # Any shape we did not write (a list where a mapping was, a short entry, nesting
            # past the recursion limit) is "no record", the safe direction: letting it escape
            # would fail every run until someone deleted the file.
            return NodeState(since=now, found=False,
                             problem=f"{self.path} is not a kubekeeper state record ({exc})")

    def save(self, state: NodeState) -> None:
        """Replace the record atomically; raises OSError when the directory is not writable."""
        os.makedirs(self.directory, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.runtime}.", suffix=".tmp",
                                    dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(_encode(state), handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def observe(state: NodeState, snap: Snapshot, now: datetime) -> NodeState:
    """The record after seeing ``snap`` at ``now``: new objects first seen now, images that
    any container or CRI sandbox uses (running or not) last seen in use now, vanished
    objects dropped."""
    in_use = {c.image_id for c in snap.containers if c.image_id} | {
        s.image_id for s in snap.sandboxes if s.image_id}
    present = {i.id for i in snap.images}
    return replace(
        state, found=True, problem=None,
        images=_seen(state.images, (i.id for i in snap.images), now),
        image_use=MappingProxyType({
            **{i: t for i, t in state.image_use.items() if i in present},
            **{i: now for i in present & in_use}}),
        containers=_seen(state.containers, (c.id for c in snap.containers), now),
        volumes=_seen(state.volumes, (v.name for v in snap.volumes), now))


def annotate(snap: Snapshot, state: NodeState) -> Snapshot:
    """The snapshot with every object's first-seen time (and images' last use) filled in."""
    images = tuple(replace(i, first_seen=state.images.get(i.id),
                           last_seen_in_use=state.image_use.get(i.id)) for i in snap.images)
    containers = tuple(replace(c, first_seen=state.containers.get(c.id))
                       for c in snap.containers)
    volumes = tuple(replace(v, first_seen=state.volumes.get(v.name)) for v in snap.volumes)
    return replace(snap, images=images, containers=containers, volumes=volumes)


def _seen(known: Mapping[str, datetime], present: Iterable[str],
          now: datetime) -> Mapping[str, datetime]:
    return MappingProxyType({key: known.get(key, now) for key in present})


def _encode(state: NodeState) -> dict[str, Any]:
    stamp = _stamp
    return {"version": VERSION, "since": stamp(state.since),
            "images": {k: [stamp(v), _maybe(state.image_use.get(k))]
                       for k, v in state.images.items()},
            "containers": {k: stamp(v) for k, v in state.containers.items()},
            "volumes": {k: stamp(v) for k, v in state.volumes.items()}}


def _decode(raw: Any) -> NodeState:
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        raise ValueError(f"version is {raw.get('version') if isinstance(raw, dict) else raw!r}, "
                         f"expected {VERSION}")
    images = {str(k): _time(v[0]) for k, v in raw["images"].items()}
    use = {str(k): _time(v[1]) for k, v in raw["images"].items() if v[1] is not None}
    return NodeState(
        since=_time(raw["since"]), images=MappingProxyType(images),
        image_use=MappingProxyType(use),
        containers=MappingProxyType({str(k): _time(v) for k, v in raw["containers"].items()}),
        volumes=MappingProxyType({str(k): _time(v) for k, v in raw["volumes"].items()}))


def _stamp(moment: datetime) -> float:
    return round(moment.timestamp(), 3)


def _maybe(moment: datetime | None) -> float | None:
    return None if moment is None else _stamp(moment)


def _time(value: Any) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{value!r} is not a time")
    return datetime.fromtimestamp(value, UTC)


def findings(record: NodeState, store: StateFile, save_error: OSError | None) -> list[Action]:
    """The run's report lines about the record itself: none when all is well."""
    lines = []
    consequence = ("every object counts as first seen now, so nothing is removed for age "
                   "before its olderThan has passed")
    if record.problem:
        lines.append(_finding(store, f"{record.problem}: treated as no record; {consequence}"))
    elif not record.found:
        lines.append(_finding(store, f"no record at {store.path} yet (first run on this node, "
                                     f"or a new --state-dir): {consequence}"))
    if save_error is not None:
        lines.append(_finding(store, f"cannot write {store.path}: {save_error}; the next run "
                                     "will again count every object as first seen"))
    return lines


def _finding(store: StateFile, why: str) -> Action:
    return Action(kind="state", name=store.path, verb=Verb.REPORT, rule="--state-dir",
                  why=why, details=MappingProxyType({"path": store.path}))
