"""The clutter scripts/demo cleans up: what a busy node and cluster accumulate.

The node's containerd (the kubelet's runtime): an old app version nothing runs
any more, the version the shop's pods run, and the pause image. Docker beside it
(a CI node): old app versions, a dangling build, exited one-off containers,
several dead attempts of a kubelet-managed container next to its live pod
sandbox, a container whose log has no rotation, and volumes left behind.
Kubernetes: a Deployment with a long revision history and no requests, its pod
running on the node, a CronJob keeping too much history, Jobs finished days ago,
and an opted-out namespace.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from scripts.localenv import cri_images, testimages
from scripts.localenv.containerd import Containerd
from scripts.localenv.kube_jobs import finish_job, job
from scripts.localenv.node import Node

_PAUSE = "registry.k8s.io/pause:3.10"
_APP = "docker.io/shop/web:1.1"  # the image the shop's pods run on the node
_NODE_IMAGES = (
    cri_images.image(["docker.io/shop/web:1.0"], "web 1.0", cmd=cri_images.IDLE),
    cri_images.image([_APP], "web 1.1", cmd=cri_images.IDLE),
    cri_images.image(["docker.io/shop/worker:nightly"], "worker nightly"),
)


def seed_node(runtime: Containerd) -> None:
    """Images as the node's containerd holds them after a few releases (the pause image
    is there already: the node's sandbox image)."""
    cri_images.import_images(runtime, _NODE_IMAGES)


def seed_docker(client: docker.DockerClient) -> None:
    base = testimages.base_image(client)
    testimages.retag(base, _PAUSE)
    current = testimages.layered_image(client, "shop/web:1.1", "web 1.1")
    testimages.layered_image(client, "shop/web:1.0", "web 1.0")  # superseded, unused
    testimages.layered_image(client, "shop/golden:1", "golden", labels={"kubekeeper.keep": "true"})
    testimages.dangling_image(client, "shop/worker:dev")
    testimages.idle_container(client, current.tags[0], name="shop-web")
    for index in range(3):
        client.containers.run(base.id, ["true"], name=f"report-oneoff-{index}",
                              network_mode="none", detach=True).wait()
    client.containers.create(base.id, ["true"], name="never-started", network_mode="none")
    _kubelet_pod(client, base.id, current.id)
    testimages.log_writer(client, 3 * 2**20, name="chatty-logger")
    for _ in range(2):
        client.volumes.create()  # anonymous (64-hex name), used by nothing
    client.volumes.create(name="shop-db-data")  # named: kept unless includeNamed


def _kubelet_pod(client: docker.DockerClient, pause: str, app_image: str) -> None:
    """A live pod: its sandbox runs; its app container died three times (kubelet keeps 1)."""
    uid = str(uuid.uuid4())
    pod = {"io.kubernetes.pod.uid": uid, "io.kubernetes.pod.name": "web-7d9f",
           "io.kubernetes.pod.namespace": "shop"}
    client.containers.run(pause, ["sleep", "86400"], name="k8s_POD_web-7d9f", detach=True,
                          network_mode="none",
                          labels={**pod, "io.kubernetes.docker.type": "podsandbox"})
    for attempt in range(3):
        labels = {**pod, "io.kubernetes.container.name": "app",
                  "io.kubernetes.docker.type": "container",
                  "io.kubernetes.container.restartCount": str(attempt)}
        client.containers.run(app_image, ["sh", "-c", "exit 1"], name=f"k8s_app_web-7d9f_{attempt}",
                              labels=labels, network_mode="none", detach=True).wait()


def seed_cluster(kubeconfig: Path) -> None:
    with kubernetes.config.new_client_from_config(str(kubeconfig)) as api:
        core = CoreV1Api(api)
        for name, annotations in (("demo-shop", {}), ("demo-batch", {}),
                                  ("demo-legacy", {"kubekeeper/ignore": "true"})):
            core.create_namespace({"metadata": {"name": name, "annotations": annotations}})
        _wait_for_default_account(core, ("demo-shop", "demo-batch", "demo-legacy"))
        _deployment_with_history(api, "demo-shop", "web", revisions=7)
        _deployment_with_history(api, "demo-legacy", "old-admin", revisions=4)
        _cronjob_with_history(api, "demo-batch", "nightly-report", runs=6)
        _finished_jobs(api, "demo-batch")


