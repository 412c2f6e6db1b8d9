"""The snapshot the cleanup planners read, filled from the CRI instead of Docker.

Same shape, same meaning (see ``inventory``), so the planners stay
runtime-neutral:
- images carry the runtime's ``pinned`` flag, which the image planner never
  overrides; their build and tag times are not in the CRI and stay None
  (ages come from the node's first-seen record anyway);
- every container the runtime knows is listed, in any state, with its image
  id resolved to the id ``ListImages`` gives, so an image a container was
  created from by tag or digest counts as used;
- pod sandboxes are their own list, each with the image it runs where the
  runtime says (containerd does, in ``PodSandboxStatus`` verbose info: one call
  per sandbox, all sent together); the planner keeps those images, and ``pinned`` covers the
  sandbox image on runtimes that do not say;
- no volumes: the CRI has none;
- the disk is the filesystem of ``ImageFsInfo``'s first mountpoint, measured
  under ``--host-root`` as the kubelet measures it.

Layers are shared by content on containerd and CRI-O, so an image's ``size``
counts shared layers in full and the planner's bytes are an estimate; there
are no parent chains (``parent_id`` stays empty).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from agents.node.host_paths import HostPaths
from agents.node.inventory import Container, Disk, Image, Sandbox, Snapshot, disk_usage
from agents.node.protection import CONTAINER_NAME, POD_NAME, POD_NAMESPACE

if TYPE_CHECKING:
    from agents.node.cri_port import CriContainer, CriImage, CriPort, CriSandbox

STATES = {"created": "created", "running": "running", "exited": "exited", "unknown": "unknown"}
"""CRI container states as the planners read them; ``unknown`` is never judged finished."""


def take(port: CriPort, paths: HostPaths) -> Snapshot:
    """List images, containers and sandboxes; measure the image filesystem."""
    raw_images = port.images()
    ids = image_names(raw_images)
    containers = tuple(_container(c, ids) for c in port.containers())
    raw_sandboxes = port.sandboxes()
    images_of = port.sandbox_images([s.id for s in raw_sandboxes])
    sandboxes = tuple(_sandbox(s, images_of.get(s.id), ids) for s in raw_sandboxes)
    images = tuple(_image(i) for i in raw_images)
    filesystems = port.image_fs()
    root = filesystems[0].mountpoint if filesystems else ""
    disk = disk_usage(root, paths) if root else Disk("(the runtime reports no image filesystem)",
                                                     "")
    return Snapshot(root, containers, images, (), disk, sandboxes=sandboxes)


def image_names(images: Iterable[CriImage]) -> Mapping[str, str]:
    """Every name an image goes by (id with and without ``sha256:``, tags, digests) → its id."""
    names: dict[str, str] = {}
    for image in images:
        for name in (image.id, image.id.removeprefix("sha256:"), *image.references):
            names.setdefault(name, image.id)
    return MappingProxyType(names)


def _resolve(ids: Mapping[str, str], *references: str) -> str:
    """The listed image id behind the first reference that names one, else the first as is."""
    return next((ids[r] for r in references if r in ids), references[0])


def _image(raw: CriImage) -> Image:
    return Image(id=raw.id, created=None, size=raw.size, tags=raw.tags, digests=raw.digests,
                 pinned=raw.pinned)


def _container(raw: CriContainer, ids: Mapping[str, str]) -> Container:
    labels = raw.labels
    pod, namespace = labels.get(POD_NAME), labels.get(POD_NAMESPACE)
    name = labels.get(CONTAINER_NAME, raw.name)
    shown = f"{namespace}/{pod}/{name}" if pod and namespace else raw.name
    return Container(id=raw.id, name=shown, state=STATES.get(raw.state, "unknown"),
                     created=raw.created, image_id=_resolve(ids, raw.image_id, raw.image),
                     labels=labels)


def _sandbox(raw: CriSandbox, image: str | None, ids: Mapping[str, str]) -> Sandbox:
    return Sandbox(id=raw.id, name=raw.name, namespace=raw.namespace, state=raw.state,
                   image_id=_resolve(ids, image) if image else "")
