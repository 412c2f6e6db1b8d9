"""A private containerd with the CRI plugin on, living entirely in one state directory.

It has its own --root, --state, sockets and config, so it never touches the
machine's containerd (or the one inside the private dockerd) and is thrown away
with the directory. There is no CNI: tests create hostNetwork pod sandboxes, which
need none. containerd, ctr and the runc shim are built from the Go module proxy
by tests/containerd/build; runc is Debian's.

Root in this sandbox lacks CAP_SYS_RESOURCE, so `restrict_oom_score_adj` keeps
containers from asking for an oom_score_adj below containerd's own.

Command line: `python -m scripts.localenv.containerd up|down [--state-dir DIR]`;
`up` prints `export CONTAINER_RUNTIME_ENDPOINT=unix://...` for `eval`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.localenv import (
    controlplane,
    cri_images,
    debian_packages,
    mounts,
    processes,
    service_cli,
)

NAMESPACE = "k8s.io"
"""The containerd namespace the CRI plugin keeps its images and containers in."""
SANDBOX_IMAGE = "kubekeeper.test/pause:1"
"""The CRI's sandbox (pause) image: imported at start, since nothing can be pulled."""

_START_TIMEOUT = 60.0
_MAX_SOCKET_PATH = 108  # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included
_BUILD = Path(__file__).resolve().parents[2] / "tests" / "containerd" / "build"
_RUNC = "/usr/sbin/runc"


@dataclass(frozen=True)
class Cni:
    """A pod network for the CRI: the plugins' directory and one .conflist's JSON."""

    bin_dir: Path
    conflist: str


