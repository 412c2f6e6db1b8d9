"""Fixtures for the real services integration tests run against.

The services start lazily, once per session, only when a test asks for them, so
unit tests never start anything. A service that cannot start fails the test with
the reason and its log tail; it is never skipped, locally or in CI.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import docker
import kubernetes
import pytest
from kubernetes.client import ApiClient, CoreV1Api, V1Namespace, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from scripts.localenv import (
    containerd,
    controlplane,
    cri_pods,
    dockerd,
    metrics_server,
    node,
    prometheus,
    testimages,
)
from scripts.localenv.containerd import Containerd
from scripts.localenv.controlplane import ControlPlane
from scripts.localenv.dockerd import DockerEngine
from scripts.localenv.metrics_server import MetricsServer
from scripts.localenv.node import Node
from scripts.localenv.prometheus import PrometheusServer, Pushgateway
from tests.polling import wait_for

S = TypeVar("S")


def _run_service(
    what: str, start: Callable[[Path], S], stop: Callable[[Path], None], prefix: str
) -> Iterator[S]:
    """Start a service in a fresh dir under /tmp, yield it, stop it and remove the dir.

    The dir sits directly under /tmp because containerd puts unix sockets below
    it, and their paths must stay short.
    """
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    failure = None
    try:
        service = start(state_dir)
    except Exception as err:
        failure = f"{what} did not start: {err}"
        try:
            stop(state_dir)
        except Exception as cleanup_err:
            failure += f"\n(cleaning up {state_dir} failed too: {cleanup_err})"
    if failure is not None:
        # Outside the except block, so the report shows the reason once, unchained.
        pytest.fail(failure, pytrace=False)
    try:
        yield service
    finally:
        stop(state_dir)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private dockerd for this session, with `.base_url`, `.client()` and `.data_root`."""
    yield from _run_service("the private Docker engine", dockerd.start, dockerd.stop, "kk-docker-")


@pytest.fixture
def clean_docker(docker_engine: DockerEngine) -> DockerEngine:
    """The session's engine, emptied of all containers, images and volumes."""
    client = docker_engine.client()
    try:
        testimages.remove_all(client)
    finally:
        client.close()
    return docker_engine


@pytest.fixture
def docker_client(clean_docker: DockerEngine) -> Iterator[docker.DockerClient]:
    """An SDK client for an emptied engine; tests build the images they need."""
    client = clean_docker.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def containerd_service() -> Iterator[Containerd]:
    """A private containerd with the CRI on, for this session: `.endpoint`, `.ctr(...)`.

    Its sandbox image (`containerd.SANDBOX_IMAGE`) is imported and pinned; nothing else is.
    """
    yield from _run_service(
        "the private containerd", containerd.start, containerd.stop, "kk-ctrd-"
    )


@pytest.fixture
def cri_client(containerd_service: Containerd) -> Iterator[cri_pods.CriClient]:
    """CRI stubs on the session's containerd, emptied of every sandbox, container and
    unpinned image; tests import the images they need (`cri_images.import_images`)."""
    client = cri_pods.CriClient(containerd_service.endpoint, containerd_service.state_dir / "pods")
    try:
        client.reset()
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def pushgateway_service() -> Iterator[Pushgateway]:
    """A private Pushgateway on a free loopback port, for this session: `.url`, `.metrics()`."""
    yield from _run_service("the private Pushgateway", prometheus.start, prometheus.stop,
                            "kk-pushgw-")


@pytest.fixture
def pushgateway(pushgateway_service: Pushgateway) -> Pushgateway:
    """The session's Pushgateway, emptied of every pushed group."""
    pushgateway_service.wipe()
    return pushgateway_service


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for this session, on loopback.

    Gives `.kubeconfig`, `.server`, `.kubectl` and `.run_kubectl(*args)`.
    """
    yield from _run_service(
        "the local control plane", controlplane.start, controlplane.stop, "kk-cp-"
    )


@pytest.fixture
def kube_api(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """A Kubernetes API client with the admin kubeconfig (group system:masters)."""
    client = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(kube_api: ApiClient) -> Iterator[str]:
    """A new, uniquely named namespace, deleted after the test.

    It is handed over only once its default ServiceAccount exists, since until
    then the API server rejects pods (and so Jobs and Deployments make none).
    """
    yield from _namespace(kube_api)


@pytest.fixture(scope="session")
def kube_node() -> Iterator[Node]:
    """A real node (kube-scheduler, containerd with a CNI bridge, kubelet) with a control
    plane of its own, so the other tests' control plane keeps having no node.

    Gives `.plane` (a ControlPlane), `.runtime` (its Containerd: import images there,
    nothing is pulled), `.name` and `.log_tails()`. One per machine: it fails, naming
    the holder, when another local node runs.
    """
    shared = os.environ.get("KUBEKEEPER_SHARED_NODE")
    if shared:
        yield _shared_node(Path(shared))
        return
    yield from _run_service("the local node", node.start, node.stop, "kk-node-")


def _shared_node(state_dir: Path) -> Node:
    """The node in ``$KUBEKEEPER_SHARED_NODE``, started there if none runs, and left
    running: for several checkouts testing on one machine, where only one node fits
    (``scripts/node-down --state-dir DIR`` stops it)."""
    try:
        return node.start(state_dir)
    except Exception as err:
        pytest.fail(f"the shared local node in {state_dir} did not start: {err}", pytrace=False)


@pytest.fixture(scope="session")
def metrics_api(kube_node: Node) -> Iterator[MetricsServer]:
    """metrics-server on the node, registered as the ``v1beta1.metrics.k8s.io`` APIService,
    handed over once the metrics API (through the node's API server, as ``kubectl top``
    reads it) lists the node. It scrapes the real kubelet with ``--kubelet-insecure-tls``
    (the kubelet's certificate is self-signed), a setting for this test node only. At the
    session's end it is unregistered and stopped, on a shared node too.
    """
    yield from _run_service(
        "metrics-server",
        lambda state_dir: metrics_server.start(state_dir, kube_node.plane, kube_node.name),
        metrics_server.stop, "kk-ms-")


@pytest.fixture(scope="session")
def prometheus_server(kube_node: Node) -> Iterator[PrometheusServer]:
    """A Prometheus server scraping the node's kubelet (cAdvisor) every 5 s, handed over
    once a scrape worked; its TSDB goes with it at the session's end."""
    yield from _run_service("the Prometheus server",
                            lambda state_dir: prometheus.start_server(state_dir, kube_node),
                            prometheus.stop_server, "kk-prom-")


@pytest.fixture
def node_api(kube_node: Node) -> Iterator[ApiClient]:
    """An admin API client for the node's control plane."""
    client = kubernetes.config.new_client_from_config(config_file=str(kube_node.plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def node_namespace(node_api: ApiClient) -> Iterator[str]:
    """As `namespace`, on the node's control plane."""
    yield from _namespace(node_api)


def _namespace(client: ApiClient) -> Iterator[str]:
    core = CoreV1Api(client)
    name = f"kk-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    wait_for(
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
        what=f"the default ServiceAccount in namespace {name}",
    )
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise
