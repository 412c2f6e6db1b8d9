"""A local Kubernetes node for tests: kube-scheduler, a private containerd and a kubelet.

It comes with a control plane of `scripts/localenv/controlplane.py` of its own, in
`<state>/controlplane`, whose API server listens on the bridge's address (and is
reached there from the host too). Pods really run: containerd (CRI, the real pause
as sandbox image) puts them on a CNI bridge on a private /24 with no default route
and no masquerade; their only other route is to the Service range, which kube-proxy
maps to the API server for in-cluster clients, so pod traffic never leaves the
machine. The kubelet serves `logs` and `exec` on 127.0.0.1 only. Nothing can be pulled: tests
import images into containerd's k8s.io namespace (`scripts/localenv/cri_images.py`).

Only one node runs per machine (see node_host): start fails, naming the holder,
when another holds the lock.

Command line: `python -m scripts.localenv.node up|down [--state-dir DIR]`;
`up` prints `export KUBECONFIG=...` for `eval`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from scripts.localenv import (
    certificates,
    containerd,
    controlplane,
    cri_images,
    mounts,
    node_host,
    processes,
    service_cli,
)
from scripts.localenv.containerd import Containerd
from scripts.localenv.controlplane import ControlPlane

PAUSE_IMAGE = "kubekeeper.test/pause:3.10.2"
"""The sandbox image: the pause binary of tests/node/build, imported, never pulled."""
POD_SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
"""The bridge's own address: where the API server listens, and pods' gateway to Services."""
SERVICE_SUBNET = "10.0.0.0/24"  # the API server's --service-cluster-ip-range
KUBELET_PORT = 10250
"""The kubelet's API, on 127.0.0.1: fixed, as the API server finds it by this default."""

_BUILD = Path(__file__).resolve().parents[2] / "tests" / "node" / "build"
_DAEMONS = ("kubelet", "kube-proxy", "kube-scheduler")  # stopped in this order
_READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Node:
    """A running node, its control plane and its runtime."""

    state_dir: Path
    plane: ControlPlane
    runtime: Containerd
    name: str

    @property
    def kubelet_log(self) -> Path:
        return self.state_dir / "kubelet.log"

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of the kubelet's, scheduler's and containerd's logs, for failures."""
        return "".join(_tail(path, lines) for path in (
            self.kubelet_log, self.state_dir / "kube-scheduler.log", self.runtime.log_file))


def default_state_dir() -> Path:
    """`$KUBEKEEPER_STATE/node`, shared by the shell entry points."""
    return Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-localenv")) / "node"


@cache
def build() -> Path:
    """The directory of the CNI plugins (`cni/`) and `pause`, built once, then cached."""
    result = subprocess.run([str(_BUILD)], stdout=subprocess.PIPE, text=True, check=False,
                            env=controlplane.go_env())
    if result.returncode != 0:
        raise processes.ServiceStartError(f"{_BUILD} failed; its output is on stderr")
    return Path(result.stdout.strip().splitlines()[-1])


def node_name() -> str:
    """The machine's hostname when it resolves to 127.0.0.1 only, else `localhost`.

    The kubelet serves on 127.0.0.1 only, and the API server reaches it (for `logs`
    and `exec`) by this name: the kubelet refuses a loopback InternalIP.
    """
    host = socket.gethostname().lower()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except OSError:
        return "localhost"
    return host if addresses == {"127.0.0.1"} else "localhost"


def start(state_dir: Path) -> Node:
    """Start a node and its control plane in `state_dir`, or reuse the one running there.

    Returns once the node is Ready and untainted. Raises ServiceStartError with the
    failing daemon's log tail, after stopping what it started.
    """
    state_dir = state_dir.resolve()
    running = _running(state_dir)
    if running is not None:
        return running
    lock_fd = _lock(state_dir)
    try:
        _stop_daemons(state_dir, locked=True)
        node_host.make_bridge(f"{GATEWAY}/{POD_SUBNET.split('/')[1]}")
        plane = controlplane.start(state_dir / "controlplane", GATEWAY)
        node = _start_locked(state_dir, plane, lock_fd)
    except processes.ServiceStartError:
        os.close(lock_fd)
        _stop_daemons(state_dir)
        raise
    os.close(lock_fd)  # the kubelet holds its own copy from here on
    return node


