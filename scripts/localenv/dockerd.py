"""A private Docker engine for tests, living entirely in one state directory.

It has its own data root, exec root (with its own managed containerd), pid file
and socket, and no bridge or iptables rules, so it never touches the machine's
Docker and can be thrown away with the directory. Containers run with
`network_mode="none"`.

Command line: `python -m scripts.localenv.dockerd up|down [--state-dir DIR]`;
`up` prints `export DOCKER_HOST=...` for `eval`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from scripts.localenv import debian_packages, mounts, processes, service_cli

_START_TIMEOUT = 60.0
_MAX_SOCKET_PATH = 108  # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included


@dataclass(frozen=True)
class DockerEngine:
    """Where a private engine lives and how to talk to it."""

    state_dir: Path

    @property
    def base_url(self) -> str:
        """The engine's API address, usable as DOCKER_HOST."""
        return f"unix://{self.state_dir}/docker.sock"

    @property
    def data_root(self) -> Path:
        """dockerd's --data-root: images, containers, volumes and json-file logs."""
        return self.state_dir / "data"

    @property
    def exec_root(self) -> Path:
        """dockerd's --exec-root; short, since containerd puts unix sockets in it."""
        return self.state_dir / "exec"

    @property
    def pid_file(self) -> Path:
        """Written by dockerd; how `down` and a later crash cleanup find it."""
        return self.state_dir / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        """dockerd's and its containerd's output, quoted when start-up fails."""
        return self.state_dir / "dockerd.log"

    def client(self, timeout: int = 120) -> docker.DockerClient:
        """A new SDK client for this engine (API version negotiated with the daemon)."""
        return docker.DockerClient(base_url=self.base_url, timeout=timeout)


def default_state_dir() -> Path:
    """`$KUBEKEEPER_STATE/dockerd`, shared by the shell entry points."""
    return Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-localenv")) / "dockerd"


def ensure_installed() -> None:
    """Install Debian's docker.io when this machine has no dockerd."""
    debian_packages.install_if_missing("docker.io", lambda: shutil.which("dockerd") is not None)


def start(state_dir: Path) -> DockerEngine:
    """Start an engine in `state_dir`, or reuse the one already answering there.

    A state directory left by a crashed run is cleaned (its processes stopped,
    mounts detached, files wiped) before the new engine starts.
    """
    engine = DockerEngine(state_dir.resolve())
    if _answers_ping(engine):
        return engine
    longest_socket = engine.exec_root / "containerd" / "containerd.sock.ttrpc"
    if len(os.fsencode(longest_socket)) >= _MAX_SOCKET_PATH:
        raise processes.ServiceStartError(
            f"state dir {engine.state_dir} is too long: containerd's socket {longest_socket} "
            f"would exceed the {_MAX_SOCKET_PATH - 1}-byte limit of unix socket paths"
        )
    ensure_installed()
    _wipe(engine)
    for directory in (engine.state_dir, engine.data_root, engine.exec_root):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # dockerd writes its own pid file; writing it first would make dockerd refuse to start.
    process = processes.spawn(_dockerd_argv(engine), engine.log_file)
    try:
        processes.wait_until(
            lambda: _answers_ping(engine),
            what=f"dockerd in {engine.state_dir}",
            timeout=_START_TIMEOUT,
            process=process,
            log_path=engine.log_file,
        )
    except processes.ServiceStartError:
        processes.stop(process.pid)
        raise
    return engine


def stop(state_dir: Path) -> None:
    """Stop the engine in `state_dir` and remove the directory; a no-op if it is gone."""
    engine = DockerEngine(state_dir.resolve())
    if engine.state_dir.exists():
        _wipe(engine)


def _wipe(engine: DockerEngine) -> None:
    pid = processes.read_pid(engine.pid_file)
    if pid is not None and processes.is_alive(pid):
        _kill_containers(engine)
        processes.stop(pid, timeout=30.0)
    # Container processes first: once their shims die they are only found by cgroup.
    for pid in processes.pids_in_cgroups_named(_container_ids(engine)):
        processes.stop(pid, timeout=0)
    for pid in processes.daemons_tied_to(engine.state_dir):
        processes.stop(pid, timeout=5.0)
    mounts.unmount_all_under(engine.state_dir)
    if engine.state_dir.exists():
        shutil.rmtree(engine.state_dir)


def _kill_containers(engine: DockerEngine) -> None:
    """SIGKILL running containers; dockerd would give each 10s to exit on SIGTERM."""
    if not _answers_ping(engine):
        return
    with contextlib.closing(engine.client(timeout=30)) as client:
        for container in client.containers.list():
            with contextlib.suppress(docker.errors.APIError):
                container.kill()


def _container_ids(engine: DockerEngine) -> list[str]:
    """Ids of this engine's containers; 64 random hex digits, so they name no one else's."""
    containers = engine.data_root / "containers"
    if not containers.is_dir():
        return []
    return [entry.name for entry in containers.iterdir() if len(entry.name) == 64]


def _dockerd_argv(engine: DockerEngine) -> list[str]:
    return [
        "dockerd",
        f"--data-root={engine.data_root}",
        f"--exec-root={engine.exec_root}",
        f"--pidfile={engine.pid_file}",
        f"--host={engine.base_url}",
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
    ]


def _answers_ping(engine: DockerEngine) -> bool:
    if not Path(engine.base_url.removeprefix("unix://")).exists():
        return False
    try:
        with docker.APIClient(base_url=engine.base_url, version="auto", timeout=5) as api:
            return api.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """`up` prints the DOCKER_HOST export line; `down` stops and wipes the service."""
    return service_cli.main(argv, "dockerd", __doc__.splitlines()[0], default_state_dir(),
                            start, stop, lambda service: f"export DOCKER_HOST={service.base_url}")


if __name__ == "__main__":
    sys.exit(main())
