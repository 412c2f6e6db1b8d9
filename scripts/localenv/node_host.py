"""What a local node shares with the machine: one lock, and the kubelet's fixed host paths.

The kubelet writes outside its --root-dir whatever its flags say: device-plugin
sockets in /var/lib/kubelet/device-plugins, log symlinks in /var/log/containers,
iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and the
`kubepods` cgroups; the CNI plugins add /var/lib/cni, kube-proxy its iptables
chains (KUBE-SERVICES and the rest, which `kube-proxy --cleanup` removes), and the
node makes its bridge. Two nodes
would share (and one teardown would remove) all of it, so only one local node runs
per machine: `lock` says who holds it, and the holder is the kubelet process
itself (it inherits the locked file), so a crashed node frees the lock by dying.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

LOCK_FILE = Path("/run/kubekeeper-node.lock")
BRIDGE = "kk-node0"
"""The CNI bridge; its /24 is private and pods get no default route through it."""

_FIXED_DIRS = (Path("/var/lib/kubelet/device-plugins"), Path("/var/log/containers"),
               Path("/var/lib/cni"))
_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


class NodeLocked(RuntimeError):
    """Another local node runs on this machine."""


def lock(state_dir: Path) -> int:
    """Take the machine's node lock for `state_dir`; the open, locked file descriptor.

    Raises NodeLocked naming the state dir of the node that holds it.
    """
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        os.close(fd)
        raise NodeLocked(
            f"another local node runs on this machine (state dir {holder}; lock {LOCK_FILE}): "
            f"the kubelet writes fixed host paths, so only one node runs at a time; stop it "
            f"with `scripts/node-down --state-dir {holder}`") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{state_dir}\n".encode(), 0)
    return fd


def holder() -> str | None:
    """The state dir written in the lock file, whether or not anyone still holds it."""
    with contextlib.suppress(OSError):
        return LOCK_FILE.read_text().strip() or None
    return None


def make_bridge(address: str) -> None:
    """Create the CNI bridge with `address` (CIDR form) before the API server binds to it;
    the bridge plugin finds it there and only attaches pods."""
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
    for argv in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                 ["ip", "addr", "add", address, "dev", BRIDGE],
                 ["ip", "link", "set", BRIDGE, "up"]):
        subprocess.run(argv, capture_output=True, text=True, check=True)


def clean_fixed_paths(kube_proxy: Path) -> None:
    """Remove what a kubelet, kube-proxy and the CNI plugins left on the machine; call with
    the lock held and the node's daemons stopped."""
    if kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False)
    for directory in _FIXED_DIRS:
        shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path("/var/lib/kubelet").rmdir()  # only if empty: the machine may have its own
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            _remove_chains(binary)
    _remove_kubepods_cgroups()
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


def _remove_chains(binary: str) -> None:
    """Delete the rules jumping to the kubelet's chains, then the chains, in every table."""
    for table in ("filter", "nat", "mangle"):
        listing = subprocess.run([binary, "-w", "-t", table, "-S"], capture_output=True,
                                 text=True, check=False).stdout
        for rule in listing.splitlines():
            words = rule.split()
            if words[:1] == ["-A"] and any(f"-j {chain}" in rule for chain in _CHAINS):
                subprocess.run([binary, "-w", "-t", table, "-D", *words[1:]],
                               capture_output=True, check=False)
        for chain in _CHAINS:
            if f"-N {chain}" in listing:
                for action in ("-F", "-X"):
                    subprocess.run([binary, "-w", "-t", table, action, chain],
                                   capture_output=True, check=False)


def _remove_kubepods_cgroups() -> None:
    """rmdir every `kubepods` cgroup tree, deepest first (cgroup dirs go only when empty)."""
    for tree in _CGROUP_ROOT.glob("*/kubepods*"):
        if not tree.is_dir():
            continue
        for directory in sorted((p for p in tree.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()
