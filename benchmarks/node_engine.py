"""The node benchmark's private Docker engine: stopped, snapshotted and brought back identical.

``scripts.localenv.dockerd.start`` wipes its state directory before starting,
which is right for tests and wrong here: every trial must start from the same
seeded data root.  So the first start goes through ``dockerd.start``, and each
restart runs dockerd again here with the same directories and flags on a data
root restored with ``cp -a`` (links, hardlinks, xattrs and device nodes kept),
copied only while dockerd is stopped and nothing of it is mounted.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import docker

from scripts.localenv import dockerd, mounts, processes
from scripts.localenv.dockerd import DockerEngine

_START_TIMEOUT = 120.0


def start(state_dir: Path) -> DockerEngine:
    """A new, empty engine in ``state_dir`` (whatever was there is wiped)."""
    return dockerd.start(state_dir)


def stop(engine: DockerEngine) -> None:
    """Stop dockerd (and its containerd), then detach anything it left mounted."""
    pid = processes.read_pid(engine.pid_file)
    if pid is not None and processes.is_alive(pid):
        processes.stop(pid, timeout=60.0)
    for leftover in processes.daemons_tied_to(engine.state_dir):
        processes.stop(leftover, timeout=10.0)
    mounts.unmount_all_under(engine.state_dir)


def snapshot(engine: DockerEngine, target: Path) -> float:
    """Stop the engine and copy its data root to ``target``; returns the seconds taken."""
    started = time.monotonic()
    stop(engine)
    _copy(engine.data_root, target)
    return time.monotonic() - started


def restore(engine: DockerEngine, source: Path, running: int) -> float:
    """Stop, put the snapshot back, start, and wait for ``running`` containers to run again.

    The seeded containers that should run carry ``restart: always``, so dockerd
    restarts them itself.  Returns the seconds taken (not part of any measurement).
    """
    started = time.monotonic()
    stop(engine)
    for directory in (engine.data_root, engine.exec_root):
        if directory.exists():
            shutil.rmtree(directory)
    _copy(source, engine.data_root)
    engine.exec_root.mkdir(mode=0o700)
    _restart(engine)
    _wait_running(engine, running)
    return time.monotonic() - started


def _copy(source: Path, target: Path) -> None:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    subprocess.run(["sync"], check=True)


def _restart(engine: DockerEngine) -> None:
    argv = ["dockerd", f"--data-root={engine.data_root}", f"--exec-root={engine.exec_root}",
            f"--pidfile={engine.pid_file}", f"--host={engine.base_url}", "--bridge=none",
            "--iptables=false", "--ip-masq=false"]
    process = processes.spawn(argv, engine.log_file)
    processes.wait_until(lambda: _answers(engine), what=f"dockerd in {engine.state_dir}",
                         timeout=_START_TIMEOUT, process=process, log_path=engine.log_file)


def _answers(engine: DockerEngine) -> bool:
    if not Path(engine.base_url.removeprefix("unix://")).exists():
        return False
    try:
        with docker.APIClient(base_url=engine.base_url, version="auto", timeout=5) as api:
            return bool(api.ping())
    except Exception:  # any failure here means "not yet"; wait_until keeps the deadline
        return False


def _wait_running(engine: DockerEngine, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with docker.APIClient(base_url=engine.base_url, version="auto", timeout=30) as api:
        while len(api.containers(filters={"status": "running"})) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {expected} containers running after restore")
            time.sleep(0.2)
