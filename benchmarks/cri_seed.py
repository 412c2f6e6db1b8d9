"""The containerd state the prune benchmark measures on, seeded afresh before each measurement.

A CRI runtime cannot be snapshotted as a data root can (its sandboxes and
containers are live tasks), so every measurement gets a new private
containerd, seeded the same way.  Seeding must then be quick: the image
tarballs are written once (``write_archives``), in batches, and each seed
only imports them (``ctr -n k8s.io images import``, one call per batch) and
makes the pods through the CRI.

Images share layers as pulled versions of one application do: every image is
busybox + one layer per application + one per version, so all share the base
and each application's ten versions share its layer.  Every 10th image has a
second tag.  Each pod is a hostNetwork sandbox (its image is the pinned
sandbox image) with one running container, one that ran and exited and one
created but never started, each of a different image: those images are in use
and must stay, whatever removes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.node_seed import Step, timed
from scripts.localenv import containerd, cri_images
from scripts.localenv.cri_images import ArchiveImage
from scripts.localenv.cri_pods import CriClient

REGISTRY = "kubekeeper.test/bench"
"""Full names, as the CRI lists them (a bare ``bench/app`` is listed as ``docker.io/...``)."""
VERSIONS = 10
"""Versions of one application: images sharing its layer."""
BATCH = 100
"""Images per tarball (per ``ctr import``)."""
CONTAINERS_PER_POD = ("app", "init", "sidecar")
"""Running, exited, created: one image each."""


@dataclass(frozen=True)
class CriScale:
    images: int
    pods: int

    @property
    def in_use(self) -> int:
        """Images containers use (at most every image)."""
        return min(self.images, self.pods * len(CONTAINERS_PER_POD))


def bench_images(scale: CriScale) -> list[ArchiveImage]:
    """The seeded images, always the same bytes (so the same ids) for the same scale."""
    images = []
    for n in range(scale.images):
        app, version = divmod(n, VERSIONS)
        tags = [f"{REGISTRY}/app{app}:v{version}"] + ([f"{REGISTRY}/alias:{n}"]
                                                      if n % 10 == 0 else [])
        images.append(cri_images.image(tags, f"app {app}", f"app {app} version {version}"))
    return images


def write_archives(images: list[ArchiveImage], work: Path) -> list[tuple[Path, list[ArchiveImage]]]:
    """One docker-archive tarball per ``BATCH`` images, written once for every seed."""
    batches = []
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        path = work / f"images-{start // BATCH}.tar"
        path.write_bytes(cri_images.docker_archive(batch))
        batches.append((path, batch))
    return batches


def seed(state_dir: Path, archives: list[tuple[Path, list[ArchiveImage]]],
         scale: CriScale) -> tuple[containerd.Containerd, list[Step]]:
    """A new containerd in ``state_dir`` (the old one stopped and wiped), seeded."""
    steps: list[Step] = []
    timed(steps, "stop and wipe the previous containerd", lambda: containerd.stop(state_dir))
    service = timed(steps, "start containerd (sandbox image imported, pinned)",
                    lambda: containerd.start(state_dir))
    timed(steps, f"import {scale.images} images ({len(archives)} tarballs)",
          lambda: [cri_images.import_archive(service, path, batch, timeout=600)
                   for path, batch in archives])
    used = [img.tags[0] for img in bench_images(scale)[:scale.in_use]]
    timed(steps, f"{scale.pods} pods: sandbox + running, exited and created containers",
          lambda: _pods(service, scale, used))
    return service, steps


def _pods(service: containerd.Containerd, scale: CriScale, used: list[str]) -> None:
    client = CriClient(service.endpoint, service.state_dir / "pod-logs")
    try:
        for n in range(scale.pods):
            pod = client.run_pod(f"bench-{n}")
            app, init, sidecar = (used[(n * len(CONTAINERS_PER_POD) + k) % len(used)]
                                  for k in range(len(CONTAINERS_PER_POD)))
            client.running_container(pod, "app", app)
            client.exited_container(pod, "init", init)
            client.create_container(pod, "sidecar", sidecar, ["true"])
    finally:
        client.close()
