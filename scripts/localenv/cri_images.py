"""Images for the private containerd, written as docker-archive tarballs: no registry needed.

Every image starts from one layer holding Debian's static busybox (the same
rootfs as the Docker test images); images made with the same extra contents get
byte-identical layers, so images share layers exactly where their layer lists
share a prefix, as on a node that pulled several tags of one application.
`import_images` loads an archive with `ctr -n k8s.io images import`, which is
what makes the images visible to the CRI.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc
from scripts.localenv import testimages

if TYPE_CHECKING:
    from scripts.localenv.containerd import Containerd

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
IDLE = ("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done")
"""A command that runs until stopped and stops at once on SIGTERM: a pod's long-lived app."""
_VISIBLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class ArchiveImage:
    """One image of an archive: its references, its layers (plain tars) and its config."""

    tags: tuple[str, ...]
    layers: tuple[bytes, ...]
    cmd: tuple[str, ...] = ("sh",)
    created: datetime = _EPOCH
    labels: Mapping[str, str] = field(default_factory=dict)

    def config(self) -> bytes:
        """The image config JSON; its digest is the image id containerd reports."""
        return _json({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": {"Env": ["PATH=/bin"], "Cmd": list(self.cmd),
                       "Labels": dict(self.labels)},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(lay)}"
                                                      for lay in self.layers]},
            "history": [{"created": "2026-01-01T00:00:00Z"} for _ in self.layers],
        })

    @property
    def image_id(self) -> str:
        """``sha256:<config digest>``, the id the CRI gives the image."""
        return f"sha256:{_sha(self.config())}"


@functools.cache
def busybox_layer() -> bytes:
    """The base layer: /bin/busybox, a symlink per applet, and the usual empty dirs."""
    testimages.ensure_busybox()
    return testimages.busybox_rootfs()


def file_layer(content: str, path: str = "layers") -> bytes:
    """A layer holding one file; the same content always gives the same digest."""
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(data), 0o644, int(_EPOCH.timestamp())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def image(tags: Sequence[str], *contents: str, **fields: object) -> ArchiveImage:
    """Busybox plus one `file_layer` per content, tagged with every one of `tags`."""
    layers = (busybox_layer(), *(file_layer(c) for c in contents))
    return ArchiveImage(tuple(tags), layers, **fields)  # type: ignore[arg-type]


def pause_image(reference: str) -> ArchiveImage:
    """A sandbox image: busybox sleeping for ever, as pause does (it is SIGKILLed at stop)."""
    return ArchiveImage((reference,), (busybox_layer(),), cmd=("sleep", "2147483647"))


def real_pause_image(reference: str, binary: Path) -> ArchiveImage:
    """The sandbox image of a real node: Kubernetes' static pause binary as /pause, alone.

    pause is PID 1 of pods that share a PID namespace and reaps their zombies, which
    `pause_image`'s sleep does not; the local node's pods get this one.
    """
    data = binary.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(data), 0o755, int(_EPOCH.timestamp())
        tar.addfile(info, io.BytesIO(data))
    return ArchiveImage((reference,), (buffer.getvalue(),), cmd=("/pause",))


def docker_archive(images: Iterable[ArchiveImage]) -> bytes:
    """A `docker save`-style tarball of `images`, each shared layer stored once."""
    entries: dict[str, bytes] = {}
    manifest = []
    for img in images:
        config = img.config()
        config_name = f"{_sha(config)}.json"
        entries[config_name] = config
        layer_names = []
        for layer in img.layers:
            layer_names.append(f"{_sha(layer)}/layer.tar")
            entries[layer_names[-1]] = layer
        manifest.append({"Config": config_name, "RepoTags": list(img.tags),
                         "Layers": layer_names})
    entries["manifest.json"] = _json(manifest)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def import_images(service: Containerd, images: Iterable[ArchiveImage]) -> None:
    """Import `images` into the CRI's namespace; returns once the CRI lists every tag.

    The CRI learns of imported images from containerd's events, a moment after
    `ctr` returns, and one tag at a time, so the wait is needed.
    """
    images = list(images)
    with tempfile.NamedTemporaryFile(dir=service.state_dir, suffix=".tar") as archive:
        archive.write(docker_archive(images))
        archive.flush()
        import_archive(service, Path(archive.name), images)


def import_archive(service: Containerd, archive: Path, images: Sequence[ArchiveImage],
                   timeout: float = 120) -> None:
    """Import an archive written before from `images`, then wait as `import_images` does.

    So a caller that imports the same images many times (the benchmark) writes them once.
    """
    service.ctr("images", "import", "--platform", "linux/amd64", str(archive), timeout=timeout)
    expected = {(img.image_id, tag) for img in images for tag in img.tags}
    with grpc.insecure_channel(service.endpoint) as channel:
        stub = api_pb2_grpc.ImageServiceStub(channel)

        def listed() -> set[tuple[str, str]]:
            answer = stub.ListImages(api_pb2.ListImagesRequest(), timeout=30)
            return {(i.id, tag) for i in answer.images for tag in i.repo_tags}

        deadline = time.monotonic() + _VISIBLE_TIMEOUT
        while missing := expected - listed():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the CRI does not list {sorted(missing)} "
                                   f"{_VISIBLE_TIMEOUT:.0f}s after the import")
            time.sleep(0.05)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
