"""The facts the pod-log audit on a CRI node judges; read-only I/O, in one place.

The kubelet writes each container's log under
``<podLogsDir>/<namespace>_<pod>_<uid>/<container>/<attempt>.log`` and rotates
it to ``<attempt>.log.<timestamp>`` (gzipped once older).  This measures each
pod directory (its regular files, links not followed, so nothing outside is
counted) and counts its container logs, since the kubelet's bound is per
container log.  The directories are walked *before* the sandboxes are listed,
so a pod started in between is known, not taken for gone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.node.host_paths import HostPaths
from agents.node.kubelet_config import KUBELET_CONFIG, KubeletLogging, read_kubelet_logging
from agents.node.log_inventory import LogFile, kubelet_files

CONTAINER_LINKS = "/var/log/containers"


@dataclass(frozen=True)
class PodLogDir:
    path: str
    """Host path, ``/var/log/pods/<namespace>_<pod>_<uid>``."""
    namespace: str
    pod: str
    uid: str
    size: int
    container_logs: int
    """Distinct ``<container>/<attempt>.log`` logs, rotated files counted with theirs."""
    modified: datetime
    """The newest change in it: the directory, a container directory or a file."""


@dataclass(frozen=True)
class PodLogFacts:
    kubelet: KubeletLogging
    logs_dir_visible: bool
    pod_dirs: tuple[PodLogDir, ...] = ()
    live_uids: frozenset[str] = frozenset()
    """Pod UIDs of every sandbox the CRI runtimes know, in any state."""
    files: tuple[LogFile, ...] = ()


def take_pod_logs(paths: HostPaths, live_uids: Callable[[], Iterable[str]],
                  config_path: str = KUBELET_CONFIG) -> PodLogFacts:
    """The kubelet's settings, the pod log directories, then ``live_uids()``: the pod UIDs
    of the runtimes' sandboxes (asked last, see above)."""
    kubelet = read_kubelet_logging(paths, config_path)
    local = paths.resolve(kubelet.pod_logs_dir)
    dirs = pod_log_dirs(local, kubelet.pod_logs_dir) if local else None
    uids = frozenset(live_uids())
    files = kubelet_files(paths, set(), (kubelet.pod_logs_dir, CONTAINER_LINKS))
    return PodLogFacts(kubelet, dirs is not None, tuple(dirs or ()), uids, tuple(files))


def pod_log_dirs(local_dir: str, host_dir: str) -> list[PodLogDir] | None:
    """Each ``<namespace>_<pod>_<uid>`` directory, measured; other names are not the kubelet's.

    None when ``local_dir`` cannot be listed; a directory removed while it is
    measured (the kubelet removing a pod) is left out.
    """
    try:
        entries = sorted(os.scandir(local_dir), key=lambda e: e.name)
    except OSError:
        return None
    found = []
    for entry in entries:
        parts = entry.name.split("_")
        if len(parts) != 3 or not all(parts) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            size, logs, newest = _measure(entry.path)
        except OSError:
            continue
        found.append(PodLogDir(f"{host_dir.rstrip('/')}/{entry.name}", *parts, size, logs,
                               datetime.fromtimestamp(newest, UTC)))
    return found


def _measure(local_dir: str) -> tuple[int, int, float]:
    """Bytes of the regular files inside, distinct container logs, newest mtime."""
    size, logs, newest = 0, set(), os.lstat(local_dir).st_mtime
    for folder, dirs, files in os.walk(local_dir):
        for name in (*dirs, *files):
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            newest = max(newest, info.st_mtime)
            if name in files and stat.S_ISREG(info.st_mode):
                size += info.st_size
                if ".log" in name:
                    logs.add((folder, name.split(".log")[0]))
    return size, max(1, len(logs)), newest
