"""A local Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

All three listen on 127.0.0.1 only (the API server of a local node's control
plane on the node's bridge address instead), on ports free at start, with a fresh PKI in
the state directory. There is no scheduler and no kubelet, so pods stay Pending;
the controllers kubekeeper's cluster agent relies on (deployments, replica sets,
jobs, cron jobs, garbage collection, namespaces, service accounts) do run.
`scripts/localenv/node.py` adds a scheduler and a kubelet to one of these; the
API server and the controller manager are always ready for it (a kubelet client
certificate, the node-lifecycle controller), which costs nothing without a node.

Command line: `python -m scripts.localenv.controlplane up|down [--state-dir DIR]`;
`up` prints `export KUBECONFIG=...` for `eval`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from scripts.localenv import certificates, processes, service_cli

_BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "controlplane" / "build"
_DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager")
_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    # They keep ControllerRevisions, so the revisions task's pruning is real for both.
    "statefulset-controller",
    "daemonset-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    # Not asked for by tests directly, but they make namespaces and RBAC look like
    # a real cluster's: kube-root-ca.crt in every namespace, aggregated admin/edit/view.
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    # Lifts the node.kubernetes.io/not-ready taint once a kubelet reports Ready;
    # without it no ordinary pod is ever scheduled on the local node.
    "node-lifecycle-controller",
)


@dataclass(frozen=True)
class ControlPlane:
    """Where a running control plane lives and how to reach it as cluster admin."""

    state_dir: Path
    binaries: Path

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (group system:masters), credentials embedded."""
        return self.state_dir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        """The API server's https URL, as written in the kubeconfig."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        return config["clusters"][0]["cluster"]["server"]

    @property
    def etcd_url(self) -> str:
        """etcd's plain-HTTP client URL on loopback (tests compact it to expire list tokens)."""
        return (self.state_dir / "etcd.url").read_text().strip()

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision, as the API server does every
        few minutes; continue tokens of lists started before then expire. Returns the revision.
        """
        def post(api: str, body: dict) -> dict:
            request = urllib.request.Request(f"{self.etcd_url}/v3/kv/{api}",
                                             data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer)

        key = base64.b64encode(b"/").decode()
        revision = int(post("range", {"key": key})["header"]["revision"])
        post("compaction", {"revision": str(revision), "physical": True})
        return revision

    @property
    def kubectl(self) -> Path:
        """The kubectl built with the servers, so client and server versions match."""
        return self.binaries / "kubectl"

    def run_kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; raises on failure unless `check` is False."""
        return subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
        )


def default_state_dir() -> Path:
    """`$KUBEKEEPER_STATE/controlplane`, shared by the shell entry points."""
    return Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-localenv")) / "controlplane"


