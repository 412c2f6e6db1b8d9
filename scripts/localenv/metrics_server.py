"""metrics-server on the local node: the metrics.k8s.io API the requests task samples.

It runs as a host process, not a pod: nothing can be pulled, and the kubelet serves on
127.0.0.1 only, where a pod could not reach it. It scrapes the real kubelet
(``/metrics/resource``) under the node's name, which resolves to 127.0.0.1, and serves
on the node's bridge address. The API server finds it the way it finds any aggregated
API server: the ``v1beta1.metrics.k8s.io`` APIService names a Service, and (with
``--enable-aggregator-routing``) the API server dials that Service's endpoints. The
Service has no selector; an EndpointSlice of our own points at the host process.

Its identity is a client certificate ``system:metrics-server`` with the RBAC of
metrics-server's own manifests (read pods and nodes, ``nodes/metrics``, delegated
authentication and authorization). Its serving certificate is signed by the cluster
CA for the Service's name, so the APIService carries that CA and the aggregator verifies
it. The kubelet's serving certificate is self-signed, so metrics-server is started with
``--kubelet-insecure-tls``: for this local node only, never a setting to copy.

Command line: ``python -m scripts.localenv.metrics_server up|down [--state-dir DIR]``
(on the node of ``$KUBEKEEPER_STATE/node``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from scripts.localenv import certificates, controlplane, node, processes, service_cli
from scripts.localenv.controlplane import ControlPlane

_BUILD = Path(__file__).resolve().parents[2] / "tests" / "metrics_server" / "build"
APISERVICE = "v1beta1.metrics.k8s.io"
NAMESPACE = "kube-system"
SERVICE = "metrics-server"
USER = "system:metrics-server"
RESOLUTION = "10s"
"""How often it scrapes the kubelet (its minimum): a sample newer than this is the same one."""
_READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class MetricsServer:
    """A running metrics-server, registered on ``plane`` as the metrics API."""

    state_dir: Path
    plane: ControlPlane
    port: int

    @property
    def log_file(self) -> Path:
        return self.state_dir / "metrics-server.log"

    def nodes(self) -> list[dict]:
        """NodeMetrics through the API server (the aggregated path, as clients see it)."""
        return self._list("nodes")

    def pods(self, namespace: str) -> list[dict]:
        """PodMetrics of ``namespace`` through the API server."""
        return self._list(f"namespaces/{namespace}/pods")

    def _list(self, path: str) -> list[dict]:
        answer = self.plane.run_kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/{path}",
                                        check=False)
        if answer.returncode != 0:
            return []
        return json.loads(answer.stdout).get("items") or []


@cache
def binary() -> Path:
    """The metrics-server binary, built by tests/metrics_server/build if missing."""
    result = subprocess.run([str(_BUILD)], stdout=subprocess.PIPE, text=True, check=False,
                            env=controlplane.go_env())
    if result.returncode != 0:
        raise processes.ServiceStartError(f"{_BUILD} failed with exit code "
                                          f"{result.returncode}; its output is on stderr")
    return Path(result.stdout.strip().splitlines()[-1]) / "metrics-server"


def start(state_dir: Path, plane: ControlPlane, node_name: str) -> MetricsServer:
    """Start metrics-server for the node ``node_name`` of ``plane`` and register it.

    Returns once the metrics API, through the API server, lists the node's metrics
    (two kubelet scrapes after start). Raises ServiceStartError with its log tail.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state_dir / "controlplane").write_text(f"{plane.state_dir}\n")
    pki = certificates.Pki(plane.state_dir / "pki")
    certificates.client(pki, "metrics-server", f"CN = {USER}")
    certificates.serving(pki, "metrics-server-serving", f"CN = {SERVICE}",
                         f"DNS:{SERVICE}.{NAMESPACE}.svc,IP:{node.GATEWAY}")
    kubeconfig = state_dir / "metrics-server.kubeconfig"
    controlplane.write_kubeconfig(kubeconfig, plane.server, pki, "metrics-server")
    [port] = processes.free_ports(1)
    server = MetricsServer(state_dir, plane, port)
    _apply(plane, _objects(port, pki.cert("ca")))
    process = processes.spawn(_argv(kubeconfig, pki, port), server.log_file)
    processes.write_pid(state_dir / "metrics-server.pid", process.pid)
    try:
        processes.wait_until(lambda: _serves(server, node_name), what="metrics-server",
                             timeout=_READY_TIMEOUT, process=process, log_path=server.log_file)
    except processes.ServiceStartError as err:
        raise processes.ServiceStartError(f"{err}{_apiservice_status(plane)}") from None
    return server


def _argv(kubeconfig: Path, pki: certificates.Pki, port: int) -> list[str]:
    return [str(binary()),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={node.GATEWAY}", f"--secure-port={port}",
            f"--tls-cert-file={pki.cert('metrics-server-serving')}",
            f"--tls-private-key-file={pki.key('metrics-server-serving')}",
            # The node's name resolves to 127.0.0.1, where alone the kubelet listens.
            "--kubelet-preferred-address-types=Hostname",
            "--kubelet-use-node-status-port",
            "--kubelet-insecure-tls",  # the kubelet's certificate is self-signed: local only
            f"--metric-resolution={RESOLUTION}", "--kubelet-request-timeout=5s"]


