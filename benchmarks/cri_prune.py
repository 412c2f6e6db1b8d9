"""``node_prune --runtime containerd``: the agent against ``crictl rmi --prune``.

The same measurements as the Docker benchmark (``node_measure``), on a private
containerd seeded afresh before each one (``cri_seed``), so all start from the
same images, sandboxes and containers:

- (a) ``kubekeeper node run --once --no-dry-run --job cleanup`` on
  ``--runtime cri:<socket>`` against ``crictl rmi --prune`` (cri-tools, built
  on demand by ``benchmarks/crictl/build``), both timed from spawn to exit;
  what each leaves is compared, by image id and tag, by pod and container
  name, and by the in-use and pinned images that must all stay;
- (b) the dry-run plan, in-process and as ``node plan``;
- (c) the daemon's RSS with the gRPC stack loaded, at its peak during its
  first runs and when idle after.

Both sides should remove the same set: every image no container uses and the
runtime does not pin.  The agent's policy makes every age qualify (``olderThan:
0s``), so its age rules do not keep what crictl removes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc
from agents.node.cri_port import GrpcCriPort
from agents.node.runtimes import Runtime
from benchmarks import node_measure as measure
from benchmarks.cri_seed import CriScale, bench_images, seed, write_archives
from benchmarks.node_seed import Step, timed
from benchmarks.node_table import Setup, Trial, progress_line
from scripts.localenv import controlplane, processes
from scripts.localenv.containerd import Containerd

_BUILD = Path(__file__).resolve().parent / "crictl" / "build"
KINDS = ("container", "pod", "image", "in-use image")
_TIMEOUT = 600
KEY = "criParallelism"
WIDE = 1024
"""The highest ``node.criParallelism`` a policy may set."""


def bench(args: argparse.Namespace, scale: CriScale, work: Path) -> tuple[Setup, list[Trial]]:
    steps: list[Step] = []
    crictl = timed(steps, "build crictl (cached after the first time)", build_crictl)
    archives = timed(steps, f"write {scale.images} images as tarballs (once)",
                     lambda: write_archives(bench_images(scale), work))
    policy = measure.write_policy(work, args.parallelism, key=KEY)
    wide = (WIDE, measure.write_policy(work, WIDE, "wide", key=KEY))
    seeds: list[list[Step]] = []

    def fresh(what: str) -> Containerd:
        print(f"restore for {what} ...", file=sys.stderr, flush=True)
        service, seeded = seed(work / "c", archives, scale)
        seeds.append(seeded)
        return service

    service = fresh("the seeded counts")
    version, seeded = _version(service), remaining(service)
    trials = [_trial(fresh, crictl, policy, wide, work, n) for n in range(args.repeat)]
    first = {s.name: s.seconds for s in seeds[0]}
    steps += [Step(f"{name} (median of {len(seeds)} seeds)",
                   statistics.median(s.seconds for seed_ in seeds for s in seed_
                                     if s.name == name)) for name in first]
    header = _header(scale, args.parallelism, version, seeded)
    return Setup("Node agent against `crictl rmi --prune` on containerd", header,
                 "`crictl rmi --prune`, spawn to exit", "containerd + its shims", KINDS,
                 steps), trials


def _trial(fresh: Callable[[str], Containerd], crictl: Path, policy: Path,
           wide: tuple[int, Path], work: Path, n: int) -> Trial:
    """Every measurement on its own seeded containerd; odd trials run the baseline first.

    The agent runs a second time at ``WIDE`` parallelism: crictl sends every removal at
    once, and containerd's removals share its garbage collections when they overlap.
    """

    def agent_side() -> tuple[measure.Plan, float, measure.AgentRun, measure.Cpu]:
        service = fresh(f"trial {n + 1}: the plan and the agent's run")
        target = measure.cri_target(service.socket)
        runtime = Runtime("cri", "cri", str(service.socket), explicit=True)
        plan = measure.plan_in_process(runtime, policy)
        plan_wall = measure.plan_cli(target, policy, work, f"t{n}")
        with measure.CpuMeter(_pid(service)) as cpu:
            agent = measure.agent_run(lambda: remaining(service), target, policy, work, f"t{n}")
        return plan, plan_wall, agent, cpu.used

    def baseline_side() -> tuple[measure.Baseline, measure.Cpu]:
        service = fresh(f"trial {n + 1}: crictl rmi --prune")
        with measure.CpuMeter(_pid(service)) as cpu:
            base = baseline(service, crictl, work, f"t{n}")
        return base, cpu.used

    (plan, plan_wall, agent, agent_cpu), (base, base_cpu) = measure.in_turn(
        n, agent_side, baseline_side)
    service = fresh(f"trial {n + 1}: the agent at parallelism {wide[0]}")
    wide_run = measure.agent_run(lambda: remaining(service), measure.cri_target(service.socket),
                                 wide[1], work, f"t{n}.wide")
    service = fresh(f"trial {n + 1}: the daemon")
    memory = measure.daemon_rss(measure.cri_target(service.socket), policy, work)
    trial = Trial(plan, plan_wall, agent, base, memory, agent_cpu, base_cpu,
                  (wide[0], wide_run))
    print(progress_line(f"trial {n + 1}", trial), file=sys.stderr, flush=True)
    return trial


def build_crictl() -> Path:
    """crictl, built once by ``benchmarks/crictl/build`` (only this benchmark needs it)."""
    result = subprocess.run([str(_BUILD)], capture_output=True, text=True,
                            env=controlplane.go_env(), check=False)
    if result.returncode != 0:
        raise processes.ServiceStartError(f"{_BUILD} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1]) / "crictl"


def baseline(service: Containerd, crictl: Path, work: Path, label: str) -> measure.Baseline:
    """``crictl rmi --prune``, with a per-call timeout long enough for every removal.

    crictl's default timeout is 2 s per call, and prune ignores a failed removal,
    so under load it would quietly leave images behind.
    """
    argv = [str(crictl), "--runtime-endpoint", service.endpoint, "--image-endpoint",
            service.endpoint, "--timeout", f"{_TIMEOUT}s", "rmi", "--prune"]
    out = work / f"{label}.crictl.out"
    with open(out, "w") as stdout, open(work / f"{label}.crictl.stderr", "w") as stderr:
        started = time.perf_counter()
        code = subprocess.run(argv, stdout=stdout, stderr=stderr, timeout=_TIMEOUT).returncode
        wall = time.perf_counter() - started
    if code != 0:
        print(f"warning: crictl rmi --prune exited {code}", file=sys.stderr)
    deleted = out.read_text().count("Deleted: ")
    return measure.Baseline(wall, {"crictl rmi --prune": wall}, remaining(service),
                            {"tags deleted": deleted})


def remaining(service: Containerd) -> dict[str, set[str]]:
    """What the runtime has, by what survives a re-seed: image ids and tags, pod and
    container names (CRI ids are random), and the used or pinned images still there."""
    with grpc.insecure_channel(service.endpoint) as channel:
        images = api_pb2_grpc.ImageServiceStub(channel).ListImages(
            api_pb2.ListImagesRequest(), timeout=_TIMEOUT).images
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        containers = runtime.ListContainers(api_pb2.ListContainersRequest(),
                                            timeout=_TIMEOUT).containers
        sandboxes = runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(),
                                           timeout=_TIMEOUT).items
    ids = {i.id for i in images}
    used = {c.image_ref for c in containers} | {i.id for i in images if i.pinned}
    return {
        "container": {f"{c.labels.get('io.kubernetes.pod.name')}/{c.metadata.name}"
                      for c in containers},
        "pod": {s.metadata.name for s in sandboxes},
        "image": ids,
        "tag": {t for i in images for t in i.repo_tags},
        "in-use image": used & ids,
    }


def _version(service: Containerd) -> str:
    port = GrpcCriPort(service.endpoint)
    try:
        found = port.version()
    finally:
        port.close()
    return f"{found.name} {found.version} (CRI {found.api_version})"


def _pid(service: Containerd) -> int:
    return processes.read_pid(service.pid_file) or 0


def _header(scale: CriScale, parallelism: int, version: str,
            seeded: dict[str, set[str]]) -> list[str]:
    return [
        f"- Runtime: {version}, a private containerd (its own root, state and socket), "
        "overlayfs, Debian's runc, on the same machine; baseline crictl v1.37.0",
        f"- Scale: {len(seeded['image']):,} images ({scale.images} seeded and the pinned "
        f"sandbox image), {len(seeded['tag']):,} tags, layers shared (busybox under all, one "
        f"layer per application under its 10 versions); {len(seeded['pod'])} hostNetwork "
        f"pod sandboxes, each with a running, an exited and a created container: "
        f"{len(seeded['container'])} containers, {len(seeded['in-use image'])} images in use "
        "or pinned that must stay",
        f"- Agent policy: dryRun false, criParallelism {parallelism}, images.unused and "
        "images.dangling olderThan 0s, diskPressure off, job cleanup, an empty first-seen "
        "record (containers are left to the kubelet and the CRI has no volumes). Baseline: "
        f"`crictl rmi --prune` (every image no container uses and not pinned, all removals at "
        f"once), its per-call timeout raised from 2 s to {_TIMEOUT} s so none is dropped",
    ]
