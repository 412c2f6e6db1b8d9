"""The node agent as the DaemonSet runs it: a pod on the real node, read with kubectl.

The pod finds the node's containerd (the kubelet's runtime, through the CRI) and a
private Docker engine (a CI node) under its host mounts, reads its policy from the
mounted ConfigMap, and reports to its log. The mess: on containerd an old image
nothing uses, an image a running pod uses, one a pod that failed once uses, and the
pause image; on Docker an old unused image, an exited container, and a running one.
kubekeeper's first-seen record (its hostPath state dir) is written as if it had run
on this node for a month, so that ages are old without waiting a week; everything
else on the node is first seen by the pod itself and stays young.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.config import new_client_from_config

from agents.node.cri_port import GrpcCriPort
from agents.node.state import NodeState, StateFile
from scripts.localenv import cri_images, kubekeeper_pods, testimages
from scripts.localenv.node import PAUSE_IMAGE
from tests import report_lines
from tests.installation import NODE_NAMESPACE, REPO, rendered
from tests.integration.conftest import Installed
from tests.polling import wait_for

pytestmark = pytest.mark.slow

NAMESPACE = "kk-ds-mess"
OLD = cri_images.image(["kubekeeper.test/ds-old:1"], "ds old")
APP = cri_images.image(["kubekeeper.test/ds-app:1"], "ds app", cmd=cri_images.IDLE)
# Fails once, then idles: its one dead container is what ``kubectl logs --previous`` reads,
# and the kubelet keeps it (MaxPerPodContainer) for as long as nothing restarts again. (A
# container that crashes in a loop is no test: the kubelet itself removes the dead one whenever
# the newest has exited too, and ``--previous`` then fails with kubekeeper nowhere near.)
_FAIL_ONCE = ("[ -e /scratch/failed ] || "
              "{ touch /scratch/failed; echo attempt at $(date +%s); exit 3; }")
CRASH = cri_images.image(["kubekeeper.test/ds-crash:1"], "ds crash",
                         cmd=("sh", "-c", f"{_FAIL_ONCE}; {cri_images.IDLE[2]}"))
MONTH_AGO = datetime.now(UTC) - timedelta(days=30)


@dataclass(frozen=True)
class Mess:
    app_container: str
    docker_old: str
    docker_exited: str
    docker_running: str
    docker_running_image: str


@pytest.fixture(scope="module")
def mess(installed: Installed) -> Iterator[Mess]:
    node, core = installed.node, _core(installed)
    cri_images.import_images(node.runtime, [OLD, APP, CRASH])
    node.plane.run_kubectl("create", "namespace", NAMESPACE)
    wait_for(lambda: core.list_namespaced_service_account(NAMESPACE).items,
             what="the default ServiceAccount")
    for name, image in (("app", APP), ("crash", CRASH)):
        core.create_namespaced_pod(NAMESPACE, {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "main", "image": image.tags[0], "imagePullPolicy": "Never",
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "terminationGracePeriodSeconds": 2}})
    wait_for(lambda: _restarts(core, "crash") == 1 and _running(core, "crash")
             and _running(core, "app"), timeout=120,
             what="the app pod running and the crash pod running again after failing once")
    docker = _docker_mess(installed)
    _age(installed, [OLD.image_id, APP.image_id, CRASH.image_id, _pause_id(installed)],
         docker)
    yield Mess(_container_id(core, "app"), *docker)
    node.plane.run_kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _docker_mess(installed: Installed) -> tuple[str, str, str, str]:
    client = installed.agent_engine.client()
    try:
        # Built a month ago and "pulled" now: the record says when it came.
        old = testimages.pulled_image(client, "kubekeeper.test/d-old:1", MONTH_AGO)
        used = testimages.layered_image(client, "kubekeeper.test/d-app:1", "d app")
        running = testimages.idle_container(client, used.tags[0], name="d-running")
        exited = client.containers.run(testimages.BASE_IMAGE, ["true"], name="d-exited",
                                       network_mode="none", detach=True)
        exited.wait(timeout=60)
        return old.id, exited.id, running.id, used.id
    finally:
        client.close()


def _age(installed: Installed, node_images: list[str], docker: tuple[str, ...]) -> None:
    """kubekeeper's record as after a month on this node, for the mess only."""
    state = str(installed.host / "kubekeeper")
    StateFile(state, "containerd").save(NodeState(
        since=MONTH_AGO, images={i: MONTH_AGO for i in node_images}))
    old, exited, running, used = docker
    StateFile(state, "docker").save(NodeState(
        since=MONTH_AGO, images={old: MONTH_AGO, used: MONTH_AGO},
        containers={exited: MONTH_AGO, running: MONTH_AGO}))


