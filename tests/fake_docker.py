"""An in-memory ``DockerPort``: the fake unit tests use instead of a Docker Engine.

It keeps objects in the Engine API's JSON shapes, so the inventory parses them
as it parses the real thing, and it refuses removals the way Docker does: 404
for a missing object, 409 for a running container, an image with children, an
image any container uses, an image with several tags removed by id, and a
mounted volume.  ``down`` makes
every call fail as if the socket were gone; ``failures`` injects an exception
for one (call, target); ``calls`` records every mutation in order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from agents.node.docker_port import Conflict, DockerDown, Gone, split_tag
from agents.node.mutations import repository

_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_LIVE = ("running", "paused", "restarting")


class MemoryDocker:
    endpoint = "memory://docker"

    def __init__(self, docker_root: str = "/var/lib/docker", logging_driver: str = "json-file"):
        self.docker_root = docker_root
        self.logging_driver = logging_driver
        self.containers_by_id: dict[str, dict[str, Any]] = {}
        self.images_by_id: dict[str, dict[str, Any]] = {}
        self.volumes_by_name: dict[str, dict[str, Any]] = {}
        self.failures: dict[tuple[str, str], Exception] = {}
        self.calls: list[tuple[str, str]] = []
        self.down = False

    # -- building the state -------------------------------------------------------------

    def add_container(self, cid: str, name: str | None = None, state: str = "exited",
                      image: str = "", created: datetime | None = _EPOCH,
                      finished: datetime | None = None, labels: Mapping[str, str] | None = None,
                      volumes: Iterable[str] = (), size: int = 0, log_driver: str = "json-file",
                      log_opts: Mapping[str, str] | None = None) -> None:
        self.containers_by_id[cid] = {
            "Id": cid, "Names": [f"/{name or cid[:12]}"], "State": state, "ImageID": image,
            "Created": _epoch(created), "Labels": dict(labels or {}), "SizeRw": size,
            "Mounts": [{"Type": "volume", "Name": v} for v in volumes],
            "_finished": _rfc3339(finished) if finished else "0001-01-01T00:00:00Z",
            "_log": {"Type": log_driver, "Config": dict(log_opts or {})},
        }

    def add_image(self, iid: str, parent: str = "", tags: Iterable[str] = (),
                  digests: Iterable[str] = (), created: datetime | None = _EPOCH, size: int = 0,
                  labels: Mapping[str, str] | None = None,
                  tagged_at: datetime | None = None) -> None:
        self.images_by_id[iid] = {
            "Id": iid, "ParentId": parent, "RepoTags": list(tags) or None,
            "RepoDigests": list(digests) or None, "Created": _epoch(created),
            "Size": size, "Labels": dict(labels or {}) or None,
            "_tagged": _rfc3339(tagged_at) if tagged_at else "0001-01-01T00:00:00Z",
        }

    def add_volume(self, name: str, created: datetime | None = _EPOCH,
                   labels: Mapping[str, str] | None = None, driver: str = "local") -> None:
        self.volumes_by_name[name] = {
            "Name": name, "CreatedAt": _rfc3339(created) if created else "",
            "Labels": dict(labels or {}) or None,
            "Driver": driver, "Mountpoint": f"{self.docker_root}/volumes/{name}/_data"}

    # -- the port -----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        self._answer("info", "")
        return {"DockerRootDir": self.docker_root, "LoggingDriver": self.logging_driver}

    def containers(self, finished_with_size: bool = False) -> list[dict[str, Any]]:
        self._answer("containers", "")
        listed = [c for c in self.containers_by_id.values()
                  if not finished_with_size or c["State"] in ("exited", "dead", "created")]
        return [{k: v for k, v in copy.deepcopy(c).items() if not k.startswith("_")
                 and (finished_with_size or k != "SizeRw")} for c in listed]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        c = self._get(self.containers_by_id, container_id, "inspect_container")
        path = f"{self.docker_root}/containers/{c['Id']}/{c['Id']}-json.log"
        return {"Id": c["Id"], "Name": c["Names"][0], "State": {"FinishedAt": c["_finished"]},
                "LogPath": path if c["_log"]["Type"] == "json-file" else "",
                "HostConfig": {"LogConfig": copy.deepcopy(c["_log"])},
                "Config": {"Labels": dict(c["Labels"])}}

    def images(self) -> list[dict[str, Any]]:
        self._answer("images", "")
        return [{k: v for k, v in copy.deepcopy(i).items() if not k.startswith("_")}
                for i in self.images_by_id.values()]

    def inspect_image(self, image_id: str) -> dict[str, Any]:
        image = self._get(self.images_by_id, image_id, "inspect_image")
        return {"Id": image["Id"], "Metadata": {"LastTagTime": image["_tagged"]}}

    def volumes(self) -> list[dict[str, Any]]:
        self._answer("volumes", "")
        return copy.deepcopy(list(self.volumes_by_name.values()))

    def remove_container(self, container_id: str) -> None:
        c = self._get(self.containers_by_id, container_id, "remove_container", mutation=True)
        if c["State"] in _LIVE:
            raise Conflict(f"cannot remove a {c['State']} container {container_id}")
        del self.containers_by_id[container_id]

    def image_users(self, image_id: str) -> list[str]:
        self._answer("image_users", image_id)
        family = {image_id} | self._descendants(image_id)
        return [c["Names"][0].lstrip("/") for c in self.containers_by_id.values()
                if c["ImageID"] in family]

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._get(self.volumes_by_name, name, "inspect_volume"))

    def tag_image(self, image_id: str, reference: str) -> None:
        image = self._get(self.images_by_id, image_id, "tag_image", mutation=True)
        repo, tag = split_tag(reference)
        image["RepoTags"] = sorted({*(image["RepoTags"] or []), f"{repo}:{tag}"})

    def untag_image(self, reference: str) -> None:
        self._answer("untag_image", reference, mutation=True)
        image = next((i for i in self.images_by_id.values()
                      if reference in (i["RepoTags"] or []) + (i["RepoDigests"] or [])), None)
        if image is None:
            raise Gone(f"No such image: {reference}")
        for key in ("RepoTags", "RepoDigests"):
            image[key] = [r for r in image[key] or [] if r != reference] or None
        if not image["RepoTags"] and not image["RepoDigests"]:
            self._delete_image(image["Id"])

    def remove_image(self, image_id: str) -> None:
        image = self._get(self.images_by_id, image_id, "remove_image", mutation=True)
        tags, digests = image["RepoTags"] or [], image["RepoDigests"] or []
        repos = {repository(r) for r in tags + digests}
        if len(tags) > 1 or len(repos) > 1:
            raise Conflict(f"unable to delete {image_id} (must be forced) - image is "
                           "referenced in multiple repositories")
        self._delete_image(image_id)

    def remove_volume(self, name: str) -> None:
        self._get(self.volumes_by_name, name, "remove_volume", mutation=True)
        if name in self._mounted():
            raise Conflict(f"remove {name}: volume is in use")
        del self.volumes_by_name[name]

    def close(self) -> None:
        """Nothing to release; present because the real port has it."""

    # -- Docker's rules -----------------------------------------------------------------

    def _delete_image(self, image_id: str) -> None:
        if any(i["ParentId"] == image_id for i in self.images_by_id.values()):
            raise Conflict(f"unable to delete {image_id} - image has dependent child images")
        users = [c for c in self.containers_by_id.values() if c["ImageID"] == image_id]
        if users:
            raise Conflict(f"unable to delete {image_id} - image is being used by "
                           f"{users[0]['State']} container {users[0]['Id']}")
        del self.images_by_id[image_id]

    def _descendants(self, image_id: str) -> set[str]:
        found: set[str] = set()
        pending = [image_id]
        while pending:
            parent = pending.pop()
            for i in self.images_by_id.values():
                if i["ParentId"] == parent and i["Id"] not in found:
                    found.add(i["Id"])
                    pending.append(i["Id"])
        return found

    def _mounted(self) -> set[str]:
        return {m["Name"] for c in self.containers_by_id.values() for m in c["Mounts"]}

    def _get(self, store: dict[str, dict[str, Any]], key: str, call: str,
             mutation: bool = False) -> dict[str, Any]:
        self._answer(call, key, mutation)
        if key not in store:
            raise Gone(f"No such object: {key}")
        return store[key]

    def _answer(self, call: str, target: str, mutation: bool = False) -> None:
        if self.down:
            raise DockerDown("connection refused (memory engine is down)")
        if mutation:
            self.calls.append((call, target))
        failure = self.failures.get((call, target))
        if failure is not None:
            raise failure


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(moment: datetime | None) -> int:
    """Docker's ``Created``: seconds since 1970, 0 when it has none."""
    return int(moment.timestamp()) if moment else 0