def stop(state_dir: Path) -> None:
    """Unregister the metrics API, stop the process and remove ``state_dir``.

    The APIService goes first: one left pointing at a dead endpoint makes every
    client's discovery of the API server's groups report an error.
    """
    state_dir = state_dir.resolve()
    plane_dir = _plane_dir(state_dir)
    if plane_dir is not None and (plane_dir / "admin.kubeconfig").exists():
        plane = ControlPlane(plane_dir, controlplane.binaries_dir())
        for kind, name in (("apiservice", APISERVICE), ("service", SERVICE),
                           ("endpointslice", SERVICE), ("clusterrolebinding", USER),
                           ("clusterrolebinding", f"{SERVICE}:system:auth-delegator"),
                           ("rolebinding", f"{SERVICE}-auth-reader"), ("clusterrole", USER)):
            plane.run_kubectl("delete", kind, name, "-n", NAMESPACE, "--ignore-not-found",
                              "--wait=false", check=False)
    pid = processes.read_pid(state_dir / "metrics-server.pid")
    if pid is not None and processes.is_alive(pid):
        processes.stop(pid, timeout=10.0)
    for pid in processes.daemons_tied_to(state_dir):
        processes.stop(pid, timeout=10.0)
    shutil.rmtree(state_dir, ignore_errors=True)


def _plane_dir(state_dir: Path) -> Path | None:
    try:
        return Path((state_dir / "controlplane").read_text().strip())
    except OSError:
        return None


def _serves(server: MetricsServer, node_name: str) -> bool:
    return any(n["metadata"]["name"] == node_name for n in server.nodes())


def _apiservice_status(plane: ControlPlane) -> str:
    answer = plane.run_kubectl("get", "apiservice", APISERVICE, "-o",
                               "jsonpath={.status.conditions}", check=False)
    return f"\nAPIService {APISERVICE} conditions: {answer.stdout or answer.stderr}"


def _apply(plane: ControlPlane, objects: list[dict]) -> None:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    answer = plane.run_kubectl("apply", "-f", "-", input=document, check=False)
    if answer.returncode != 0:
        raise processes.ServiceStartError(f"registering metrics-server failed: {answer.stderr}")


def _objects(port: int, ca: Path) -> list[dict]:
    """The RBAC of metrics-server's own manifests, for a user instead of a ServiceAccount;
    the selector-less Service, our EndpointSlice, and the APIService."""
    user = [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}]
    rbac = "rbac.authorization.k8s.io/v1"
    labels = {"app.kubernetes.io/name": SERVICE, "app.kubernetes.io/part-of": "kubekeeper-tests"}
    return [
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": USER, "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        _binding("ClusterRoleBinding", USER, "ClusterRole", USER, user, labels),
        _binding("ClusterRoleBinding", f"{SERVICE}:system:auth-delegator", "ClusterRole",
                 "system:auth-delegator", user, labels),
        _binding("RoleBinding", f"{SERVICE}-auth-reader", "Role",
                 "extension-apiserver-authentication-reader", user, labels, NAMESPACE),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port,
                             "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE,
                      "labels": {**labels, "kubernetes.io/service-name": SERVICE,
                                 "endpointslice.kubernetes.io/managed-by": "kubekeeper-tests"}},
         "addressType": "IPv4",
         "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
         "endpoints": [{"addresses": [node.GATEWAY], "conditions": {"ready": True}}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": APISERVICE, "labels": labels},
         "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                  "groupPriorityMinimum": 100, "versionPriority": 100,
                  "service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443},
                  "caBundle": base64.b64encode(ca.read_bytes()).decode()}},
    ]


def _binding(kind: str, name: str, role_kind: str, role: str, subjects: list[dict],
             labels: dict, namespace: str | None = None) -> dict:
    meta = {"name": name, "labels": labels, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                        "name": role},
            "subjects": subjects}


def default_state_dir() -> Path:
    """`$KUBEKEEPER_STATE/metrics-server`, beside the node of the shell entry points."""
    return Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-localenv")) / SERVICE


def _start_on_node(state_dir: Path) -> MetricsServer:
    """On the node of ``$KUBEKEEPER_STATE/node`` (started there if none runs)."""
    local = node.start(node.default_state_dir())
    return start(state_dir, local.plane, local.name)


def main(argv: Sequence[str] | None = None) -> int:
    """`up` prints the KUBECONFIG of the node's control plane; `down` unregisters and stops."""
    return service_cli.main(argv, SERVICE, __doc__.splitlines()[0], default_state_dir(),
                            _start_on_node, stop,
                            lambda server: f"export KUBECONFIG={server.plane.kubeconfig}")


if __name__ == "__main__":
    sys.exit(main())
