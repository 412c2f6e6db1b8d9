"""The README's main job: a realistic mess, cleaned up first in dry-run, then for real.

It starts the private Docker engine and the local control plane (the same ones
the tests use), seeds the kind of clutter kubekeeper exists for, and runs
``kubekeeper node run --once`` and ``kubekeeper cluster run all`` with the
reports shown as text.  The demo policy is the shipped one with ages set to 0s
(the seeded objects are seconds old) and the cluster tasks' actions switched on.
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
        runs = _runs(engine.base_url, plane.kubeconfig, policy)
        for title, argv_ in runs:
            _banner(title)
            subprocess.run([str(ROOT / ".venv/bin/kubekeeper"), *argv_], check=False)
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


def _runs(docker_host: str, kubeconfig: Path, policy: Path) -> list[tuple[str, list[str]]]:
    node = ["node", "run", "--once", "--log-format", "text", "--policy", str(policy),
            "--docker-host", docker_host, "--node-name", "demo-node"]
    cluster = ["cluster", "run", "all", "--once", "--log-format", "text", "--policy", str(policy),
               "--kubeconfig", str(kubeconfig)]
    return [
        ("Node agent, dry-run (dryRun: true): what it WOULD do", node),
        ("Cluster tasks, dry-run: server-side dry-run, nothing changes", cluster),
        ("Node agent, for real (--no-dry-run)", [*node, "--no-dry-run"]),
        ("Cluster tasks, for real (--no-dry-run)", [*cluster, "--no-dry-run"]),
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
