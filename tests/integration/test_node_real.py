"""The local node, for real: a kubelet runs pods from images imported into its containerd.

Nothing is faked or pulled: each test imports the images it runs into the node's
containerd (k8s.io namespace) and uses `imagePullPolicy: Never`.
"""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from scripts.localenv import cri_images, node, processes
from scripts.localenv.node import KUBELET_PORT, PAUSE_IMAGE, POD_SUBNET, SERVICE_SUBNET, Node
from tests.cluster_runs import policy_for, run_task
from tests.polling import wait_for

LOOP = ("sh", "-c", "echo started $(cat /layers); trap 'exit 0' TERM; "
        "while true; do sleep 1; done")


def imported(into: Node, tag: str, content: str) -> str:
    """Import a busybox image holding /layers = `content` that prints it and stays up."""
    cri_images.import_images(into.runtime, [cri_images.image([tag], content, cmd=LOOP)])
    return tag


def pod_spec(image: str, **extra: object) -> dict:
    """A pod spec running `image` without pulling; Ready means its process started."""
    return {"containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                            "readinessProbe": {"exec": {"command": ["true"]},
                                               "periodSeconds": 1}}],
            "terminationGracePeriodSeconds": 2, **extra}


def ready(core: CoreV1Api, namespace: str, name: str) -> bool:
    status = core.read_namespaced_pod(name, namespace).status
    return any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())


def test_the_node_is_ready_untainted_and_runs_our_runtime(kube_node, node_api):
    [found] = CoreV1Api(node_api).list_node().items
    assert found.metadata.name == kube_node.name
    assert {c.type: c.status for c in found.status.conditions}["Ready"] == "True"
    assert not found.spec.taints
    assert found.status.node_info.kubelet_version == "v1.37.2"
    assert found.status.node_info.container_runtime_version == "containerd://2.4.2"


def test_a_pod_of_an_imported_image_runs_on_the_bridge_and_serves_logs_and_exec(
        kube_node, node_api, node_namespace):
    core = CoreV1Api(node_api)
    image = imported(kube_node, "kubekeeper.test/app:1", "one")
    core.create_namespaced_pod(node_namespace, {
        "metadata": {"name": "app"}, "spec": pod_spec(image, shareProcessNamespace=True)})

    wait_for(lambda: ready(core, node_namespace, "app"), what="pod app Ready", timeout=60)

    pod = core.read_namespaced_pod("app", node_namespace)
    assert pod.status.pod_ip.startswith(POD_SUBNET.rsplit(".", 1)[0] + ".")
    kubectl = kube_node.plane.run_kubectl
    assert "started one" in kubectl("logs", "-n", node_namespace, "app").stdout
    routes = kubectl("exec", "-n", node_namespace, "app", "--", "ip", "route").stdout
    # No default route: the bridge's own /24, and the Service range through kube-proxy.
    assert {line.split()[0] for line in routes.splitlines()} == {POD_SUBNET, SERVICE_SUBNET}
    # The real pause is PID 1 of a pod sharing its PID namespace (and reaps its zombies).
    processes = kubectl("exec", "-n", node_namespace, "app", "--", "ps", "-o", "pid,args").stdout
    assert processes.splitlines()[1].split() == ["1", "/pause"]
    images = kube_node.runtime.ctr("images", "ls", "-q").split()
    assert PAUSE_IMAGE in images


def rollout(kube_node: Node, namespace: str) -> None:
    kube_node.plane.run_kubectl("rollout", "status", "-n", namespace, "deployment/web",
                                "--timeout=60s")


def replicasets(apps: AppsV1Api, namespace: str) -> dict[str, int]:
    """Live ReplicaSets by name → revision."""
    return {rs.metadata.name: int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
            for rs in apps.list_namespaced_replica_set(namespace).items
            if not rs.metadata.deletion_timestamp}


def test_eight_ready_revisions_are_pruned_to_max_limit_by_the_controller(
        kube_node, node_api, node_namespace):
    apps = AppsV1Api(node_api)
    images = [imported(kube_node, f"kubekeeper.test/web:{n}", f"web {n}") for n in range(1, 9)]
    apps.create_namespaced_deployment(node_namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": pod_spec(images[0])}}})
    rollout(kube_node, node_namespace)
    for image in images[1:]:
        kube_node.plane.run_kubectl("set", "image", "-n", node_namespace, "deployment/web",
                                    f"main={image}")
        rollout(kube_node, node_namespace)
    assert sorted(replicasets(apps, node_namespace).values()) == list(range(1, 9))

    run = run_task(node_api, policy_for(node_namespace,
                                        "revisionHistory: {action: patch, maxLimit: 3}"),
                   "revisions")

    line = run.line("deployment", "web")
    assert (line["action"], line["result"]) == ("patch", "done")
    wait_for(lambda: sorted(replicasets(apps, node_namespace).values()) == [5, 6, 7, 8],
             what="the Deployment controller to keep the newest and 3 old ReplicaSets")
    [pod] = [p for p in CoreV1Api(node_api).list_namespaced_pod(node_namespace).items
             if not p.metadata.deletion_timestamp]
    assert pod.spec.containers[0].image == images[-1]
    logs = kube_node.plane.run_kubectl("logs", "-n", node_namespace, pod.metadata.name).stdout
    assert "started web 8" in logs


def test_the_kubelet_answers_no_anonymous_request(kube_node):
    """`logs` and `exec` work (above) through the API server's client certificate and the
    kubelet's webhook; a request without credentials is turned away."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(f"https://127.0.0.1:{KUBELET_PORT}/pods", timeout=10)
    assert refused.value.code == 401


def test_a_second_node_is_refused_and_its_teardown_leaves_the_first_alone(
        kube_node, node_api, tmp_path):
    other = tmp_path / "second-node"
    with pytest.raises(processes.ServiceStartError) as refused:
        node.start(other)
    assert "another local node runs on this machine" in str(refused.value)
    assert str(kube_node.state_dir) in str(refused.value)

    node.stop(other)

    assert subprocess.run(["iptables", "-w", "-S", "KUBE-FIREWALL"], capture_output=True,
                          check=False).returncode == 0
    [found] = CoreV1Api(node_api).list_node().items
    assert {c.type: c.status for c in found.status.conditions}["Ready"] == "True"
