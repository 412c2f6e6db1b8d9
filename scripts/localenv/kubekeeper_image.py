"""kubekeeper's own image for the local node: built once per source, imported, never pulled.

The image is built by a private Docker engine on the debootstrap base of
`baseimage.py` and saved as an archive in ``~/.cache/kubekeeper/image/``, named
by a hash of everything the build reads (the Dockerfile, .dockerignore and what it
lets in: pyproject.toml, README.md, agents/). A later demo or test run with the
same sources imports that archive into the node's containerd in seconds instead
of building for a minute; any change to those files builds anew, and only the
newest archive is kept.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import docker
from docker.errors import BuildError

from scripts.localenv import baseimage
from scripts.localenv.containerd import Containerd

TAG = "kubekeeper:test"
IMPORTED = f"docker.io/library/{TAG}"  # what `ctr images import` names a `docker save` tag
_REPO = Path(__file__).resolve().parents[2]
_SOURCES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")


class ImageBuildError(RuntimeError):
    """The Dockerfile did not build; the message carries the builder's last output."""


def source_hash(repo: Path = _REPO) -> str:
    """What the build reads, hashed: the archive's name in the cache."""
    digest = hashlib.sha256()
    files = [repo / name for name in _SOURCES]
    files += sorted(p for p in (repo / "agents").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(repo)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cached_archive(cache_dir: Path | None = None) -> Path:
    """Where the archive for today's sources is (or will be) kept."""
    directory = (cache_dir or baseimage.default_cache_dir()) / "image"
    return directory / f"kubekeeper-{source_hash()}.tar"


def archive(client: docker.DockerClient, cache_dir: Path | None = None) -> Path:
    """The image archive for today's sources, built with ``client``'s engine when the cache
    has none. Returns its path; raises ImageBuildError with the builder's output."""
    path = cached_archive(cache_dir)
    if path.is_file():
        return path
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    baseimage.ensure_image(client)
    started = time.monotonic()
    try:
        client.images.build(path=str(_REPO), tag=TAG, network_mode="host", rm=True,
                            forcerm=True, buildargs={"BASE_IMAGE": baseimage.BASE_TAG})
    except BuildError as err:
        tail = "".join(str(x.get("stream", x.get("error", ""))) for x in err.build_log)[-2000:]
        raise ImageBuildError(f"the kubekeeper image did not build: {err}\n{tail}") from err
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        for chunk in client.images.get(TAG).save(named=True):
            out.write(chunk)
    for old in directory.glob("kubekeeper-*.tar"):
        old.unlink()
    partial.replace(path)  # whole or absent: a killed save never poses as a cached build
    print(f"{TAG}: built and saved in {time.monotonic() - started:.0f}s", flush=True)
    return path


def import_into(runtime: Containerd, path: Path) -> None:
    """Import the archive into ``runtime``'s k8s.io namespace, where the kubelet finds it."""
    runtime.ctr("images", "import", "--platform", "linux/amd64", str(path), timeout=600)
