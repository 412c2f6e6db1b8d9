"""Go itself, for machines without it: the toolchain as the Go module proxy serves it.

Debian does not ship the Go the builds need (>= 1.26). The proxy serves every
release as the module `golang.org/toolchain` (how `GOTOOLCHAIN` fetches one); this
downloads that module's zip, checks it against the checksum pinned here (the
`h1:` hash the checksum database records, so a tampered or truncated download is
refused), and unpacks it into ~/.cache/kubekeeper/go. Standard library only: it
runs before the project's virtualenv exists.

Command line: `python3 -m scripts.localenv.gotoolchain` prints the directory to put
on PATH (`.../go/bin`); a second run finds the toolchain there and downloads nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

VERSION = "1.26.8"
# `go mod download -json golang.org/toolchain@v0.0.1-go1.26.8.linux-<arch>` → "Sum".
SUMS = {"amd64": "h1:ZOmGe1OnfREDMIdb1Qi4G9JSuDPBLGExZMQ4nis1RXM="}
_PROXY = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0].rstrip("/")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def cache_dir() -> Path:
    """Where the toolchain lives: `$XDG_CACHE_HOME/kubekeeper/go` (GOROOT)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "kubekeeper" / "go"


def module_version(arch: str) -> str:
    return f"v0.0.1-go{VERSION}.linux-{arch}"


def dirhash(archive: zipfile.ZipFile) -> str:
    """The `h1:` hash of a module zip, as go.sum and the checksum database write it."""
    names = sorted(name for name in archive.namelist() if not name.endswith("/"))
    lines = [f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}\n" for name in names]
    return "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()


def unpack(data: bytes, expected_sum: str, prefix: str, dest: Path) -> None:
    """Check the zip against `expected_sum`, then unpack its `prefix/` tree as `dest`.

    Unpacks beside `dest` and renames into place, so an interrupted run leaves no
    half toolchain; file modes (the binaries' exec bits) come from the zip.
    """
    archive = zipfile.ZipFile(io.BytesIO(data))
    found = dirhash(archive)
    if found != expected_sum:
        raise RuntimeError(f"Go toolchain zip: checksum {found}, expected {expected_sum}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".go-"))
    try:
        for info in archive.infolist():
            name = info.filename
            if not name.startswith(prefix + "/") or name.endswith("/") or ".." in name.split("/"):
                continue
            target = staging / name[len(prefix) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure() -> Path:
    """The toolchain's bin directory, downloaded and unpacked first if missing."""
    dest = cache_dir()
    if (dest / "bin" / "go").exists():
        return dest / "bin"
    arch = _ARCHES.get(platform.machine(), platform.machine())
    if arch not in SUMS:
        raise RuntimeError(f"no pinned Go toolchain checksum for linux-{arch}")
    version = module_version(arch)
    url = f"{_PROXY}/golang.org/toolchain/@v/{version}.zip"
    print(f"gotoolchain: downloading Go {VERSION} from {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=300) as answer:
        data = answer.read()
    unpack(data, SUMS[arch], f"golang.org/toolchain@{version}", dest)
    return dest / "bin"


if __name__ == "__main__":
    print(ensure())
