"""An in-memory ``CriPort`` for unit tests: records in, the port's guarantees out.

It keeps the real port's promises that the planners and executor rely on:
removing an image takes every tag, a pinned image is a ``Conflict`` and a used
one ``InUse``,
and a missing image is ``Gone`` to ``inspect_image`` and ``remove_image``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agents.node.cri_port import (
    CriContainer,
    CriImage,
    CriSandbox,
    FilesystemUse,
    RuntimeVersion,
    refusals,
    uses,
)
from agents.node.docker_port import DockerError, Gone


@dataclass
class MemoryCri:
    endpoint: str = "unix:///memory/cri.sock"
    image_list: list[CriImage] = field(default_factory=list)
    container_list: list[CriContainer] = field(default_factory=list)
    sandbox_list: list[CriSandbox] = field(default_factory=list)
    sandbox_images_by_id: dict[str, str] = field(default_factory=dict)
    sandbox_looks: int = 0
    filesystems: list[FilesystemUse] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def add_image(self, image_id: str, *tags: str, size: int = 100, pinned: bool = False,
                  digests: tuple[str, ...] = ()) -> CriImage:
        image = CriImage(image_id, tuple(tags), digests, size, pinned)
        self.image_list.append(image)
        return image

    def add_container(self, cid: str, image: str, state: str = "running",
                      created: datetime | None = None, **labels: str) -> None:
        self.container_list.append(CriContainer(
            id=cid, name=cid, attempt=0, sandbox_id="", state=state, created=created,
            image_id=image if image.startswith("sha256:") else "", image=image,
            labels={k.replace("__", "."): v for k, v in labels.items()}))

    def add_sandbox(self, sid: str, image: str | None, name: str = "web",
                    namespace: str = "default") -> None:
        self.sandbox_list.append(CriSandbox(sid, name, namespace, f"uid-{sid}", 0, "ready",
                                            None))
        if image:
            self.sandbox_images_by_id[sid] = image

    def version(self) -> RuntimeVersion:
        return RuntimeVersion("memory", "0", "v1")

    def images(self) -> list[CriImage]:
        return list(self.image_list)

    def inspect_image(self, image_id: str) -> CriImage:
        for image in self.image_list:
            if image_id in (image.id, *image.references):
                return image
        raise Gone(f"no image {image_id}")

    def image_fs(self) -> list[FilesystemUse]:
        return list(self.filesystems)

    def containers(self) -> list[CriContainer]:
        return list(self.container_list)

    def sandboxes(self) -> list[CriSandbox]:
        return list(self.sandbox_list)

    def sandbox_images(self, sandbox_ids: Sequence[str]) -> dict[str, str | None]:
        self.sandbox_looks += 1
        listed = {s.id for s in self.sandbox_list}
        return {sid: self.sandbox_images_by_id.get(sid) if sid in listed else None
                for sid in sandbox_ids}

    def image_users(self, image_id: str) -> list[str]:
        try:
            image = self.inspect_image(image_id)
        except Gone:
            image = CriImage(image_id)
        return [c.name for c in self.container_list if uses(c, image)]

    def remove_image(self, image_id: str) -> None:
        error = self.remove_images([image_id])[image_id]
        if error is not None:
            raise error

    def remove_images(self, image_ids: Sequence[str]) -> dict[str, DockerError | None]:
        """The real port's check (``refusals``) on one look, then every removal it allows."""
        images = {i.id: i for i in self.images()}
        containers = self.containers()
        verdicts = refusals(image_ids, images, containers)
        for image_id, verdict in verdicts.items():
            if verdict is None:
                self.image_list.remove(images[image_id])
                self.removed.append(image_id)
        return verdicts

    def close(self) -> None:
        pass
