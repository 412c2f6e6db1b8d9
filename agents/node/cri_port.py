"""The CRI v1 calls the node agent makes, behind one small port beside ``DockerPort``.

It speaks the Container Runtime Interface over the runtime's unix socket, as
the kubelet does, so the same code serves containerd, CRI-O and cri-dockerd.
Answers come back as frozen records in the vocabulary of ``inventory`` (ids,
tags, states, ``datetime``), so a snapshot filled from this port reads as one
filled from Docker.  Every call has its own deadline.  gRPC failures become the
exceptions of ``docker_port`` (``Gone``, ``Conflict``, ``DockerDown``,
``Timeout``, ``DockerError``), so the executor decides on meaning whichever
runtime answered.

The CRI is less careful than the Engine API, so the removals check first:
- ``RemoveContainer`` kills a running container, so only an exited one is
  removed; any other state is a ``Conflict``.
- ``RemoveImage`` obliges even for a pinned image or one a container uses
  (containerd does not refuse either), so a pinned image is a ``Conflict`` and
  an image any container uses (any state) is ``InUse``, naming the users.  The
  check and the removal are separate calls: a container created between them
  is not seen.  This one check is the executor's "in use since planning"
  check too.  Removals go in batches (``remove_images``): one image listing
  and one container listing, made after the executor wrote the batch's intent
  lines, check the whole batch, and then every removal of it is sent at once.
  containerd waits for a garbage collection of its whole store in each
  ``RemoveImage``, and overlapping calls share one, so a batch costs about what
  one removal does; a removal costs one call of its own instead of a status,
  a listing and the removal.
- Removing an image removes all its tags (``api.proto``): there is no untag.
- Both removals are idempotent (no error when the object is already gone);
  ``inspect_*`` raise ``Gone`` for a missing object, so the executor's check
  after a 404 or a timeout works here too.

A runtime that does not serve CRI v1 (``runtime.v1`` is unimplemented, or
``Version`` reports another API version) is refused with ``Unsupported``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Protocol, TypeVar

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc
from agents.node.docker_port import (
    Conflict,
    DockerDown,
    DockerError,
    Gone,
    InUse,
    Timeout,
    Unsupported,
)

API_VERSION = "v1"
_MAX_MESSAGE = 16 * 1024 * 1024
"""The kubelet's limit for CRI answers; a default 4 MiB ListContainers fails on busy nodes."""
_STATUSES_AT_ONCE = 128
"""Sandbox status calls in flight at once (see ``GrpcCriPort.sandbox_images``)."""
_Answer = TypeVar("_Answer")
_CONTAINER_STATES = {
    api_pb2.CONTAINER_CREATED: "created",
    api_pb2.CONTAINER_RUNNING: "running",
    api_pb2.CONTAINER_EXITED: "exited",
    api_pb2.CONTAINER_UNKNOWN: "unknown",
}
_SANDBOX_STATES = {api_pb2.SANDBOX_READY: "ready", api_pb2.SANDBOX_NOTREADY: "notready"}
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class RuntimeVersion:
    name: str
    version: str
    api_version: str


@dataclass(frozen=True)
class CriImage:
    id: str
    tags: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    size: int = 0
    pinned: bool = False
    """The runtime's own keep flag (set for the sandbox image); never removed."""

    @property
    def references(self) -> tuple[str, ...]:
        return self.tags + self.digests


@dataclass(frozen=True)
class CriContainer:
    id: str
    name: str
    attempt: int
    sandbox_id: str
    """Empty from ``inspect_container``: ``ContainerStatus`` does not carry it."""
    state: str
    """``created``, ``running``, ``exited`` or ``unknown``."""
    created: datetime | None
    image_id: str
    """The image's id as ``ListImages`` gives it; matched against ``CriImage.id``."""
    image: str = ""
    """The reference it was created from (``spec.image``), often a tag."""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    finished_at: datetime | None = None
    """Only from ``inspect_container``; None in a listing and while it has not finished."""
    exit_code: int | None = None
    log_path: str = ""


@dataclass(frozen=True)
class CriSandbox:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: str
    """``ready`` or ``notready``."""
    created: datetime | None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class FilesystemUse:
    """One filesystem holding images, as the runtime measures its own use of it."""

    mountpoint: str
    used_bytes: int | None
    inodes_used: int | None