@cache
def binaries_dir() -> Path:
    """The directory of the four binaries, built by tests/controlplane/build if missing.

    The build's progress goes to our stderr (minutes when cold; instant when cached).
    """
    result = subprocess.run(
        [str(_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False, env=go_env()
    )
    if result.returncode != 0:
        raise processes.ServiceStartError(
            f"{_BUILD_SCRIPT} failed with exit code {result.returncode}; its output is on stderr"
        )
    return Path(result.stdout.strip().splitlines()[-1])



def go_env() -> dict[str, str]:
    """The environment with Go on PATH: /usr/local/go/bin where these machines keep it, or
    the toolchain scripts/setup unpacks into ~/.cache/kubekeeper/go on machines without."""
    path = os.environ.get("PATH", "")
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    for directory in (cache_root / "kubekeeper" / "go" / "bin", Path("/usr/local/go/bin")):
        if directory.is_dir():
            path = f"{directory}:{path}"
    return {**os.environ, "PATH": path}


def start(state_dir: Path, address: str = "127.0.0.1") -> ControlPlane:
    """Start a control plane in `state_dir`, or reuse the one already running there.

    The API server listens on `address` (the local node passes its bridge's, so that
    pods reach it through the `kubernetes` Service); etcd stays on loopback.

    Returns once the API server is ready and the controllers have created the
    default ServiceAccount. Raises ServiceStartError with the failing daemon's log
    tail; whatever was started is stopped again first.
    """
    plane = ControlPlane(state_dir.resolve(), binaries_dir())
    if _is_running(plane):
        return plane
    _wipe(plane.state_dir)
    plane.state_dir.mkdir(mode=0o700, parents=True)
    pki = certificates.create(plane.state_dir / "pki", address)
    etcd_port, peer_port, apiserver_port = processes.free_ports(3)
    server = f"https://{address}:{apiserver_port}"
    write_kubeconfig(plane.kubeconfig, server, pki, "admin")
    write_kubeconfig(
        plane.state_dir / "controller-manager.kubeconfig", server, pki, "controller-manager"
    )
    try:
        _start_etcd(plane, etcd_port, peer_port)
        _start_apiserver(plane, pki, etcd_port, address, apiserver_port)
        _start_controller_manager(plane, pki)
    except processes.ServiceStartError:
        _wipe(plane.state_dir, keep_logs=True)
        raise
    return plane


def stop(state_dir: Path) -> None:
    """Stop the control plane in `state_dir` and remove the directory; no-op if gone."""
    _wipe(state_dir.resolve())


def _start_etcd(plane: ControlPlane, port: int, peer_port: int) -> None:
    client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    _spawn(
        plane,
        "etcd",
        "--name=kubekeeper-test",
        f"--data-dir={plane.state_dir / 'etcd-data'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kubekeeper-test={peer_url}",
        # Test data is disposable; skipping fsync makes every API write much faster.
        "--unsafe-no-fsync=true",
        timeout=30.0,
        ready=lambda: _http_ok(f"{client_url}/health"),
    )
    (plane.state_dir / "etcd.url").write_text(client_url + "\n")


def _start_apiserver(plane: ControlPlane, pki: certificates.Pki, etcd_port: int, address: str,
                     port: int) -> None:
    # The endpoint reconciler rejects loopback addresses, and nothing without a node needs
    # the kubernetes Service to have endpoints; on the node's bridge address it gets them.
    reconciler = "none" if address == "127.0.0.1" else "lease"
    _spawn(
        plane,
        "kube-apiserver",
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--endpoint-reconciler-type={reconciler}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.cert('ca')}",
        "--authorization-mode=Node,RBAC",
        # For `kubectl logs`/`exec`: the kubelet authenticates the API server with this
        # certificate and asks it (webhook) whether that identity may. The kubelet is
        # reached by its node name, which resolves to 127.0.0.1 where it listens (the
        # kubelet refuses a loopback InternalIP, so that address is the machine's).
        f"--kubelet-client-certificate={pki.cert('kubelet-client')}",
        f"--kubelet-client-key={pki.key('kubelet-client')}",
        "--kubelet-preferred-address-types=Hostname",
        # The aggregation layer, for metrics-server (metrics.k8s.io): the API server proxies
        # to it as front-proxy-client, and the user goes in these headers, which it trusts
        # only from that certificate. Aggregated servers are reached at their endpoints'
        # addresses (EndpointSlices), not through a Service IP: no kube-proxy is needed.
        f"--requestheader-client-ca-file={pki.cert('front-proxy-ca')}",
        f"--requestheader-allowed-names={certificates.FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.cert(certificates.FRONT_PROXY_CLIENT)}",
        f"--proxy-client-key-file={pki.key(certificates.FRONT_PROXY_CLIENT)}",
        "--enable-aggregator-routing=true",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.key('service-account')}",
        "--service-account-issuer=https://kubernetes.default.svc",
        "--service-cluster-ip-range=10.0.0.0/24",
        # LimitRanges are read from etcd, not the watch cache, as on a cluster whose cache
        # is off: there a list's continue token expires when etcd compacts, which is how
        # tests make a real 410.
        "--watch-cache-sizes=limitranges#0",
        timeout=120.0,
        ready=lambda: _https_ok(f"https://{address}:{port}/readyz", pki),
    )


