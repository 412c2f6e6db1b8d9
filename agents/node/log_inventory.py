"""The facts the log-rotation audit judges: logging settings and log file sizes.

Read-only I/O, in one place: ``docker info`` for the daemon's logging driver,
``/etc/docker/daemon.json`` (through ``--host-root``) for its default
``log-opts``, one inspect per container for its own ``HostConfig.LogConfig``
and ``LogPath`` (a daemon change applies only to containers created after it,
so each container is checked), and the files under the kubelet's
``/var/log/pods`` and ``/var/log/containers``.  Links among those (dockershim
links pod logs to Docker's files; ``/var/log/containers`` links into
``/var/log/pods``) are resolved inside the host root and each file is counted
once.  A size of None means the file is not visible from here.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from loguru import logger

from agents.node.docker_port import DockerPort, Gone
from agents.node.host_paths import HostPaths
from agents.node.protection import POD_NAMESPACE

DAEMON_JSON = "/etc/docker/daemon.json"
KUBELET_LOG_DIRS = ("/var/log/pods", "/var/log/containers")


@dataclass(frozen=True)
class ContainerLog:
    container_id: str
    container_name: str
    driver: str
    options: Mapping[str, str]
    path: str = ""
    """Host path from LogPath; empty when the driver keeps no local file."""
    size: int | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class LogFile:
    """A kubelet-managed log file (CRI logs), by its host path."""

    path: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class DaemonLogging:
    driver: str
    options: Mapping[str, str] | None
    """The daemon's default log-opts; None when daemon.json could not be read."""
    config_path: str = DAEMON_JSON


@dataclass(frozen=True)
class LogFacts:
    docker_root: str
    docker_root_local: str | None
    daemon: DaemonLogging
    containers: tuple[ContainerLog, ...] = ()
    kubelet_files: tuple[LogFile, ...] = ()


def take_logs(port: DockerPort, paths: HostPaths, kubelet_dirs: bool = True) -> LogFacts:
    """Inspect every container's logging, then measure the files it names.

    Without ``kubelet_dirs`` the kubelet's directories are left out: a CRI
    runtime in the same run audits them (``pod_log_inventory``), once.
    """
    info = port.info()
    root = info.get("DockerRootDir") or "/var/lib/docker"
    daemon = DaemonLogging(info.get("LoggingDriver") or "json-file", _daemon_log_opts(paths))
    containers = []
    for summary in port.containers():
        try:
            containers.append(_container_log(port.inspect_container(summary["Id"]), paths))
        except Gone:
            continue
    skip = {paths.resolve(c.path) for c in containers if c.path}
    files = kubelet_files(paths, skip) if kubelet_dirs else []
    return LogFacts(root, paths.resolve(root), daemon, tuple(containers), tuple(files))


def kubelet_files(paths: HostPaths, already_counted: set[str | None],
                  dirs: Sequence[str] = KUBELET_LOG_DIRS) -> list[LogFile]:
    """Regular files under the kubelet's log directories, each counted once."""
    seen = set(already_counted)
    found: list[LogFile] = []
    for host_dir in dirs:
        local_dir = paths.resolve(host_dir)
        if local_dir is None:
            continue
        for folder, _dirs, files in os.walk(local_dir):
            for name in sorted(files):
                host_path = host_dir + os.path.join(folder, name)[len(local_dir):]
                entry = _measure(paths, host_path, seen)
                if entry:
                    found.append(entry)
    return found


def _measure(paths: HostPaths, host_path: str, seen: set[str | None]) -> LogFile | None:
    local = paths.resolve(host_path)
    if local is None or local in seen:
        return None
    seen.add(local)
    try:
        info = os.stat(local)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return LogFile(host_path, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))


def _container_log(raw: Mapping[str, Any], paths: HostPaths) -> ContainerLog:
    config = (raw.get("HostConfig") or {}).get("LogConfig") or {}
    path = raw.get("LogPath") or ""
    return ContainerLog(
        container_id=raw["Id"], container_name=(raw.get("Name") or raw["Id"][:12]).lstrip("/"),
        driver=config.get("Type") or "", options=MappingProxyType(dict(config.get("Config") or {})),
        path=path, size=file_size(paths, path) if path else None,
        namespace=((raw.get("Config") or {}).get("Labels") or {}).get(POD_NAMESPACE))


def file_size(paths: HostPaths, host_path: str) -> int | None:
    local = paths.resolve(host_path)
    if local is None:
        return None
    try:
        return os.stat(local).st_size
    except OSError:
        return None


def _daemon_log_opts(paths: HostPaths) -> Mapping[str, str] | None:
    """log-opts from daemon.json; {} when the host's /etc is visible but the file is absent."""
    local = paths.resolve(DAEMON_JSON)
    if local is None:
        return MappingProxyType({}) if paths.resolve("/etc/docker") else None
    try:
        with open(local, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        logger.bind(kind="file", name=DAEMON_JSON, id=local).warning(
            "cannot read the Docker daemon config: {}", exc)
        return None
    return MappingProxyType({str(k): str(v) for k, v in (config.get("log-opts") or {}).items()})