class CriPort(Protocol):
    endpoint: str

    def version(self) -> RuntimeVersion: ...

    def images(self) -> list[CriImage]: ...

    def inspect_image(self, image_id: str) -> CriImage:
        """The image, or ``Gone``."""
        ...

    def image_fs(self) -> list[FilesystemUse]:
        """The image filesystems (``ImageFsInfo``); where disk pressure is measured."""
        ...

    def containers(self) -> list[CriContainer]:
        """Every container the runtime knows, in any state."""
        ...

    def inspect_container(self, container_id: str) -> CriContainer:
        """The container with its finish time, exit code and log path, or ``Gone``."""
        ...

    def sandboxes(self) -> list[CriSandbox]: ...

    def sandbox_images(self, sandbox_ids: Sequence[str]) -> dict[str, str | None]:
        """The image each sandbox runs, where the runtime tells (containerd does), else None;
        None too for a sandbox gone since it was listed."""
        ...

    def image_users(self, image_id: str) -> list[str]:
        """Names of the containers (any state) made from the image."""
        ...

    def remove_container(self, container_id: str) -> None:
        """Remove an exited container; ``Conflict`` for any other state."""
        ...

    def remove_image(self, image_id: str) -> None:
        """Remove the image and all its tags; ``Conflict`` if pinned, ``InUse`` if used."""
        ...

    def remove_images(self, image_ids: Sequence[str]) -> dict[str, DockerError | None]:
        """``remove_image`` of each, checked on one look and sent at once: per id, None
        (removed) or why not; ``DockerDown`` when the look fails (nothing was sent)."""
        ...