@dataclass(frozen=True)
class Containerd:
    """Where a private containerd lives and how to reach it."""

    state_dir: Path
    bin_dir: Path

    @property
    def socket(self) -> Path:
        """The gRPC socket: containerd's own API and the CRI's."""
        return self.state_dir / "containerd.sock"

    @property
    def endpoint(self) -> str:
        """The CRI endpoint, as the kubelet and crictl spell it."""
        return f"unix://{self.socket}"

    @property
    def root(self) -> Path:
        """containerd's --root: content store, snapshots, metadata."""
        return self.state_dir / "root"

    @property
    def state(self) -> Path:
        """containerd's --state: task bundles and shim sockets (short, for socket paths)."""
        return self.state_dir / "run"

    @property
    def config(self) -> Path:
        return self.state_dir / "config.toml"

    @property
    def pid_file(self) -> Path:
        """Written by us after the spawn; how `down` and a crash cleanup find containerd."""
        return self.state_dir / "containerd.pid"

    @property
    def log_file(self) -> Path:
        """containerd's output, quoted when start-up fails."""
        return self.state_dir / "containerd.log"

    def ctr(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        """Run ctr against this containerd in the CRI's namespace; its stdout, or an error."""
        argv = [str(self.bin_dir / "ctr"), "--address", str(self.socket), "-n", NAMESPACE, *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout,
                                check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()


def default_state_dir() -> Path:
    """`$KUBEKEEPER_STATE/containerd`, shared by the shell entry points."""
    return Path(os.environ.get("KUBEKEEPER_STATE", "/tmp/kubekeeper-localenv")) / "containerd"


def build() -> Path:
    """The directory with containerd, ctr and the runc shim (built once, then cached)."""
    result = subprocess.run([str(_BUILD)], capture_output=True, text=True,
                            env=controlplane.go_env(), check=False)
    if result.returncode != 0:
        raise processes.ServiceStartError(f"{_BUILD} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def start(state_dir: Path, sandbox: cri_images.ArchiveImage | None = None,
          cni: Cni | None = None) -> Containerd:
    """Start containerd in `state_dir` (or reuse the one answering there), sandbox image in.

    `sandbox` is the image the CRI runs as every pod's sandbox (by default a busybox
    stand-in tagged SANDBOX_IMAGE; the local node passes the real pause). With `cni`
    pods get a network; without, only hostNetwork sandboxes can be made.
    A state directory left by a crashed run is cleaned (processes stopped, mounts
    detached, files wiped) before the new containerd starts.
    """
    sandbox = sandbox or cri_images.pause_image(SANDBOX_IMAGE)
    service = Containerd(state_dir.resolve(), build())
    if _answers(service):
        return service
    _check_socket_paths(service)
    debian_packages.install_if_missing("runc", lambda: Path(_RUNC).exists())
    _wipe(service)
    for directory in (service.state_dir, service.root, service.state):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    service.config.write_text(_config(service, sandbox.tags[0], cni))
    if cni is not None:
        (service.state_dir / "cni" / "net.d").mkdir(parents=True)
        (service.state_dir / "cni" / "net.d" / "10-kubekeeper.conflist").write_text(cni.conflist)
    process = processes.spawn(_argv(service), service.log_file)
    processes.write_pid(service.pid_file, process.pid)
    try:
        processes.wait_until(lambda: _answers(service), what=f"containerd in {service.state_dir}",
                             timeout=_START_TIMEOUT, process=process, log_path=service.log_file)
        # The CRI labels it pinned itself, since it is the configured sandbox image.
        cri_images.import_images(service, [sandbox])
    except processes.ServiceStartError:
        processes.stop(process.pid)
        raise
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        processes.stop(process.pid)
        raise processes.ServiceStartError(
            f"containerd in {service.state_dir} started, but the sandbox image did not go in: "
            f"{err}") from err
    return service


def stop(state_dir: Path) -> None:
    """Stop the containerd in `state_dir` and remove the directory; a no-op if it is gone."""
    service = Containerd(state_dir.resolve(), Path())
    if service.state_dir.exists():
        _wipe(service)


def _wipe(service: Containerd) -> None:
    """Stop containers, shims and containerd, then detach mounts and delete the directory."""
    for pid in processes.pids_in_cgroups_named(_task_ids(service)):
        processes.stop(pid, timeout=0)
    for pid in processes.daemons_tied_to(service.state_dir):
        processes.stop(pid, timeout=5.0)
    pid = processes.read_pid(service.pid_file)
    if pid is not None and processes.is_alive(pid):
        processes.stop(pid, timeout=20.0)
    mounts.unmount_all_under(service.state_dir)
    if service.state_dir.exists():
        shutil.rmtree(service.state_dir)


def _task_ids(service: Containerd) -> list[str]:
    """Ids of this containerd's tasks; CRI ids are 64 random hex digits, naming no one else's."""
    tasks = service.state / "io.containerd.runtime.v2.task" / NAMESPACE
    if not tasks.is_dir():
        return []
    return [entry.name for entry in tasks.iterdir() if len(entry.name) == 64]


def _check_socket_paths(service: Containerd) -> None:
    longest = service.state_dir / "containerd.sock.ttrpc"
    if len(os.fsencode(longest)) >= _MAX_SOCKET_PATH:
        raise processes.ServiceStartError(
            f"state dir {service.state_dir} is too long: the socket {longest} would exceed "
            f"the {_MAX_SOCKET_PATH - 1}-byte limit of unix socket paths")


def _argv(service: Containerd) -> list[str]:
    return [str(service.bin_dir / "containerd"), "--config", str(service.config),
            "--root", str(service.root), "--state", str(service.state),
            "--address", str(service.socket)]


def _config(service: Containerd, sandbox: str, cni: Cni | None) -> str:
    """Config version 4 (containerd 2.4): CRI on, no TCP or streaming port clash.

    `runtime_path` names our shim: found on PATH, Debian's 1.6 shim fails to start tasks.

    `imports` is emptied so the machine's /etc/containerd/conf.d is never read.
    """
    return f"""\
version = 4
root = "{service.root}"
state = "{service.state}"
imports = []

[plugins.'io.containerd.server.v1.grpc']
  address = "{service.socket}"

[plugins.'io.containerd.server.v1.ttrpc']
  address = "{service.socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{sandbox}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni.bin_dir if cni else service.state_dir / 'cni' / 'bin'}"]
    conf_dir = "{service.state_dir}/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{service.bin_dir / 'containerd-shim-runc-v2'}"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{_RUNC}"
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def _answers(service: Containerd) -> bool:
    """Whether containerd answers on its socket and its CRI plugin loaded."""
    if not service.socket.exists():
        return False
    try:
        plugins = service.ctr("plugins", "ls", timeout=10)
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return any("io.containerd.grpc.v1" in line and " cri " in f" {line} " and "ok" in line
               for line in plugins.splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    """`up` prints the CONTAINER_RUNTIME_ENDPOINT export line; `down` stops and wipes."""
    return service_cli.main(argv, "containerd", __doc__.splitlines()[0], default_state_dir(),
                            start, stop,
                            lambda s: f"export CONTAINER_RUNTIME_ENDPOINT={s.endpoint}")


if __name__ == "__main__":
    sys.exit(main())