def _wait_for_default_account(core: CoreV1Api, namespaces: tuple[str, ...]) -> None:
    """Pods (and so Deployments' ReplicaSets) need the namespace's default ServiceAccount."""
    for namespace in namespaces:
        for _ in range(100):
            if core.list_namespaced_service_account(namespace).items:
                break
            time.sleep(0.1)


def _deployment_with_history(api: ApiClient, namespace: str, name: str, revisions: int) -> None:
    """A Deployment without requests; each template change leaves a ReplicaSet behind. Its
    pod runs on the node (the image is there; nothing is ever pulled)."""
    apps = AppsV1Api(api)
    container = {"name": "app", "image": _APP, "imagePullPolicy": "Never",
                 "env": [{"name": "REV", "value": "1"}]}
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [container],
                                       "terminationGracePeriodSeconds": 1}}}})
    for revision in range(2, revisions + 1):
        _wait_for_replicasets(apps, namespace, name, revision - 1)
        container["env"][0]["value"] = str(revision)
        apps.patch_namespaced_deployment(name, namespace, {
            "spec": {"template": {"spec": {"containers": [container]}}}})
    _wait_for_replicasets(apps, namespace, name, revisions)


def _wait_for_replicasets(apps: AppsV1Api, namespace: str, name: str, count: int) -> None:
    for _ in range(300):
        found = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
        if len(found) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the deployment controller made no ReplicaSet {count} for {name}")


def _wait_for_replicasets_at_most(apps: AppsV1Api, namespace: str, name: str,
                                  count: int, timeout: float = 60) -> None:
    """The Deployment controller prunes once the rollout is complete: the pod Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
        if len(found) <= count:
            return
        time.sleep(0.5)


def _cronjob_with_history(api: ApiClient, namespace: str, name: str, runs: int) -> None:
    """A CronJob keeping 10 successful Jobs, with ``runs`` finished Jobs it owns."""
    cronjob = BatchV1Api(api).create_namespaced_cron_job(namespace, {
        "metadata": {"name": name},
        "spec": {"schedule": "0 2 * * *", "successfulJobsHistoryLimit": 10,
                 "jobTemplate": {"spec": api.sanitize_for_serialization(job("template").spec)}}})
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
             "uid": cronjob.metadata.uid, "controller": True}
    now = datetime.now(UTC)
    for day in range(runs, 0, -1):
        _finished(api, namespace, f"{name}-{day}", now - timedelta(days=day), True, owner)


def _finished_jobs(api: ApiClient, namespace: str) -> None:
    now = datetime.now(UTC)
    _finished(api, namespace, "migrate-orders", now - timedelta(days=3), True)
    _finished(api, namespace, "import-catalog", now - timedelta(days=10), False)
    _finished(api, namespace, "reindex-search", now - timedelta(hours=2), True)


def _finished(api: ApiClient, namespace: str, name: str, finished: datetime, succeeded: bool,
              owner: dict | None = None) -> None:
    batch = BatchV1Api(api)
    body = job(name)
    if owner:
        body.metadata.owner_references = [owner]
    batch.create_namespaced_job(namespace, body)
    finish_job(batch, namespace, name, succeeded=succeeded,
               started=finished - timedelta(minutes=5), finished=finished)


def show_leftovers(client: docker.DockerClient, node: Node) -> None:
    """Print what survived, once the controllers have acted on the patched limits."""
    with kubernetes.config.new_client_from_config(str(node.plane.kubeconfig)) as api:
        _wait_for_replicasets_at_most(AppsV1Api(api), "demo-shop", "web", 4)
    print("containerd images:", sorted(r for r in node.runtime.ctr("images", "ls", "-q").split()
                                       if not r.startswith("sha256:")))
    print("Docker containers:", sorted(c.name for c in client.containers.list(all=True)))
    print("Docker images:", sorted(t for i in client.images.list() for t in i.tags))
    print("Docker volumes:", sorted(v.name[:16] for v in client.volumes.list()))
    print(node.plane.run_kubectl("get", "pods,replicasets,jobs,cronjobs,limitranges", "-n",
                                 "demo-shop", check=False).stdout.rstrip())
    for namespace in ("demo-batch", "demo-legacy"):
        print(node.plane.run_kubectl("get", "replicasets,jobs,cronjobs,limitranges", "-n",
                                     namespace, check=False).stdout.rstrip())