def _pause_id(installed: Installed) -> str:
    port = GrpcCriPort(installed.node.runtime.endpoint, timeout=10)
    try:
        return next(i.id for i in port.images() if PAUSE_IMAGE in i.tags)
    finally:
        port.close()


def _core(installed: Installed) -> CoreV1Api:
    return CoreV1Api(new_client_from_config(config_file=str(installed.node.plane.kubeconfig)))


def _status(core: CoreV1Api, pod: str, namespace: str = NAMESPACE):
    statuses = core.read_namespaced_pod(pod, namespace).status.container_statuses or []
    return statuses[0] if statuses else None


def _restarts(core: CoreV1Api, pod: str) -> int:
    status = _status(core, pod)
    return status.restart_count if status else 0


def _running(core: CoreV1Api, pod: str) -> bool:
    status = _status(core, pod)
    return bool(status and status.state.running)


def _container_id(core: CoreV1Api, pod: str) -> str:
    return _status(core, pod).container_id


def _rolled_out(installed: Installed) -> None:
    problem = kubekeeper_pods.roll_out(installed.node.plane)
    assert not problem, problem + _describe(installed)


def _describe(installed: Installed) -> str:
    return (installed.node.plane.run_kubectl("describe", "pods", "-n", NODE_NAMESPACE,
                                             check=False).stdout + installed.node.log_tails(15))


@pytest.fixture(scope="module")
def dry_run(installed: Installed, mess: Mess) -> tuple[str, list[dict]]:
    """The shipped policy (dry run) applied: the agent pod and its first cleanup's report."""
    plane = installed.node.plane
    plane.run_kubectl("apply", "-k", str(installed.node_overlay()))
    _rolled_out(installed)
    pod = kubekeeper_pods.agent_pod(plane)
    return pod, kubekeeper_pods.wait_for_run(plane, pod)  # after the shipped 60s jitter


def test_the_node_overlay_changes_only_the_daemonsets_host_paths(installed: Installed):
    base = {(d["kind"], d["metadata"]["name"]): d
            for d in rendered(installed.node.plane, installed.image_overlay)}
    ours = {(d["kind"], d["metadata"]["name"]): d
            for d in rendered(installed.node.plane, installed.node_overlay())}
    daemonset = ("DaemonSet", "kubekeeper-node")
    assert {k: v for k, v in ours.items() if k != daemonset} == {
        k: v for k, v in base.items() if k != daemonset}
    spec, base_spec = (x[daemonset]["spec"]["template"]["spec"] for x in (ours, base))
    ours_only = (str(installed.node.state_dir), str(installed.agent_engine.state_dir))
    for volume in spec["volumes"]:  # never one of the machine's own directories
        if "hostPath" in volume:
            assert volume["hostPath"]["path"].startswith(ours_only), volume
    drop = {"volumes", "containers"}
    assert {k: v for k, v in spec.items() if k not in drop} == {
        k: v for k, v in base_spec.items() if k not in drop}
    added = {v["name"] for v in spec["volumes"]} - {v["name"] for v in base_spec["volumes"]}
    assert added == {"store-0", "store-1"}  # the runtimes' image stores, at their own paths
    [container], [base_container] = spec["containers"], base_spec["containers"]
    assert {k: v for k, v in container.items() if k != "volumeMounts"} == {
        k: v for k, v in base_container.items() if k != "volumeMounts"}
    assert [m for m in container["volumeMounts"] if m["name"] not in added] == base_container[
        "volumeMounts"]