class GrpcCriPort:
    """``CriPort`` on a gRPC channel to one runtime socket; one instance per run.

    Construction asks ``Version``, so a missing socket is ``DockerDown`` and a
    runtime without CRI v1 is ``Unsupported`` before anything is listed.
    """

    def __init__(self, endpoint: str, timeout: float = 30):
        self.endpoint = endpoint
        self._timeout = timeout
        self._channel = grpc.insecure_channel(_target(endpoint), options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE)])
        self._runtime = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self._images = api_pb2_grpc.ImageServiceStub(self._channel)
        try:
            found = self.version()
        except Unsupported as exc:
            self._channel.close()
            cause = exc.__cause__
            said = cause.details() if isinstance(cause, grpc.Call) else str(exc)
            raise Unsupported(f"it answers, but runtime.{API_VERSION}.RuntimeService/Version "
                              f"is not served ({said}): it speaks an older CRI (v1alpha2) "
                              "or none") from exc
        except Exception:
            self._channel.close()
            raise
        if found.api_version != API_VERSION:
            self._channel.close()
            raise Unsupported(f"it is {found.name} {found.version} and speaks CRI "
                              f"{found.api_version or '(none)'}, not {API_VERSION}")

    def version(self) -> RuntimeVersion:
        answer = self._call(self._runtime.Version, api_pb2.VersionRequest(version=API_VERSION))
        return RuntimeVersion(answer.runtime_name, answer.runtime_version,
                              answer.runtime_api_version)

    def images(self) -> list[CriImage]:
        answer = self._call(self._images.ListImages, api_pb2.ListImagesRequest())
        return [_image(i) for i in answer.images]

    def inspect_image(self, image_id: str) -> CriImage:
        answer = self._call(self._images.ImageStatus, api_pb2.ImageStatusRequest(
            image=api_pb2.ImageSpec(image=image_id)))
        if not answer.HasField("image"):
            raise Gone(f"no image {image_id}")
        return _image(answer.image)

    def image_fs(self) -> list[FilesystemUse]:
        answer = self._call(self._images.ImageFsInfo, api_pb2.ImageFsInfoRequest())
        return [_filesystem(f) for f in answer.image_filesystems]

    def containers(self) -> list[CriContainer]:
        answer = self._call(self._runtime.ListContainers, api_pb2.ListContainersRequest())
        return [_container(c) for c in answer.containers]

    def inspect_container(self, container_id: str) -> CriContainer:
        answer = self._call(self._runtime.ContainerStatus, api_pb2.ContainerStatusRequest(
            container_id=container_id))
        if not answer.HasField("status"):
            raise Gone(f"no container {container_id}")
        return _container_status(answer.status)

    def sandboxes(self) -> list[CriSandbox]:
        answer = self._call(self._runtime.ListPodSandbox, api_pb2.ListPodSandboxRequest())
        return [_sandbox(s) for s in answer.items]

    def sandbox_images(self, sandbox_ids: Sequence[str]) -> dict[str, str | None]:
        """From ``PodSandboxStatus`` verbose ``info``, asked for every sandbox at once.

        One call per sandbox is needed; sent together they cost about one round
        trip instead of one each (a node may run a few hundred pods); at most
        ``_STATUSES_AT_ONCE`` are in flight, so the answers held stay bounded.  containerd
        puts the image in ``info["info"]``; a runtime that does not (the field is
        not part of the CRI) gives None, and its sandbox image is known only
        through ``pinned``.
        """
        found: dict[str, str | None] = {}
        for start in range(0, len(sandbox_ids), _STATUSES_AT_ONCE):
            calls = {sid: self._runtime.PodSandboxStatus.future(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=True),
                timeout=self._timeout) for sid in sandbox_ids[start:start + _STATUSES_AT_ONCE]}
            found.update((sid, self._sandbox_image(call)) for sid, call in calls.items())
        return found

    def image_users(self, image_id: str) -> list[str]:
        """As Docker's: an image already gone is matched by its id alone, not an error."""
        try:
            image = self.inspect_image(image_id)
        except Gone:
            image = CriImage(image_id)
        return [c.name for c in self.containers() if uses(c, image)]

    def remove_container(self, container_id: str) -> None:
        state = self.inspect_container(container_id).state
        if state != "exited":
            raise Conflict(f"container {container_id} is {state}: only exited ones are removed")
        self._call(self._runtime.RemoveContainer, api_pb2.RemoveContainerRequest(
            container_id=container_id))

    def remove_image(self, image_id: str) -> None:
        error = self.remove_images([image_id])[image_id]
        if error is not None:
            raise error

    def remove_images(self, image_ids: Sequence[str]) -> dict[str, DockerError | None]:
        images = {i.id: i for i in self.images()}  # before the containers: a container made
        containers = self.containers()  # from one of them meanwhile is in this listing
        verdicts = refusals(image_ids, images, containers)
        sent = {i: self._images.RemoveImage.future(api_pb2.RemoveImageRequest(
            image=api_pb2.ImageSpec(image=i)), timeout=self._timeout)
            for i, verdict in verdicts.items() if verdict is None}
        for image_id, call in sent.items():
            verdicts[image_id] = self._answer(call)
        return verdicts

    def close(self) -> None:
        self._channel.close()

    def _sandbox_image(self, call: grpc.Future) -> str | None:
        try:
            answer = call.result()
        except grpc.RpcError as exc:
            error = translate(exc, self.endpoint)
            if isinstance(error, Gone):
                return None  # removed since it was listed: nothing of it to keep
            raise error from exc
        try:
            image = json.loads(answer.info.get("info", "{}")).get("image")
        except (ValueError, AttributeError):
            return None
        return image if isinstance(image, str) and image else None

    def _answer(self, call: grpc.Future) -> DockerError | None:
        try:
            call.result()
        except grpc.RpcError as exc:
            return translate(exc, self.endpoint)
        return None

    def _call(self, rpc: Callable[..., _Answer], request: object) -> _Answer:
        """One unary call with this port's deadline, its failure translated."""
        try:
            return rpc(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise translate(exc, self.endpoint) from exc


def refusals(image_ids: Iterable[str], images: Mapping[str, CriImage],
             containers: Iterable[CriContainer]) -> dict[str, DockerError | None]:
    """Why each image must not be removed now (gone, pinned, in use), or None to go ahead.

    The containers are indexed by the names they give their image once, so a batch
    of hundreds of images against a node's containers costs one pass over each.
    """
    users: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for n, container in enumerate(containers):
        for name in {container.image_id, container.image} - {""}:
            users[name].append((n, container.name))
    return {i: _refusal(i, images, users) for i in image_ids}


def _refusal(image_id: str, images: Mapping[str, CriImage],
             users: Mapping[str, list[tuple[int, str]]]) -> DockerError | None:
    image = images.get(image_id)
    if image is None:
        return Gone(f"no image {image_id}")
    if image.pinned:
        return Conflict(f"image {image_id} is pinned by the runtime")
    found = sorted({user for name in _names(image) for user in users.get(name, ())})
    return InUse(image_id, [name for _, name in found]) if found else None


def uses(container: CriContainer, image: CriImage) -> bool:
    """Whether the container was made from the image, by id or by any of its references."""
    names = _names(image)
    return container.image_id in names or container.image in names


def _names(image: CriImage) -> set[str]:
    return {image.id, image.id.removeprefix("sha256:"), *image.references}


def translate(exc: grpc.RpcError, endpoint: str) -> DockerError:
    """The ``docker_port`` exception for a gRPC status, so the executor reads one language."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.NOT_FOUND:
        return Gone(details)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED) or (
            code is grpc.StatusCode.UNKNOWN and "in use" in details):
        # CRI-O answers UNKNOWN with "image is in use by a container".
        return Conflict(details)
    if code is grpc.StatusCode.UNAVAILABLE:
        return DockerDown(f"{endpoint}: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Timeout(f"no answer in time from {endpoint}: {details}")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return Unsupported(f"{endpoint} does not serve this CRI {API_VERSION} call: {details}")
    return DockerError(f"{code.name}: {details}")


def _target(endpoint: str) -> str:
    """gRPC's spelling of a unix socket: ``unix:///run/x.sock`` or a bare path."""
    if endpoint.startswith("unix://"):
        return endpoint
    return f"unix://{endpoint}" if endpoint.startswith("/") else endpoint


def cri_time(nanoseconds: int) -> datetime | None:
    """CRI times are nanoseconds since the epoch; 0 means not set (never 1970)."""
    if nanoseconds <= 0:
        return None
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC)


