"""The README's main job: a realistic mess, cleaned up first in dry-run, then for real.

It starts the private Docker engine and the local control plane (the same ones
the tests use), seeds the kind of clutter kubekeeper exists for, and runs
``kubekeeper node run --once`` and ``kubekeeper cluster run all``: the dry runs'
reports shown as text, the real runs' JSON lines kept in files as a pod's log
keeps them and read back with ``kubekeeper report``. It ends by undoing one
deletion with ``kubekeeper restore`` from the recycle bin.  The demo policy is
the shipped one with ages set to 0s (the seeded objects are seconds old) and
the cluster tasks' actions switched on.
Usage: ``scripts/demo [--keep]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from scripts import demo_seed
from scripts.localenv import controlplane, dockerd

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    state = Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-demo"))
    started = time.monotonic()
    _banner("Starting a private Docker engine and a local Kubernetes control plane")
    engine = dockerd.start(state / "dockerd")
    plane = controlplane.start(state / "controlplane")
    try:
        _banner("Seeding a mess: containers, images, volumes, logs; Deployments, Jobs, CronJobs")
        demo_seed.seed_docker(engine.client())
        demo_seed.seed_cluster(plane.kubeconfig)
        policy = _write_policy(state / "demo-policy.yaml")
        logs = []
        for title, argv_, log in _runs(engine.base_url, plane.kubeconfig, policy, state):
            _banner(title)
            _kubekeeper(argv_, log)
            logs += [str(log)] if log else []
        _banner("kubekeeper report over the real runs' lines: problems first, then what was done")
        _kubekeeper(["report", *logs])
        _banner("Undo one deletion: kubekeeper restore from the recycle bin (the Job comes "
                "back suspended)")
        _kubekeeper(["restore", "--namespace", "demo-batch", "--name", "migrate-orders",
                     "--policy", str(policy), "--kubeconfig", str(plane.kubeconfig),
                     "--log-format", "text"])
        print(plane.run_kubectl("get", "job", "-n", "demo-batch", "migrate-orders", "-o",
                                "custom-columns=JOB:.metadata.name,SUSPENDED:.spec.suspend",
                                check=False).stdout.rstrip())
        _banner("What is left")
        demo_seed.show_leftovers(engine.client(), plane)
    finally:
        if args.keep:
            print(f"\nServices kept running. export DOCKER_HOST={engine.base_url} "
                  f"KUBECONFIG={plane.kubeconfig}\nStop them with: KUBEKEEPER_STATE={state} "
                  f"scripts/dockerd-down && KUBEKEEPER_STATE={state} scripts/controlplane-down")
        else:
            controlplane.stop(state / "controlplane")
            dockerd.stop(state / "dockerd")
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true",
                        help="leave the Docker engine and control plane running afterwards")
    return parser.parse_args(argv)


def _kubekeeper(argv: list[str], log: Path | None = None) -> None:
    """One command; with ``log`` its report goes there as JSON lines, as to a pod's log."""
    command = [str(ROOT / ".venv/bin/kubekeeper"), *argv]
    if log is None:
        subprocess.run(command, check=False)
        return
    with log.open("w") as out:
        subprocess.run([*command, "--log-format", "json"], stdout=out, check=False)
    print(f"(report lines written to {log})")


def _runs(docker_host: str, kubeconfig: Path, policy: Path, state: Path
          ) -> list[tuple[str, list[str], Path | None]]:
    node = ["node", "run", "--once", "--log-format", "text", "--policy", str(policy),
            "--docker-host", docker_host, "--node-name", "demo-node"]
    cluster = ["cluster", "run", "all", "--once", "--log-format", "text", "--policy", str(policy),
               "--kubeconfig", str(kubeconfig)]
    return [
        ("Node agent, dry-run (dryRun: true): what it WOULD do", node, None),
        ("Cluster tasks, dry-run: server-side dry-run, nothing changes", cluster, None),
        ("Node agent, for real (--no-dry-run)", [*node, "--no-dry-run"],
         state / "node-run.jsonl"),
        ("Cluster tasks, for real (--no-dry-run)", [*cluster, "--no-dry-run"],
         state / "cluster-run.jsonl"),
    ]


def _write_policy(path: Path) -> Path:
    """The shipped policy, with thresholds a seconds-old demo can trip."""
    policy = yaml.safe_load((ROOT / "policies.yaml").read_text())
    node, cluster = policy["node"], policy["cluster"]
    node["containers"]["olderThan"] = "0s"
    node["images"]["dangling"]["olderThan"] = "0s"
    node["images"]["unused"]["olderThan"] = "0s"
    node["volumes"]["olderThan"] = "0s"
    node["logs"]["maxFileSize"] = "1Mi"
    cluster["namespaces"]["include"] = ["demo-*"]
    cluster["resourceRequests"]["action"] = "limitrange"
    cluster["revisionHistory"]["action"] = "patch"
    cluster["completedJobs"]["action"] = "delete"
    path.write_text("# scripts/demo: policies.yaml with demo thresholds\n"
                    + yaml.safe_dump(policy, sort_keys=False))
    return path


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


if __name__ == "__main__":
    sys.exit(main())
