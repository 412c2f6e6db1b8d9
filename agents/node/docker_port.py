"""The handful of Docker Engine calls the node agent makes, behind one small port.

The real implementation wraps ``docker.APIClient`` and returns the Engine API's
JSON as plain dicts.  It translates the SDK's failures into the four
exceptions below, so the executor decides on meaning (gone, conflict, Docker
down, no answer in time) rather than on SDK types, and the in-memory fake used by unit tests
speaks the same language.  Removals never force: a conflict is Docker telling
us the object became needed, and the caller skips it.

The SDK (with ``requests``, about 18 MiB) is imported only when a Docker
endpoint is checked or connected to: the CRI port raises these exceptions
too, and an agent that cleans only containerd or CRI-O should not carry it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import docker

_T = TypeVar("_T")
_FINISHED = ["exited", "dead", "created"]


class DockerError(Exception):
    """Docker answered with an error that is not one of the cases below."""


class Gone(DockerError):
    """404: the object no longer exists (someone else removed it)."""


class Conflict(DockerError):
    """409: the object is in use (or became so after planning); never forced."""


class InUse(Conflict):
    """Containers use the image: its removal was not asked for (raised by the CRI port,
    which checks itself, since the CRI would remove a used image)."""

    def __init__(self, image_id: str, users: list[str]):
        super().__init__(f"image {image_id} is used by container {', '.join(sorted(users)[:5])}")
        self.users = users


class DockerDown(DockerError):
    """No answer from the Engine: refused, reset, or the socket is missing."""


class Timeout(DockerError):
    """The Engine took the request but did not answer in time: it may still carry it out."""


class Unsupported(DockerError):
    """The runtime answers, but not in a protocol we speak (not CRI v1): nothing can be asked."""


class DockerPort(Protocol):
    endpoint: str

    def info(self) -> dict[str, Any]: ...

    def containers(self, finished_with_size: bool = False) -> list[dict[str, Any]]:
        """All containers; or only exited/dead/created ones, with ``SizeRw``."""
        ...

    def inspect_container(self, container_id: str) -> dict[str, Any]: ...

    def images(self) -> list[dict[str, Any]]:
        """All images, intermediate ones included (their ``ParentId`` chains matter)."""
        ...

    def inspect_image(self, image_id: str) -> dict[str, Any]: ...

    def image_users(self, image_id: str) -> list[str]:
        """Names of the containers (any state) made from the image or an image built on it."""
        ...

    def volumes(self) -> list[dict[str, Any]]: ...

    def inspect_volume(self, name: str) -> dict[str, Any]: ...

    def remove_container(self, container_id: str) -> None:
        """Remove a stopped container without its volumes (the volume rules judge those)."""
        ...

    def untag_image(self, reference: str) -> None:
        """Remove one ``repo:tag`` or ``repo@digest`` reference, never forced."""
        ...

    def tag_image(self, image_id: str, reference: str) -> None:
        """Give the image the ``repo:tag`` reference (back)."""
        ...

    def remove_image(self, image_id: str) -> None:
        """Remove by id, never forced, without pruning untagged parents."""
        ...

    def remove_volume(self, name: str) -> None: ...


def check_endpoint(endpoint: str) -> None:
    """Raise ValueError unless the SDK can use ``endpoint`` (``unix://…``, ``tcp://host:port``).

    Checked before the first connection, so a typo is a usage error (exit 2),
    not a traceback and not "Docker unreachable" (exit 3).
    """
    import docker.errors
    import docker.utils

    try:
        docker.utils.parse_host(endpoint, False, False)
    except (ValueError, docker.errors.DockerException) as exc:
        raise ValueError(f"{endpoint[:80]!r} is not a Docker endpoint ({exc})") from None


class EnginePort:
    """``DockerPort`` on the SDK's low-level client; one instance per run."""

    def __init__(self, endpoint: str, pool_size: int = 10, timeout: float = 30):
        import docker

        self.endpoint = endpoint
        self._api: docker.APIClient = _call(lambda: docker.APIClient(
            base_url=endpoint, version="auto", timeout=timeout, max_pool_size=pool_size))

    def info(self) -> dict[str, Any]:
        return _call(self._api.info)

    def containers(self, finished_with_size: bool = False) -> list[dict[str, Any]]:
        if finished_with_size:
            return _call(lambda: self._api.containers(
                all=True, size=True, filters={"status": _FINISHED}))
        return _call(lambda: self._api.containers(all=True))

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return _call(lambda: self._api.inspect_container(container_id))

    def images(self) -> list[dict[str, Any]]:
        return _call(lambda: self._api.images(all=True))

    def inspect_image(self, image_id: str) -> dict[str, Any]:
        return _call(lambda: self._api.inspect_image(image_id))

    def image_users(self, image_id: str) -> list[str]:
        found = _call(lambda: self._api.containers(all=True, filters={"ancestor": image_id}))
        return [(c.get("Names") or [c["Id"][:12]])[0].lstrip("/") for c in found]

    def volumes(self) -> list[dict[str, Any]]:
        return _call(lambda: self._api.volumes().get("Volumes") or [])

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return _call(lambda: self._api.inspect_volume(name))

    def remove_container(self, container_id: str) -> None:
        _call(lambda: self._api.remove_container(container_id, v=False, force=False))

    def untag_image(self, reference: str) -> None:
        _call(lambda: self._api.remove_image(reference, force=False, noprune=True))

    def tag_image(self, image_id: str, reference: str) -> None:
        repository, tag = split_tag(reference)
        if not _call(lambda: self._api.tag(image_id, repository, tag, force=False)):
            raise DockerError(f"Docker did not tag {image_id} as {reference}")

    def remove_image(self, image_id: str) -> None:
        _call(lambda: self._api.remove_image(image_id, force=False, noprune=True))

    def remove_volume(self, name: str) -> None:
        _call(lambda: self._api.remove_volume(name, force=False))

    def close(self) -> None:
        self._api.close()


def _call(request: Callable[[], _T]) -> _T:
    """Run one SDK call, translating its failures into this module's exceptions."""
    import docker.errors
    import requests.exceptions

    try:
        return request()
    except docker.errors.NotFound as exc:
        raise Gone(_explain(exc)) from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(_explain(exc)) from exc
        raise DockerError(_explain(exc)) from exc
    except requests.exceptions.ReadTimeout as exc:
        raise Timeout(f"no answer in time: {exc}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise DockerDown(str(exc)) from exc
    except docker.errors.DockerException as exc:
        # The client raises this when version negotiation finds no daemon.
        raise DockerDown(str(exc)) from exc
    except requests.exceptions.RequestException as exc:
        raise DockerError(str(exc)) from exc


def split_tag(reference: str) -> tuple[str, str]:
    """``registry:5000/team/app:1`` → (``registry:5000/team/app``, ``1``); no tag → latest."""
    head, sep, tail = reference.rpartition(":")
    if sep and "/" not in tail:
        return head, tail
    return reference, "latest"


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)