def test_the_agent_pod_is_ready_healthy_and_reads_the_mounted_policy(
        installed: Installed, dry_run: tuple[str, list[dict]]):
    core = _core(installed)
    pod, run = dry_run
    found = core.read_namespaced_pod(pod, NODE_NAMESPACE)
    assert {c.type: c.status for c in found.status.conditions}["Ready"] == "True"
    assert found.status.container_statuses[0].restart_count == 0, _describe(installed)
    address = found.status.pod_ip
    with urllib.request.urlopen(f"http://{address}:8080/healthz", timeout=10) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(f"http://{address}:8081/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert 'kubekeeper_policy_reloads_total' in metrics
    summary = run[-1]
    assert summary["dry_run"] is True  # the shipped policies.yaml, through the ConfigMap
    assert sorted(summary["runtimes"]) == ["containerd", "docker"], summary


def test_a_dry_run_plans_only_the_old_unused_images_and_the_exited_container(
        installed: Installed, mess: Mess, dry_run: tuple[str, list[dict]]):
    _pod, run = dry_run
    planned = {(x["runtime"], x["kind"], x["name"]) for x in report_lines.outcomes(run)
               if x["action"] == "delete"}
    ours = {p for p in planned if "kubekeeper.test/" in p[2] or p[2] == "d-exited"}
    assert ours == {("containerd", "image", OLD.tags[0]),
                    ("docker", "image", "kubekeeper.test/d-old:1")}, _brief(run)
    results = {(x["action"], x["result"]) for x in report_lines.outcomes(run)}
    assert {r for a, r in results if a == "delete"} == {"planned"}, _brief(run)
    assert {r for a, r in results if a != "delete"} <= {"done"}, _brief(run)  # report-only lines
    assert OLD.tags[0] in installed.node.runtime.ctr("images", "ls", "-q")


def test_a_policy_change_rolls_the_daemonset_and_the_new_pod_cleans_for_real(
        installed: Installed, mess: Mess, dry_run: tuple[str, list[dict]]):
    old_pod, _run = dry_run
    policy = (REPO / "policies.yaml").read_text()
    for shipped, changed in (("dryRun: true", "dryRun: false"), ("jitter: 60s", "jitter: 0s"),
                             ("olderThan: 1h             # counted from FinishedAt",
                              "olderThan: 1s             # counted from FinishedAt")):
        assert shipped in policy
        policy = policy.replace(shipped, changed, 1)
    overlay = installed.node_overlay({NODE_NAMESPACE: policy}, "node-overlay-real")
    installed.node.plane.run_kubectl("apply", "-k", str(overlay))
    _rolled_out(installed)
    pod = kubekeeper_pods.agent_pod(installed.node.plane)
    assert pod != old_pod
    run = kubekeeper_pods.wait_for_run(installed.node.plane, pod, timeout=120)
    assert run[-1]["dry_run"] is False and run[-1]["errors"] == 0, run[-1]
    removed = {(x["runtime"], x["kind"], x["name"]) for x in report_lines.outcomes(run)
               if x["action"] == "delete" and x["result"] == "done"}
    assert {("containerd", "image", OLD.tags[0]), ("docker", "image", "kubekeeper.test/d-old:1"),
            ("docker", "container", "d-exited")} <= removed, run
    left = installed.node.runtime.ctr("images", "ls", "-q").split()
    assert OLD.tags[0] not in left
    assert {APP.tags[0], CRASH.tags[0], PAUSE_IMAGE} <= set(left)
    _docker_left(installed, mess)


def _brief(run: list[dict]) -> list[tuple]:
    """The report's gist, for a failure message."""
    return [tuple(x.get(k) for k in ("runtime", "kind", "name", "action", "result", "reason"))
            for x in run]


def _docker_left(installed: Installed, mess: Mess) -> None:
    client = installed.agent_engine.client()
    try:
        containers = {c.id for c in client.containers.list(all=True)}
        images = {i.id for i in client.images.list(all=True)}
    finally:
        client.close()
    assert mess.docker_exited not in containers and mess.docker_old not in images
    assert mess.docker_running in containers and mess.docker_running_image in images


def test_what_the_kubelet_needs_survives_the_cleanup(installed: Installed, mess: Mess):
    """After the real run: the running pod is the same container, never restarted, and the
    pod that failed once still has its dead container: ``kubectl logs --previous`` reads it."""
    core = _core(installed)
    assert _container_id(core, "app") == mess.app_container and _restarts(core, "app") == 0
    assert _restarts(core, "crash") == 1
    previous = installed.node.plane.run_kubectl("logs", "--previous", "-n", NAMESPACE, "crash")
    assert previous.stdout.startswith("attempt at "), (  # the kubelet's and containerd's
        # logs name whoever removed the dead container, should this ever fail again
        f"{previous}\n" + installed.node.plane.run_kubectl(
            "describe", "pod", "-n", NAMESPACE, "crash", check=False).stdout
        + installed.node.log_tails(40))
    agent = core.read_namespaced_pod(kubekeeper_pods.agent_pod(installed.node.plane),
                                     NODE_NAMESPACE)
    assert agent.status.container_statuses[0].restart_count == 0, _describe(installed)
    events = core.list_namespaced_event(NODE_NAMESPACE).items
    assert not [e.message for e in events if e.reason == "Unhealthy"]

