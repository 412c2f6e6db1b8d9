"""Images, containers and volumes for tests, made without any registry.

The base image is a rootfs holding only Debian's statically linked busybox,
imported through the API; everything else is built on it with the classic
builder, whose images keep a ParentId chain like the ones kubekeeper meets on
real nodes. Helpers return SDK objects and compose: a benchmark makes many
images with `build_image` in a loop; `many_containers` makes bulk containers fast.
"""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import docker
from docker.errors import ImageNotFound
from docker.models.containers import Container
from docker.models.images import Image

from scripts.localenv import debian_packages

BASE_IMAGE = "kubekeeper-test/busybox:base"
_BUSYBOX = Path("/bin/busybox")
_BASE_CHANGES = ["ENV PATH=/bin", 'CMD ["sh"]']


def ensure_busybox() -> None:
    """Install busybox-static: the base image needs a busybox that runs without libc."""
    debian_packages.install_if_missing(
        "busybox-static", lambda: debian_packages.is_installed("busybox-static")
    )


def base_image(client: docker.DockerClient) -> Image:
    """The busybox base image, imported on first use in this engine."""
    try:
        return client.images.get(BASE_IMAGE)
    except ImageNotFound:
        pass
    ensure_busybox()
    repository, tag = BASE_IMAGE.rsplit(":", 1)
    client.api.import_image_from_data(
        busybox_rootfs(), repository=repository, tag=tag, changes=_BASE_CHANGES
    )
    return client.images.get(BASE_IMAGE)


def busybox_rootfs() -> bytes:
    """A tar of /bin/busybox with a symlink per applet, plus the usual empty dirs."""
    applets = subprocess.run(
        [str(_BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(_BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
    return buffer.getvalue()


def build_image(
    client: docker.DockerClient,
    tag: str,
    dockerfile: str,
    labels: Mapping[str, str] | None = None,
) -> Image:
    """Build `dockerfile` (a string) with the classic builder and tag it `tag`.

    The base image is made available first, so a Dockerfile can start with
    `FROM kubekeeper-test/busybox:base`. RUN steps have no network.
    """
    base_image(client)
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=tag,
        labels=dict(labels or {}),
        forcerm=True,
        network_mode="none",
    )
    return image


def layered_image(
    client: docker.DockerClient,
    tag: str,
    content: str,
    parent: str = BASE_IMAGE,
    labels: Mapping[str, str] | None = None,
) -> Image:
    """An image on `parent` adding one layer, which appends `content` to /layers."""
    dockerfile = f"FROM {parent}\nRUN echo {shlex.quote(content)} >> /layers\n"
    return build_image(client, tag, dockerfile, labels)


def image_chain(client: docker.DockerClient, repository: str, depth: int) -> list[Image]:
    """`repository:1` .. `repository:depth`, each built FROM the one before.

    Every image's ParentId leads back through the previous one to the base image.
    """
    chain: list[Image] = []
    parent = BASE_IMAGE
    for level in range(1, depth + 1):
        tag = f"{repository}:{level}"
        chain.append(layered_image(client, tag, f"{repository} level {level}", parent))
        parent = tag
    return chain


def sibling_images(client: docker.DockerClient, repository: str, count: int) -> list[Image]:
    """`count` images on one shared parent layer (`repository:common`), each adding its own."""
    common = f"{repository}:common"
    layered_image(client, common, f"{repository} shared layer")
    return [
        layered_image(client, f"{repository}:{index}", f"{repository} own {index}", common)
        for index in range(count)
    ]


def pulled_image(client: docker.DockerClient, tag: str, built: datetime) -> Image:
    """What a pull leaves, without a registry: an image whose build time is ``built`` and
    that has no LastTagTime.  The base image is saved, its config's ``created`` rewritten
    (which gives a new image id) and the archive loaded under ``tag``."""
    saved = b"".join(client.api.get_image(base_image(client).id))
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(saved)) as source, \
            tarfile.open(fileobj=out, mode="w") as archive:
        manifest = json.loads(_member(source, "manifest.json") or b"[]")
        for member in source.getmembers():
            data = _member(source, member.name) if member.isfile() else None
            if member.name == manifest[0]["Config"]:
                config = json.loads(data or b"{}")
                config["created"] = built.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                data = json.dumps(config).encode()
            elif member.name == "manifest.json":
                data = json.dumps([{**manifest[0], "RepoTags": [tag]}]).encode()
            if data is not None:
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    for _ in client.api.load_image(out.getvalue()):
        pass
    return client.images.get(tag)


def _member(archive: tarfile.TarFile, name: str) -> bytes | None:
    handle = archive.extractfile(name)
    return handle.read() if handle else None


def retag(image: Image, tag: str) -> Image:
    """Give `image` one more tag; the image id stays the same."""
    repository, _, name = tag.rpartition(":")
    image.tag(repository, name)
    image.reload()
    return image


def dangling_image(client: docker.DockerClient, tag: str) -> str:
    """Build `tag` twice with different content; return the id of the first, now untagged."""
    first = layered_image(client, tag, f"{tag} first build")
    layered_image(client, tag, f"{tag} second build")
    return first.id


def log_writer(client: docker.DockerClient, size: int, name: str | None = None) -> Container:
    """A finished container that wrote `size` bytes to stdout, in 1 KiB lines.

    Its json-file log (container.attrs["LogPath"]) is then a little larger than
    `size`, since every line is wrapped in JSON.
    """
    line = "x" * 1023
    container = client.containers.run(
        base_image(client).id,
        ["sh", "-c", f"yes {line} | head -c {size}"],
        name=name,
        network_mode="none",
        detach=True,
    )
    container.wait(timeout=300)
    container.reload()
    return container


def idle_container(
    client: docker.DockerClient, image: str = BASE_IMAGE, name: str | None = None
) -> Container:
    """A running container that does nothing, so its image counts as in use."""
    base_image(client)
    container = client.containers.run(
        image, ["sleep", "86400"], name=name, network_mode="none", detach=True
    )
    container.reload()
    return container


def many_containers(
    client: docker.DockerClient, image: str, count: int, prefix: str
) -> list[Container]:
    """`count` created (never started) containers of `image`, named `prefix-N`."""
    return [
        client.containers.create(image, ["true"], name=f"{prefix}-{index}", network_mode="none")
        for index in range(count)
    ]


def remove_all(client: docker.DockerClient) -> None:
    """Remove every container (forced), image and volume, leaving an empty engine."""
    for container in client.containers.list(all=True):
        container.remove(force=True, v=True)
    # Pruning unused images handles parent chains, which forced removal by id does not.
    client.images.prune(filters={"dangling": False})
    for image in client.images.list(all=True):
        client.images.remove(image.id, force=True)
    for volume in client.volumes.list():
        volume.remove(force=True)
