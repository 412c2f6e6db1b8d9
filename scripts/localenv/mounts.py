"""Unmount what a killed Docker engine left mounted inside its state directory.

dockerd mounts overlay filesystems, shm and network namespaces under its data
and exec roots. If it dies without cleaning up, those mounts keep the directory
from being removed, so teardown detaches every mount below the state directory.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path

_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points strictly below `directory`, deepest first (the order to unmount)."""
    root = str(directory.resolve())
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mount_point = _unescape(line.split()[4])
            if mount_point.startswith(root + "/"):
                found.append(Path(mount_point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all_under(directory: Path) -> None:
    """Lazily detach every mount below `directory`; a mount that vanished meanwhile is fine."""
    for mount_point in mounts_under(directory):
        if _libc.umount2(os.fsencode(mount_point), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                raise OSError(err, f"umount {mount_point}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