def _image(raw: api_pb2.Image) -> CriImage:
    return CriImage(id=raw.id, tags=_clean(raw.repo_tags), digests=_clean(raw.repo_digests),
                    size=raw.size, pinned=raw.pinned)


def _clean(references: Iterable[str]) -> tuple[str, ...]:
    return tuple(r for r in references if r and "<none>" not in r)


def _filesystem(raw: api_pb2.FilesystemUsage) -> FilesystemUse:
    return FilesystemUse(
        mountpoint=raw.fs_id.mountpoint,
        used_bytes=raw.used_bytes.value if raw.HasField("used_bytes") else None,
        inodes_used=raw.inodes_used.value if raw.HasField("inodes_used") else None)


def _container(raw: api_pb2.Container) -> CriContainer:
    return CriContainer(
        id=raw.id, name=raw.metadata.name, attempt=raw.metadata.attempt,
        sandbox_id=raw.pod_sandbox_id, state=_CONTAINER_STATES.get(raw.state, "unknown"),
        created=cri_time(raw.created_at), image_id=raw.image_id or raw.image_ref,
        image=raw.image.image, labels=MappingProxyType(dict(raw.labels)),
        annotations=MappingProxyType(dict(raw.annotations)))


def _container_status(raw: api_pb2.ContainerStatus) -> CriContainer:
    state = _CONTAINER_STATES.get(raw.state, "unknown")
    finished = cri_time(raw.finished_at)
    return CriContainer(
        id=raw.id, name=raw.metadata.name, attempt=raw.metadata.attempt, sandbox_id="",
        state=state, created=cri_time(raw.created_at),
        image_id=raw.image_id or raw.image_ref, image=raw.image.image,
        labels=MappingProxyType(dict(raw.labels)),
        annotations=MappingProxyType(dict(raw.annotations)),
        finished_at=finished, exit_code=raw.exit_code if finished else None,
        log_path=raw.log_path)


def _sandbox(raw: api_pb2.PodSandbox) -> CriSandbox:
    meta = raw.metadata
    return CriSandbox(
        id=raw.id, name=meta.name, namespace=meta.namespace, uid=meta.uid,
        attempt=meta.attempt, state=_SANDBOX_STATES.get(raw.state, "notready"),
        created=cri_time(raw.created_at), labels=MappingProxyType(dict(raw.labels)),
        annotations=MappingProxyType(dict(raw.annotations)))