def stop(state_dir: Path) -> None:
    """Stop the node (and its own control plane), clean the host paths, remove `state_dir`."""
    state_dir = state_dir.resolve()
    _stop_daemons(state_dir)
    controlplane.stop(state_dir / "controlplane")
    # The kubelet bind-mounts its --root-dir onto itself (to make it rshared), and
    # pods' volumes are mounted below it.
    mounts.unmount_all_under(state_dir)
    if state_dir.exists():
        shutil.rmtree(state_dir)


def _running(state_dir: Path) -> Node | None:
    """The node already up in `state_dir` (kubelet alive, Node Ready), if any."""
    pid = processes.read_pid(state_dir / "kubelet.pid")
    if pid is None or not processes.is_alive(pid):
        return None
    plane = controlplane.start(state_dir / "controlplane", GATEWAY)
    node = Node(state_dir, plane, Containerd(state_dir / "containerd", containerd.build()),
                node_name())
    return node if _ready(node) else None


def _lock(state_dir: Path) -> int:
    try:
        return node_host.lock(state_dir)
    except node_host.NodeLocked as err:
        raise processes.ServiceStartError(str(err)) from None


def _start_locked(state_dir: Path, plane: ControlPlane, lock_fd: int) -> Node:
    """The start proper, with the machine's lock held in `lock_fd`."""
    name = node_name()
    built = build()
    runtime = containerd.start(
        state_dir / "containerd",
        sandbox=cri_images.real_pause_image(PAUSE_IMAGE, built / "pause"),
        cni=containerd.Cni(built / "cni", _conflist(state_dir)))
    pki = certificates.Pki(plane.state_dir / "pki")
    certificates.client(pki, f"node-{name}", f"O = system:nodes\nCN = system:node:{name}")
    certificates.client(pki, "kube-proxy", "CN = system:kube-proxy")
    for user, file in ((f"node-{name}", "kubelet"), ("scheduler", "kube-scheduler"),
                       ("kube-proxy", "kube-proxy")):
        controlplane.write_kubeconfig(state_dir / f"{file}.kubeconfig", plane.server, pki, user)
    _start_scheduler(state_dir, plane)
    node = Node(state_dir, plane, runtime, name)
    _start_kubelet(node, pki, lock_fd)
    _start_proxy(state_dir, plane, name)  # after the kubelet: it waits for the Node object
    return node


def _start_scheduler(state_dir: Path, plane: ControlPlane) -> None:
    [port] = processes.free_ports(1)
    argv = [str(plane.binaries / "kube-scheduler"),
            f"--kubeconfig={state_dir / 'kube-scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={port}"]
    _spawn(state_dir, "kube-scheduler", argv, timeout=60.0,
           # Its serving certificate is self-signed; the check is only that it answers.
           ready=lambda: controlplane.get_ok(f"https://127.0.0.1:{port}/healthz",
                                             ssl._create_unverified_context()))


def _start_proxy(state_dir: Path, plane: ControlPlane, name: str) -> None:
    """kube-proxy in iptables mode: the Service range DNATed to the endpoints, for pods.

    Its ports are on loopback, NodePorts only on the bridge address, and it is told to
    leave the machine's sysctls alone (conntrack sizes, route_localnet).
    """
    health, metrics = processes.free_ports(2)
    config = state_dir / "kube-proxy-config.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(state_dir / "kube-proxy.kubeconfig")},
        "hostnameOverride": name,
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{health}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{GATEWAY}/32"],
        "iptables": {"localhostNodePorts": False},
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, sort_keys=False))
    _spawn(state_dir, "kube-proxy", [str(plane.binaries / "kube-proxy"), f"--config={config}"],
           timeout=60.0,
           ready=lambda: controlplane.get_ok(f"http://127.0.0.1:{health}/healthz", None))


def _start_kubelet(node: Node, pki: certificates.Pki, lock_fd: int) -> None:
    root = node.state_dir / "kubelet"
    root.mkdir(mode=0o700, exist_ok=True)
    config = node.state_dir / "kubelet-config.yaml"
    config.write_text(yaml.safe_dump(_kubelet_config(node, pki), sort_keys=False))
    argv = [str(node.plane.binaries / "kubelet"), f"--config={config}",
            f"--kubeconfig={node.state_dir / 'kubelet.kubeconfig'}", f"--root-dir={root}",
            # Its self-signed serving certificate; by default in /var/lib/kubelet/pki.
            f"--cert-dir={root / 'pki'}",
            f"--hostname-override={node.name}"]
    _spawn(node.state_dir, "kubelet", argv, timeout=_READY_TIMEOUT,
           ready=lambda: _ready(node), pass_fds=(lock_fd,))


