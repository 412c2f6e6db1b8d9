"""Start, watch and stop the daemons behind the local services.

Daemons run in a session of their own, so `scripts/*-up` can exit and leave them
running; later calls find them again through pid files, and after a crash through
the state directory their command lines name (or, for containers, their cgroups).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import psutil

# Daemons that a crashed run may leave behind; see daemons_tied_to.
_DAEMON_NAMES = frozenset(
    {
        "dockerd",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "docker-proxy",
        "runc",
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "metrics-server",
    }
)


class ServiceStartError(RuntimeError):
    """A daemon did not become ready; the message ends with the tail of its log."""


def spawn(argv: Sequence[str], log_path: Path,
          pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes]:
    """Start a daemon detached from our session, appending its output to `log_path`.

    `pass_fds` stay open in the daemon: the local node hands the kubelet its lock file
    this way, so the lock lasts exactly as long as the kubelet.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )


def write_pid(pid_path: Path, pid: int) -> None:
    """Write a pid file atomically, so a reader never sees a half-written pid."""
    tmp = pid_path.with_name(pid_path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_path)


def read_pid(pid_path: Path) -> int | None:
    """The pid recorded in `pid_path`, or None when there is no usable pid file."""
    try:
        return int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie counts as gone (and is reaped if it is ours)."""
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; returns once the process is gone."""
    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(0.1)
    raise RuntimeError(f"process {pid} survived SIGKILL")


def daemons_tied_to(state_dir: Path) -> list[int]:
    """Our known daemons whose command line names a path in `state_dir`.

    Only these names are considered, and never this process or its parents (a
    `down --state-dir DIR` command names the directory too).
    """
    names_dir = re.compile(re.escape(str(state_dir.resolve())) + r"(?:/|\s|$)")
    ours = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    return [
        proc.pid
        for proc in psutil.process_iter(["name", "cmdline"])
        if proc.pid not in ours
        and proc.info["name"] in _DAEMON_NAMES
        and names_dir.search(" ".join(proc.info["cmdline"] or ()))
    ]


def pids_in_cgroups_named(markers: Collection[str]) -> list[int]:
    """Processes whose cgroup path contains one of `markers` (e.g. container ids)."""
    if not markers:
        return []
    pids = []
    for pid in psutil.pids():
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if any(marker in cgroups for marker in markers):
            pids.append(pid)
    return pids


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    process: subprocess.Popen[bytes],
    log_path: Path,
) -> None:
    """Poll `ready` until it holds; fail early if `process` exits meanwhile.

    Raises ServiceStartError naming `what` with the tail of `log_path`, so a test
    that cannot get its service says why instead of timing out silently.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServiceStartError(
                f"{what}: process exited with code {process.returncode}{_tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise ServiceStartError(f"{what}: not ready after {timeout:.0f}s{_tail(log_path)}")
        time.sleep(0.2)


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as err:
        return f"\n(no log: {err})"
    last = "\n".join(text.splitlines()[-lines:])
    return f"\n--- last lines of {log_path} ---\n{last}"


def free_ports(count: int) -> list[int]:
    """Distinct loopback TCP ports that are free right now (all held until chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
