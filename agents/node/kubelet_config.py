"""The kubelet's container-log rotation settings, read from its config file (read-only).

On a CRI node the kubelet, not the runtime, rotates container logs: each
container's log is renamed once it reaches ``containerLogMaxSize``, and at
most ``containerLogMaxFiles`` files are kept per container (the live one
included; older ones are gzipped).  Defaults are 10Mi and 5.

The values mean what the kubelet makes of them (``pkg/kubelet/logs``,
``pkg/kubelet/apis/config/validation``):

- ``containerLogMaxSize`` is a quantity; a negative one turns rotation off
  (the kubelet then runs a stub log manager), ``0`` rotates at every check
  (``containerLogMonitorInterval``, 10s), and one that is not a whole number
  of bytes stops the kubelet from starting.
- ``containerLogMaxFiles`` must be greater than 1, or the kubelet refuses the
  config and does not start.

Command-line flags (``--container-log-max-size``) override the file and are
not seen from here; neither is a drop-in directory (``--config-dir``).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import yaml

from agents.node.host_paths import HostPaths
from agents.units import parse_quantity, show

KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
POD_LOGS_DIR = "/var/log/pods"
DEFAULT_MAX_SIZE = 10 * 2**20
DEFAULT_MAX_FILES = 5


@dataclass(frozen=True)
class KubeletLogging:
    """What the kubelet rotates by, and how that was learnt."""

    max_size: int = DEFAULT_MAX_SIZE
    """Bytes; negative means rotation is off."""
    max_files: int = DEFAULT_MAX_FILES
    pod_logs_dir: str = POD_LOGS_DIR
    config_path: str = KUBELET_CONFIG
    problem: str | None = None
    """Why the file's values were not used (missing, unreadable, invalid): defaults assumed."""
    written_size: str = "10Mi"
    """``containerLogMaxSize`` as written, for the report."""


def read_kubelet_logging(paths: HostPaths, config_path: str = KUBELET_CONFIG) -> KubeletLogging:
    """The rotation settings from the kubelet's config, or its defaults and why."""
    local = paths.resolve(config_path)
    if local is None:
        if paths.resolve(posixpath.dirname(config_path)) is None:
            return _defaults(config_path, "is not visible here (mount its directory under "
                                          "--host-root, or name it with --kubelet-config)")
        return _defaults(config_path, "does not exist (name it with --kubelet-config)")
    try:
        with open(local, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        return _defaults(config_path, "does not exist")
    except (OSError, yaml.YAMLError) as exc:
        return _defaults(config_path, f"cannot be read: {exc}")
    if not isinstance(config, dict):
        return _defaults(config_path, "is not a KubeletConfiguration (not a mapping)")
    return parse_kubelet_logging(config, config_path)


def parse_kubelet_logging(config: dict, config_path: str = KUBELET_CONFIG) -> KubeletLogging:
    """The settings of a parsed KubeletConfiguration; absent keys take the kubelet's defaults."""
    written = config.get("containerLogMaxSize", "10Mi")
    files = config.get("containerLogMaxFiles", DEFAULT_MAX_FILES)
    logs_dir = config.get("podLogsDir") or POD_LOGS_DIR
    try:
        size = parse_quantity(written)
    except ValueError as exc:
        return _defaults(config_path, f"has a containerLogMaxSize the kubelet cannot use: {exc}")
    if size != size.to_integral_value():
        return _defaults(config_path, f"has containerLogMaxSize {show(written)}, not a whole "
                                      "number of bytes (the kubelet does not start with it)")
    if isinstance(files, bool) or not isinstance(files, int):
        return _defaults(config_path, f"has containerLogMaxFiles {show(files)}, not a number")
    if not isinstance(logs_dir, str) or not logs_dir.startswith("/"):
        return _defaults(config_path, f"has podLogsDir {show(logs_dir)}, not an absolute path")
    return KubeletLogging(int(size), files, logs_dir.rstrip("/") or "/", config_path,
                          written_size=str(written))


def _defaults(config_path: str, why: str) -> KubeletLogging:
    return KubeletLogging(config_path=config_path, problem=f"kubelet config {config_path} {why}")