def _kubelet_config(node: Node, pki: certificates.Pki) -> dict:
    """The KubeletConfiguration: what these hosts need (cgroup v1, cgroupfs, swap, no
    CAP_SYS_RESOURCE), loopback only, webhook authn/authz, and no eviction or image GC
    that would take test images away.

    Pod and container stats come from the CRI (``PodAndContainerStatsFromCRI``, beta and
    off by default in 1.37): the kubelet's embedded cAdvisor finds containerd only at
    /run/containerd/containerd.sock (its ``containerd`` flag, which the kubelet no longer
    registers), not at the private containerd's socket, so it would see the pods' cgroups
    without their pod and container. With the gate the kubelet asks the private containerd,
    for ``/metrics/resource`` and ``/metrics/cadvisor`` alike."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "featureGates": {"PodAndContainerStatsFromCRI": True},
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": node.runtime.endpoint,
        "address": "127.0.0.1",
        "port": KUBELET_PORT,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "podLogsDir": str(node.state_dir / "pod-logs"),
        # No DNS for pods: nothing they ask may leave the machine.
        "resolvConf": "",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki.cert("ca"))}},
        "authorization": {"mode": "Webhook"},
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
    }


def _conflist(state_dir: Path) -> str:
    """A bridge on POD_SUBNET: the host end is the gateway; pods get a route to the Service
    range through it and no default route, and nothing is masqueraded."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "kubekeeper",
        "plugins": [
            {"type": "bridge", "bridge": node_host.BRIDGE, "isGateway": True,
             "isDefaultGateway": False, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                      "routes": [{"dst": SERVICE_SUBNET}],
                      "dataDir": str(state_dir / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def _ready(node: Node) -> bool:
    """Whether the Node object says Ready and carries no taint (not-ready lifted)."""
    answer = node.plane.run_kubectl("get", "node", node.name, "-o", "json", check=False)
    if answer.returncode != 0:
        return False
    status = json.loads(answer.stdout)
    conditions = {c["type"]: c["status"] for c in status["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and not status["spec"].get("taints")


def _spawn(state_dir: Path, name: str, argv: list[str], *, timeout: float, ready,
           pass_fds: Sequence[int] = ()) -> None:
    log_path = state_dir / f"{name}.log"
    process = processes.spawn(argv, log_path, pass_fds=pass_fds)
    processes.write_pid(state_dir / f"{name}.pid", process.pid)
    processes.wait_until(ready, what=name, timeout=timeout, process=process, log_path=log_path)


def _stop_daemons(state_dir: Path, locked: bool = False) -> None:
    """Stop kubelet, kube-proxy, scheduler and containerd of `state_dir`; then, if the
    machine's lock is (or can be) ours, remove what they left on fixed host paths."""
    for name in _DAEMONS:
        pid = processes.read_pid(state_dir / f"{name}.pid")
        if pid is not None and processes.is_alive(pid):
            processes.stop(pid, timeout=10.0)
    for pid in processes.daemons_tied_to(state_dir):  # left by a crashed start
        if _command(pid) in _DAEMONS:
            processes.stop(pid, timeout=10.0)
    containerd.stop(state_dir / "containerd")
    proxy = controlplane.binaries_dir() / "kube-proxy"
    if locked:
        node_host.clean_fixed_paths(proxy)
        return
    try:
        fd = node_host.lock(state_dir)
    except node_host.NodeLocked:
        return  # another node runs: its paths are not ours to remove
    try:
        node_host.clean_fixed_paths(proxy)
    finally:
        os.close(fd)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {path} ---\n" + "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    """`up` prints the KUBECONFIG export line; `down` stops and wipes the node."""
    return service_cli.main(argv, "node", __doc__.splitlines()[0], default_state_dir(),
                            start, stop, lambda node: f"export KUBECONFIG={node.plane.kubeconfig}")


if __name__ == "__main__":
    sys.exit(main())
