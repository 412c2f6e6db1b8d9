"""``python -m benchmarks.node_prune``: the node agent against the runtime's own prune, at scale.

``--runtime docker`` (the default) is described here; ``--runtime containerd``
measures the same against ``crictl rmi --prune`` (see ``cri_prune``).

Starts a private dockerd in a temporary directory, seeds it once (by default
500 images sharing layers, 2,000 exited containers, 500 dangling volumes; see
``node_seed``), stops it and snapshots its data root.  Each trial then
restores that snapshot before every measurement, so all of them start from
the same state:

- (a) ``kubekeeper node run --once --no-dry-run --job cleanup`` (a policy whose
  thresholds select everything the prune commands remove) against
  ``docker container prune -f && docker image prune -af && docker volume prune -f``
  through the API, both on a fresh state; the sets left behind are compared;
- (b) the dry-run plan: ``node plan`` as a whole command, and inventory + plan
  inside this process;
- (c) the daemon's RSS at its peak during its first runs and when idle after.

Trials alternate which side of (a) goes first, and record the CPU seconds of
dockerd and of the client beside the wall times, since another workload may
share the machine.  ``--quick`` is a small scale for a check in about a minute.

Prints a Markdown table on stdout (progress on stderr) and exits 0 whatever
the numbers: a missed target says MISSED, nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import docker

from agents.node.runtimes import DOCKER, Runtime
from agents.policy import NodePolicy
from benchmarks import cri_prune, node_engine
from benchmarks import node_measure as measure
from benchmarks.cri_seed import CriScale
from benchmarks.node_seed import Scale, Step, seed
from benchmarks.node_table import Setup, Trial, docker_header, progress_line, render
from scripts.localenv import containerd, dockerd, processes

QUICK = Scale(images=40, containers=100, volumes=40)
QUICK_CRI = CriScale(images=40, pods=4)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="kknp-", dir="/tmp"))
    measure.compile_agent()
    try:
        if args.runtime == "containerd":
            scale_cri = QUICK_CRI if args.quick else CriScale(args.images, args.pods)
            setup, trials = cri_prune.bench(args, scale_cri, work)
        else:
            scale = QUICK if args.quick else Scale(args.images, args.containers, args.volumes)
            setup, trials = _bench(args, scale, work, work / "d")
    finally:
        dockerd.stop(work / "d")
        containerd.stop(work / "c")
        shutil.rmtree(work, ignore_errors=True)
    print(render(setup, trials, started))
    return 0


def _bench(args: argparse.Namespace, scale: Scale, work: Path,
           engine_dir: Path) -> tuple[Setup, list[Trial]]:
    engine = node_engine.start(engine_dir)
    with closing(engine.client(timeout=1800)) as client:
        steps = seed(client, scale)
        seeded = measure.state(client)
        info = client.version()
        counts = _counts(client)
    _progress("snapshot of the seeded data root ...")
    snapshot_s = node_engine.snapshot(engine, work / "snapshot")
    policy = measure.write_policy(work, args.parallelism)
    header = docker_header(scale, args.parallelism, info, counts,
                           {k: len(v) for k, v in seeded.items()})
    setup = Setup("Node agent against Docker's prune", header,
                  "container + image -a + volume prune (API)", "dockerd + containerd",
                  ("container", "image", "volume"),
                  [*steps, Step("stop dockerd + `cp -a` of the data root", snapshot_s)])
    trials = [_trial(engine, work, policy, scale, n) for n in range(args.repeat)]
    return setup, trials


def _trial(engine: dockerd.DockerEngine, work: Path, policy: Path, scale: Scale,
           n: int) -> Trial:
    """Every measurement on its own restored state; odd trials run the baseline first."""
    label, url = f"trial {n + 1}", engine.base_url
    target = measure.docker_target(url)

    def fresh(what: str) -> int:
        _progress(f"{label}: restore for {what} ...")
        seconds = node_engine.restore(engine, work / "snapshot", scale.running)
        _progress(f"{label}: restored in {seconds:.1f}s")
        return processes.read_pid(engine.pid_file) or 0

    def agent_side() -> tuple[measure.Plan, float, measure.AgentRun, measure.Cpu]:
        pid = fresh("the plan and the agent's run")
        plan = measure.plan_in_process(Runtime(DOCKER, DOCKER, url, explicit=True), policy)
        plan_wall = measure.plan_cli(target, policy, work, f"t{n}")
        with closing(engine.client(timeout=1800)) as client, measure.CpuMeter(pid) as cpu:
            agent = measure.agent_run(lambda: measure.state(client), target, policy, work,
                                      f"t{n}")
        return plan, plan_wall, agent, cpu.used

    def baseline_side() -> tuple[measure.Baseline, measure.Cpu]:
        pid = fresh("the prune baseline")
        with closing(engine.client(timeout=1800)) as client, measure.CpuMeter(pid) as cpu:
            base = measure.baseline(client)
        return base, cpu.used

    (plan, plan_wall, agent, agent_cpu), (base, base_cpu) = measure.in_turn(
        n, agent_side, baseline_side)
    fresh("the daemon")
    trial = Trial(plan, plan_wall, agent, base, measure.daemon_rss(target, policy, work),
                  agent_cpu, base_cpu)
    _progress(progress_line(label, trial))
    return trial


def _counts(client: docker.DockerClient) -> dict[str, int]:
    api = client.api
    return {
        "dangling images": len(api.images(filters={"dangling": True}, quiet=True)),
        "running containers": len(api.containers(filters={"status": "running"})),
        "exited containers": len(api.containers(filters={"status": "exited"})),
        "dangling volumes": len(api.volumes(filters={"dangling": True}).get("Volumes") or []),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.node_prune",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("docker", "containerd"), default="docker",
                        help="against Docker's prune (default) or crictl's on containerd")
    parser.add_argument("--images", type=int, default=500, help="images, intermediate included")
    parser.add_argument("--containers", type=int, default=2000, help="exited containers (Docker)")
    parser.add_argument("--volumes", type=int, default=500, help="dangling volumes (Docker)")
    parser.add_argument("--pods", type=int, default=20,
                        help="pod sandboxes, 3 containers each (containerd)")
    parser.add_argument("--repeat", type=int, default=3, help="trials (medians are printed)")
    parser.add_argument("--parallelism", type=int, default=None,
                        help="the policy's node.parallelism on Docker, node.criParallelism on "
                             "containerd (default: the policy's default, 4 and 64)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a quick check: {QUICK.images} images, {QUICK.containers} "
                             f"containers, {QUICK.volumes} volumes; on containerd "
                             f"{QUICK_CRI.images} images, {QUICK_CRI.pods} pods (overrides "
                             "the sizes)")
    args = parser.parse_args(argv)
    if args.parallelism is None:
        shipped = NodePolicy()
        args.parallelism = (shipped.criParallelism if args.runtime == "containerd"
                            else shipped.parallelism)
    return args


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
