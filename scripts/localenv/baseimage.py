"""A local stand-in for `python:3.12-slim`, so the kubekeeper image builds without a registry.

No container registry is reachable here, so the Dockerfile's `BASE_IMAGE` is a
Debian bookworm rootfs made with `debootstrap` from the machine's own apt mirror
(python3 and venv, nothing else) and imported into the engine. debootstrap takes
a minute or more, so the rootfs tarball is cached under ~/.cache/kubekeeper/;
importing it into a fresh engine takes seconds.

Command line: `python -m scripts.localenv.baseimage [--tag TAG]` imports the base
into $DOCKER_HOST's engine (making the tarball first if needed) and prints its tag.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound
from docker.models.images import Image

from scripts.localenv import debian_packages, mounts

BASE_TAG = "kubekeeper-test/debian-python:bookworm"
_SUITE = "bookworm"
_PACKAGES = ("python3", "python3-venv", "ca-certificates")
_TARBALL = f"debian-{_SUITE}-python3.tar"
# Caches, docs and translations: a third of the rootfs, and nothing runs from them.
_TRIMMED = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
_LOCAL_CAS = Path("/usr/local/share/ca-certificates")
_IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/kubekeeper` (else ~/.cache/kubekeeper): kept across test runs."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "kubekeeper"


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI this machine's apt uses for Debian's main archive of `bookworm`.

    Reads deb822 `sources.list.d/*.sources` and one-line `sources.list(.d/*.list)`
    files, so debootstrap fetches from the same mirror apt already reaches.
    Raises RuntimeError when no source serves the suite's main component.
    """
    entries = [*_deb822_entries(apt_dir), *_one_line_entries(apt_dir)]
    for uris, suites, components in entries:
        if _SUITE in suites and "main" in components and uris:
            return uris[0]
    raise RuntimeError(f"no apt source for {_SUITE} main under {apt_dir}")


def _deb822_entries(apt_dir: Path) -> list[tuple[list[str], list[str], list[str]]]:
    entries = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                entries.append(
                    (fields.get("uris", []), fields.get("suites", []), fields.get("components", []))
                )
    return entries


def _one_line_entries(apt_dir: Path) -> list[tuple[list[str], list[str], list[str]]]:
    entries = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
            if len(words) >= 4 and words[0] == "deb":
                entries.append(([words[1]], [words[2]], words[3:]))
    return entries


def rootfs_tarball(cache_dir: Path | None = None) -> Path:
    """The cached rootfs tarball, made with debootstrap the first time.

    The tarball appears atomically (written aside, then renamed), so a killed
    run never leaves a truncated one for the next run to trust.
    """
    cache_dir = cache_dir or default_cache_dir()
    tarball = cache_dir / _TARBALL
    if tarball.is_file():
        return tarball
    debian_packages.install_if_missing(
        "debootstrap", lambda: shutil.which("debootstrap") is not None
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".rootfs-") as work:
        try:
            _make_rootfs(Path(work) / "root", Path(work) / _TARBALL).replace(tarball)
        finally:
            # A debootstrap killed half-way leaves /proc and /sys mounted in the rootfs.
            mounts.unmount_all_under(Path(work))
    return tarball


def _make_rootfs(root: Path, tarball: Path) -> Path:
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(_PACKAGES)}",
            _SUITE,
            str(root),
            apt_mirror(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    _trust_local_cas(root)
    for relative in _TRIMMED:
        shutil.rmtree(root / relative, ignore_errors=True)
    # /dev stays an empty directory: the engine provides the devices at run time.
    subprocess.run(
        ["tar", "--numeric-owner", "--exclude=./dev/*", "-C", str(root), "-cf", str(tarball), "."],
        check=True,
    )
    return tarball


def _trust_local_cas(root: Path) -> None:
    """Trust the machine's local CAs in the rootfs too.

    Where outbound TLS passes a proxy with its own CA, pip inside the build must
    trust it as the machine does; on a machine without local CAs this is a no-op.
    """
    local = sorted(_LOCAL_CAS.glob("*.crt")) if _LOCAL_CAS.is_dir() else []
    if not local:
        return
    target = root / _LOCAL_CAS.relative_to("/")
    target.mkdir(parents=True, exist_ok=True)
    for cert in local:
        shutil.copy2(cert, target / cert.name)
    # Its warnings (a bundle among the local CAs, "does not contain exactly one certificate")
    # are no newcomer's concern: shown only if it fails.
    updated = subprocess.run(
        ["chroot", str(root), "update-ca-certificates"], capture_output=True, text=True
    )
    if updated.returncode:
        raise RuntimeError(f"update-ca-certificates failed in {root}: {updated.stderr}")


def ensure_image(
    client: docker.DockerClient, tag: str = BASE_TAG, cache_dir: Path | None = None
) -> Image:
    """The base image in `client`'s engine, imported from the tarball on first use."""
    try:
        return client.images.get(tag)
    except ImageNotFound:
        pass
    repository, _, name = tag.rpartition(":")
    client.api.import_image_from_file(
        str(rootfs_tarball(cache_dir)), repository=repository, tag=name, changes=_IMAGE_CHANGES
    )
    return client.images.get(tag)


def main(argv: list[str] | None = None) -> int:
    """Import the base into $DOCKER_HOST's engine and print its tag for `--build-arg`."""
    parser = argparse.ArgumentParser(prog="baseimage", description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=BASE_TAG)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with contextlib.closing(docker.from_env()) as client:
        ensure_image(client, args.tag, args.cache_dir)
    print(args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
