"""Host paths seen from inside a pod, where the host's filesystem sits under ``--host-root``.

Docker reports host paths (``DockerRootDir``, ``LogPath``, a volume's
``Mountpoint``).  In a pod the host's ``/var/lib/docker`` is visible as, say,
``/host/var/lib/docker``, and a symlink on the host (``/var/lib/docker ->
/data/docker``, or kubelet's ``/var/log/pods/...`` links into Docker's log
directory) points at a host path too.  So paths are resolved component by
component with every absolute link target re-rooted under the host root: the
result is always inside the host root, never in the pod's own filesystem.
A path that does not exist there is "not visible", and the report says so
with both the host path and the place it was looked for: one ``kind: log``
line when the Docker root is not visible (log sizes unknown), one ``kind:
disk`` line when disk pressure cannot be evaluated, a ``kind: log`` line per
container log file that is missing, and ``bytes: null`` for a volume whose
size could not be measured.  Nothing is ever truncated through a path that is
not visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePosixPath

_MAX_LINKS = 40


@dataclass(frozen=True)
class HostPaths:
    """Maps host paths under ``root`` (``/`` on the host itself, ``/host`` in a pod)."""

    root: str = "/"

    def local(self, host_path: str) -> str:
        """Where ``host_path`` would be seen from here, without resolving links."""
        relative = PurePosixPath(host_path).as_posix().lstrip("/")
        return os.path.join(self.root, relative) if relative else self.root

    def resolve(self, host_path: str) -> str | None:
        """The local path of ``host_path`` with links resolved inside the host root.

        Returns None when the path (or a link on the way) is not visible.
        """
        if self.root == "/":
            local = os.path.realpath(host_path)
            return local if os.path.lexists(local) else None
        parts = _parts(host_path)
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.local("/" + "/".join([*resolved, part]))
            if not os.path.lexists(candidate):
                return None
            if os.path.islink(candidate):
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = os.readlink(candidate)
                parts = _parts(target) + parts
                if target.startswith("/"):
                    resolved = []
                continue
            resolved.append(part)
        return self.local("/" + "/".join(resolved))

    def contains(self, host_dir: str, local_path: str) -> bool:
        """True when a resolved local path lies inside ``host_dir`` (itself resolved)."""
        base = self.resolve(host_dir)
        if base is None:
            return False
        return os.path.commonpath([base, local_path]) == base and local_path != base


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]