def _start_controller_manager(plane: ControlPlane, pki: certificates.Pki) -> None:
    server = plane.server
    _spawn(
        plane,
        "kube-controller-manager",
        f"--kubeconfig={plane.state_dir / 'controller-manager.kubeconfig'}",
        f"--controllers={','.join(_CONTROLLERS)}",
        f"--service-account-private-key-file={pki.key('service-account')}",
        f"--root-ca-file={pki.cert('ca')}",
        "--use-service-account-credentials=true",
        "--leader-elect=false",
        # No metrics or health endpoint: readiness is proven by the controllers' work.
        "--secure-port=0",
        timeout=90.0,
        ready=lambda: _https_ok(f"{server}/api/v1/namespaces/default/serviceaccounts/default", pki),
    )


def _spawn(
    plane: ControlPlane, name: str, *args: str, timeout: float, ready: Callable[[], bool]
) -> None:
    log_path = plane.state_dir / f"{name}.log"
    process = processes.spawn([str(plane.binaries / name), *args], log_path)
    processes.write_pid(plane.state_dir / f"{name}.pid", process.pid)
    processes.wait_until(ready, what=name, timeout=timeout, process=process, log_path=log_path)


def _is_running(plane: ControlPlane) -> bool:
    if not plane.kubeconfig.exists():
        return False
    for name in _DAEMONS:
        pid = processes.read_pid(plane.state_dir / f"{name}.pid")
        if pid is None or not processes.is_alive(pid):
            return False
    return _https_ok(f"{plane.server}/readyz", certificates.Pki(plane.state_dir / "pki"))


def _wipe(state_dir: Path, keep_logs: bool = False) -> None:
    """Stop the daemons (controllers first, etcd last) and delete the state.

    With `keep_logs`, the *.log files stay so a failed start can still be read.
    """
    for name in reversed(_DAEMONS):
        pid = processes.read_pid(state_dir / f"{name}.pid")
        if pid is not None and processes.is_alive(pid):
            processes.stop(pid, timeout=10.0)
    for pid in processes.daemons_tied_to(state_dir):
        processes.stop(pid, timeout=10.0)
    if not state_dir.exists():
        return
    if not keep_logs:
        shutil.rmtree(state_dir)
        return
    for entry in state_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.suffix != ".log":
            entry.unlink()


def write_kubeconfig(path: Path, server: str, pki: certificates.Pki, user: str) -> None:
    """A kubeconfig for `user`'s client certificate, embedded, readable by root only."""
    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubekeeper-test",
                "cluster": {"server": server, "certificate-authority-data": data(pki.cert("ca"))},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": data(pki.cert(user)),
                    "client-key-data": data(pki.key(user)),
                },
            }
        ],
        "contexts": [
            {"name": "kubekeeper-test", "context": {"cluster": "kubekeeper-test", "user": user}}
        ],
        "current-context": "kubekeeper-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _http_ok(url: str) -> bool:
    return get_ok(url, None)


def _https_ok(url: str, pki: certificates.Pki) -> bool:
    context = ssl.create_default_context(cafile=pki.cert("ca"))
    context.load_cert_chain(pki.cert("admin"), pki.key("admin"))
    return get_ok(url, context)


def get_ok(url: str, context: ssl.SSLContext | None) -> bool:
    """Whether a GET of `url` answers 200 (any failure to connect is a no)."""
    # No proxy: the services are on loopback, and an HTTPS_PROXY must not intercept them.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with (
        contextlib.suppress(urllib.error.URLError, OSError),
        opener.open(url, timeout=5) as response,
    ):
        return response.status == 200
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """`up` prints the KUBECONFIG export line; `down` stops and wipes the service."""
    return service_cli.main(argv, "controlplane", __doc__.splitlines()[0], default_state_dir(),
                            start, stop, lambda service: f"export KUBECONFIG={service.kubeconfig}")


if __name__ == "__main__":
    sys.exit(main())
