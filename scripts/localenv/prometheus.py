"""promtool, a private Pushgateway and a Prometheus server, built by tests/prometheus/build.

The Pushgateway listens on a free loopback port and keeps nothing on disk (no
``--persistence.file``), so every test session starts from an empty one.

The Prometheus server (``start_server``) scrapes one local node's kubelet, its cAdvisor
endpoint (``/metrics/cadvisor``: ``container_cpu_usage_seconds_total`` and
``container_memory_working_set_bytes`` with pod and container labels, which this node's
kubelet takes from containerd: see ``node._kubelet_config``), every 5 s, under the node's
name (the kubelet serves on 127.0.0.1 only). It shows the kubelet the API server's own
kubelet-client certificate, which the kubelet's webhook authorizer allows, and skips the
check of the kubelet's self-signed serving certificate: settings for this test node only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import yaml

from scripts.localenv import certificates, processes
from scripts.localenv.node import KUBELET_PORT, Node

_BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "prometheus" / "build"
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class LoopbackServer:
    """A server started here: its state directory, its pid and log files there, its
    loopback port."""

    NAME: ClassVar[str]
    state_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.NAME}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.NAME}.log"


@dataclass(frozen=True)
class Pushgateway(LoopbackServer):
    NAME: ClassVar[str] = "pushgateway"

    def metrics(self) -> str:
        """The Pushgateway's own ``/metrics``: every pushed group, as Prometheus scrapes it."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as answer:
            return answer.read().decode()

    def wipe(self) -> None:
        """Delete every pushed group, so a test sees only its own pushes."""
        request = urllib.request.Request(f"{self.url}/api/v1/admin/wipe", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass


@cache
def binaries_dir() -> Path:
    """The directory of promtool and pushgateway, built if missing (minutes when cold)."""
    path = os.environ.get("PATH", "")
    if Path("/usr/local/go/bin").is_dir():
        path = f"/usr/local/go/bin:{path}"
    result = subprocess.run([str(_BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True,
                            check=False, env={**os.environ, "PATH": path})
    if result.returncode != 0:
        raise processes.ServiceStartError(
            f"{_BUILD_SCRIPT} failed with exit code {result.returncode}; its output is on stderr")
    return Path(result.stdout.strip().splitlines()[-1])


def promtool() -> Path:
    return binaries_dir() / "promtool"


def start(state_dir: Path) -> Pushgateway:
    """Start a Pushgateway on a free loopback port; ready once ``/-/ready`` answers."""
    binary = binaries_dir() / "pushgateway"
    state_dir.mkdir(parents=True, exist_ok=True)
    gateway = Pushgateway(state_dir, processes.free_ports(1)[0])
    argv = [str(binary), f"--web.listen-address=127.0.0.1:{gateway.port}",
            "--web.enable-admin-api", "--log.level=warn"]
    _launch(gateway, argv, lambda: _ready(gateway), f"the Pushgateway on {gateway.url}",
            _START_TIMEOUT)
    return gateway


def stop(state_dir: Path) -> None:
    """Stop the Pushgateway of ``state_dir`` and remove the directory."""
    _stop(Pushgateway(state_dir, 0))


def _launch(server: LoopbackServer, argv: list[str], ready: Callable[[], bool], what: str,
            timeout: float) -> None:
    """Spawn a server, record its pid, and wait until ``ready`` (or fail with its log)."""
    process = processes.spawn(argv, server.log_file)
    processes.write_pid(server.pid_file, process.pid)
    processes.wait_until(ready, what=what, timeout=timeout, process=process,
                         log_path=server.log_file)


def _stop(server: LoopbackServer) -> None:
    """Stop the server whose pid is in its state directory (the port plays no part)."""
    pid = processes.read_pid(server.pid_file)
    if pid is not None and processes.is_alive(pid):
        processes.stop(pid, timeout=10.0)
    shutil.rmtree(server.state_dir, ignore_errors=True)


def _ready(gateway: Pushgateway) -> bool:
    try:
        with urllib.request.urlopen(f"{gateway.url}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@dataclass(frozen=True)
class PrometheusServer(LoopbackServer):
    NAME: ClassVar[str] = "prometheus"


def start_server(state_dir: Path, node: Node) -> PrometheusServer:
    """Start Prometheus scraping ``node``'s kubelet; ready once the scrape target is up."""
    state_dir.mkdir(parents=True, exist_ok=True)
    server = PrometheusServer(state_dir, processes.free_ports(1)[0])
    pki = certificates.Pki(node.plane.state_dir / "pki")
    config = state_dir / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "5s", "scrape_timeout": "4s"},
        "scrape_configs": [{
            "job_name": "kubelet-cadvisor", "scheme": "https", "metrics_path": "/metrics/cadvisor",
            "tls_config": {"cert_file": str(pki.cert("kubelet-client")),
                           "key_file": str(pki.key("kubelet-client")),
                           "insecure_skip_verify": True},
            "static_configs": [{"targets": [f"{node.name}:{KUBELET_PORT}"]}]}]}))
    argv = [str(binaries_dir() / "prometheus"), f"--config.file={config}",
            f"--storage.tsdb.path={state_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{server.port}", "--log.level=warn"]
    _launch(server, argv, lambda: _scraped(server), f"Prometheus on {server.url}",
            _START_TIMEOUT * 2)
    return server


def stop_server(state_dir: Path) -> None:
    """Stop the Prometheus server of ``state_dir`` and remove the directory (its TSDB too)."""
    _stop(PrometheusServer(state_dir, 0))


def _scraped(server: PrometheusServer) -> bool:
    """Whether ``up`` of the kubelet target is 1: Prometheus answers and the scrape works."""
    try:
        with urllib.request.urlopen(f"{server.url}/api/v1/query?query=up", timeout=2) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError):
        return False
    return any(r["value"][1] == "1" for r in body.get("data", {}).get("result", ()))
