"""promtool and a private Pushgateway, built by tests/prometheus/build.

The Pushgateway listens on a free loopback port and keeps nothing on disk (no
``--persistence.file``), so every test session starts from an empty one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from scripts.localenv import processes

_BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "prometheus" / "build"
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Pushgateway:
    state_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "pushgateway.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "pushgateway.log"

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
    process = processes.spawn(argv, gateway.log_file)
    processes.write_pid(gateway.pid_file, process.pid)
    processes.wait_until(lambda: _ready(gateway), what=f"the Pushgateway on {gateway.url}",
                         timeout=_START_TIMEOUT, process=process, log_path=gateway.log_file)
    return gateway


def stop(state_dir: Path) -> None:
    """Stop the Pushgateway of ``state_dir`` and remove the directory."""
    pid = processes.read_pid(state_dir / "pushgateway.pid")
    if pid is not None and processes.is_alive(pid):
        processes.stop(pid, timeout=10.0)
    shutil.rmtree(state_dir, ignore_errors=True)


def _ready(gateway: Pushgateway) -> bool:
    try:
        with urllib.request.urlopen(f"{gateway.url}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
