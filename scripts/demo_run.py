"""The README's main job: kubekeeper installed on a real local node, as an admin meets it.

It starts the local node (control plane, kubelet, kube-scheduler, kube-proxy and
containerd; the same one the tests use) with a private Docker engine beside it,
as on a CI node, and seeds the kind of clutter kubekeeper exists for on both
runtimes and in the cluster. It installs kubekeeper with ``kubectl apply -k``
(the repository's kustomization, with the local image and the node's paths) and
shows the DaemonSet pod's report and one run of each CronJob, read with
``kubectl logs``: first with ``dryRun: true``, then with the policy changed to
``dryRun: false`` and re-applied, which rolls the DaemonSet. It ends with
``kubekeeper report`` over those logs, one deletion undone with ``kubekeeper
restore``, and what is left: the ReplicaSets really pruned by the controller.
The demo policy is the shipped one with ages set to 0s (the seeded objects are
seconds old), no start jitter, and the cluster tasks' actions switched on.
Usage: ``scripts/demo [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from agents.report import as_text
from scripts import demo_seed
from scripts.localenv import dockerd, kubekeeper_image, kubekeeper_pods, node, node_install
from scripts.localenv.dockerd import DockerEngine
from scripts.localenv.kubekeeper_pods import NODE_NAMESPACE, SYSTEM_NAMESPACE
from scripts.localenv.node import Node

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("requests", "revisions", "jobs")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    state = Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-demo"))
    started = time.monotonic()
    _banner("Starting the local node (control plane, kubelet, containerd) and a Docker "
            "engine beside it; building kubekeeper's image unless it is cached")
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(node.start, state / "node")
        image = _image(state)
        local = starting.result()
    engine = dockerd.start(state / "docker")
    try:
        _demo(local, engine, image, state)
    finally:
        if args.keep:
            print(f"\nServices kept running. export KUBECONFIG={local.plane.kubeconfig}\n"
                  f"Stop them with: KUBEKEEPER_STATE={state} scripts/node-down && "
                  f"KUBEKEEPER_STATE={state} scripts/dockerd-down")
        else:
            node.stop(state / "node")
            dockerd.stop(state / "docker")
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument("--keep", action="store_true",
                        help="leave the node and the Docker engine running afterwards")
    return parser.parse_args(argv)


def _image(state: Path) -> Path:
    """The image archive: cached for these sources, or built on a private engine that is
    gone afterwards (so its build images never show up in the node's Docker)."""
    cached = kubekeeper_image.cached_archive()
    if cached.is_file():
        print(f"kubekeeper image: {cached} (cached for these sources)")
        return cached
    builder = dockerd.start(state / "build-engine")
    try:
        return kubekeeper_image.archive(builder.client(timeout=900))
    finally:
        dockerd.stop(state / "build-engine")


def _demo(local: Node, engine: DockerEngine, image: Path, state: Path) -> None:
    kubekeeper_image.import_into(local.runtime, image)
    host = node_install.make_host_tree(local, engine)
    _banner("Seeding a mess: images on the node's containerd; containers, images, volumes "
            "and logs on its Docker; Deployments, Jobs and CronJobs in the cluster")
    demo_seed.seed_node(local.runtime)
    demo_seed.seed_docker(engine.client())
    demo_seed.seed_cluster(local.plane.kubeconfig)
    image_overlay = node_install.write_image_overlay(state / "install" / "image")
    stores = [local.runtime.root, engine.data_root]
    logs = []
    for dry_run in (True, False):
        mode = "dry-run" if dry_run else "real"
        policy = _policy(dry_run)
        overlay = node_install.write_node_overlay(
            state / "install" / mode, image_overlay, host, stores,
            {NODE_NAMESPACE: policy, SYSTEM_NAMESPACE: policy})
        _banner(f"kubectl apply -k: kubekeeper with policies.yaml at dryRun: "
                f"{str(dry_run).lower()}" + ("" if dry_run else " (the DaemonSet rolls)"))
        print(local.plane.run_kubectl("apply", "-k", str(overlay)).stdout.rstrip())
        logs += _show_agent(local, state / f"node-{mode}.jsonl", mode)
        logs += _show_cronjobs(local, state, mode)
    (state / "demo-policy.yaml").write_text(_policy(dry_run=False))
    _finish(local, engine, state, logs)


def _show_agent(local: Node, log: Path, mode: str) -> list[str]:
    """The DaemonSet pod's first cleanup and log-audit runs, from ``kubectl logs``."""
    problem = kubekeeper_pods.roll_out(local.plane)
    if problem:
        raise RuntimeError(f"the DaemonSet did not roll out: {problem}{local.log_tails(15)}")
    pod = kubekeeper_pods.agent_pod(local.plane)
    _banner(f"The DaemonSet pod {NODE_NAMESPACE}/{pod} ({mode}): kubectl logs")
    lines = []
    for task in ("cleanup", "logs"):
        lines += kubekeeper_pods.wait_for_run(local.plane, pod, task)
    _print(lines)
    log.write_text("".join(f"{json.dumps(x)}\n" for x in lines))
    return [str(log)]


def _show_cronjobs(local: Node, state: Path, mode: str) -> list[str]:
    """One Job from each CronJob, run at once as pods; their reports from ``kubectl logs``."""
    files = []
    for run in kubekeeper_pods.run_cronjobs(local.plane, TASKS, mode):
        _banner(f"kubectl create job --from=cronjob/kubekeeper-{run.task} ({mode}): "
                "kubectl logs")
        if not run.completed:
            raise RuntimeError(f"the {run.task} Job did not complete: {run.problem}")
        _print(run.lines)
        path = state / f"{run.task}-{mode}.jsonl"
        path.write_text("".join(f"{json.dumps(x)}\n" for x in run.lines))
        files.append(str(path))
    return files


def _finish(local: Node, engine: DockerEngine, state: Path, logs: list[str]) -> None:
    _banner("kubekeeper report over the pods' logs: problems first, then what was done")
    _kubekeeper(["report", *(f for f in logs if "-real" in f)])
    _banner("Undo one deletion: kubekeeper restore from the recycle bin (the Job comes "
            "back suspended)")
    _kubekeeper(["restore", "--namespace", "demo-batch", "--name", "migrate-orders",
                 "--policy", str(state / "demo-policy.yaml"),
                 "--kubeconfig", str(local.plane.kubeconfig), "--log-format", "text"])
    print(local.plane.run_kubectl("get", "job", "-n", "demo-batch", "migrate-orders", "-o",
                                  "custom-columns=JOB:.metadata.name,SUSPENDED:.spec.suspend",
                                  check=False).stdout.rstrip())
    _banner("What is left (the Deployment controller pruned demo-shop/web's ReplicaSets to "
            "the current one and revisionHistoryLimit 3)")
    demo_seed.show_leftovers(engine.client(), local)


def _policy(dry_run: bool) -> str:
    """The shipped policy, with thresholds a seconds-old demo can trip."""
    policy = yaml.safe_load((ROOT / "policies.yaml").read_text())
    policy["dryRun"] = dry_run
    node_, cluster = policy["node"], policy["cluster"]
    node_["schedule"]["jitter"] = "0s"
    node_["containers"]["olderThan"] = "0s"
    node_["images"]["dangling"]["olderThan"] = "0s"
    node_["images"]["unused"]["olderThan"] = "0s"
    node_["volumes"]["olderThan"] = "0s"
    node_["logs"]["maxFileSize"] = "1Mi"
    cluster["namespaces"]["include"] = ["demo-*"]
    cluster["resourceRequests"]["action"] = "limitrange"
    cluster["revisionHistory"]["action"] = "patch"
    cluster["completedJobs"]["action"] = "delete"
    return ("# scripts/demo: policies.yaml with demo thresholds\n"
            + yaml.safe_dump(policy, sort_keys=False))


def _print(lines: list[dict]) -> None:
    """Report lines as a person reads them (the pods log JSON, for machines and on-call)."""
    for line in lines:
        if line.get("event") != "action.intent":  # each outcome line follows its intent
            print(as_text(line))


def _kubekeeper(argv: list[str]) -> None:
    subprocess.run([str(ROOT / ".venv/bin/kubekeeper"), *argv], check=False)


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


if __name__ == "__main__":
    sys.exit(main())
