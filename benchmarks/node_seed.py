"""The node state the prune benchmark measures on, built once per benchmark.

Images (``Scale.images`` counts every image, intermediate ones included) are
built with the classic builder on the busybox base, so they share layers the
way real nodes' images do: chains of 5 (each FROM the one before), groups of
9 siblings on one shared parent, images dangling after a rebuild of their tag,
a few images with a second tag, and the rest one LABEL step on the base.
Containers really ran and exited, spread round-robin over the tagged and the
dangling images; every 10th has an anonymous volume.  Standalone volumes are
half named, half with Docker's 64-hex anonymous names.  A few containers keep
running (``restart: always``, so they survive the snapshot's restarts), some
with a named volume, so the sets that must stay are not empty.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import docker

from scripts.localenv import testimages as ti

CHAIN_DEPTH = 5
SIBLINGS = 9
_SEED_WORKERS = 4
_T = TypeVar("_T")


@dataclass(frozen=True)
class Scale:
    images: int
    containers: int
    volumes: int

    @property
    def chains(self) -> int:
        return max(1, self.images // 50)

    @property
    def sibling_groups(self) -> int:
        return max(1, self.images // 50)

    @property
    def dangling(self) -> int:
        return max(1, self.images // 10)

    @property
    def label_only(self) -> int:
        """The rest of the image count: 1 base, chains, groups (+ parent), 2 per dangling."""
        used = 1 + self.chains * CHAIN_DEPTH + self.sibling_groups * (SIBLINGS + 1)
        return max(0, self.images - used - 2 * self.dangling)

    @property
    def running(self) -> int:
        return max(1, self.containers // 200)


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float


def timed(steps: list[Step], name: str, work: Callable[[], _T]) -> _T:
    """Run one seeding step, announced on stderr, its time appended to ``steps``."""
    print(f"seed: {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = work()
    steps.append(Step(name, time.monotonic() - started))
    return result


def seed(client: docker.DockerClient, scale: Scale) -> list[Step]:
    """Build the whole state; returns the time of each step (seeding is not measured)."""
    steps: list[Step] = []
    refs: list[str] = []
    tops: list[str] = []
    timed(steps, "images", lambda: _images(client, scale, refs, tops))
    timed(steps, "exited containers (run to completion)", lambda: _exited(client, scale, refs))
    timed(steps, "running containers", lambda: _running(client, scale, tops))
    timed(steps, "dangling volumes", lambda: _volumes(client, scale))
    return steps


def _images(client: docker.DockerClient, scale: Scale, refs: list[str],
            tops: list[str]) -> None:
    """Fill ``refs`` (what containers use) and ``tops`` (the newest of chains and groups)."""
    ti.base_image(client)
    refs.append(ti.BASE_IMAGE)
    for n in range(scale.chains):
        chain = [img.tags[0] for img in ti.image_chain(client, f"bench/chain{n}", CHAIN_DEPTH)]
        refs.extend(chain)
        tops.append(chain[-1])
    for n in range(scale.sibling_groups):
        group = [img.tags[0] for img in ti.sibling_images(client, f"bench/group{n}", SIBLINGS)]
        refs.extend([*group, f"bench/group{n}:common"])
        tops.append(group[-1])
    for n in range(scale.dangling):
        refs.append(ti.dangling_image(client, f"bench/rebuilt{n}:latest"))
        refs.append(f"bench/rebuilt{n}:latest")
    for n in range(scale.label_only):
        image = ti.build_image(client, f"bench/label:{n}",
                               f"FROM {ti.BASE_IMAGE}\nLABEL bench.index={n}\n")
        if n % 10 == 0:
            ti.retag(image, f"bench/alias:{n}")
        refs.append(f"bench/label:{n}")


def _exited(client: docker.DockerClient, scale: Scale, refs: list[str]) -> None:
    api = client.api
    host_config = api.create_host_config(network_mode="none")

    def run(index: int) -> None:
        container = api.create_container(
            refs[index % len(refs)], ["sh", "-c", f"echo exited {index}"],
            name=f"bench-exited-{index}", host_config=host_config,
            volumes=["/data"] if index % 10 == 0 else None)
        api.start(container)
        api.wait(container, timeout=300)

    with ThreadPoolExecutor(_SEED_WORKERS) as pool:
        list(pool.map(run, range(scale.containers)))


def _running(client: docker.DockerClient, scale: Scale, tops: list[str]) -> None:
    """Kept by every cleanup: SIGKILL on stop so the snapshot's dockerd stops are quick."""
    for index in range(scale.running):
        volume = {f"bench-live-{index}": {"bind": "/live", "mode": "rw"}} if index % 2 == 0 \
            else None
        client.containers.run(tops[index % len(tops)], ["sleep", "864000"],
                              name=f"bench-running-{index}", detach=True, network_mode="none",
                              stop_signal="SIGKILL", restart_policy={"Name": "always"},
                              volumes=volume)


def _volumes(client: docker.DockerClient, scale: Scale) -> None:
    for index in range(scale.volumes):
        name = (f"bench-vol-{index}" if index % 2 == 0
                else hashlib.sha256(f"bench-vol-{index}".encode()).hexdigest())
        client.volumes.create(name=name)
