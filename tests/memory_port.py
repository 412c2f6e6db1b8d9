"""An in-memory ``ClusterPort``: the fake the unit tests use instead of an API server.

It keeps raw objects, pages lists with ``continue`` tokens, enforces the
``resourceVersion`` and uid preconditions the real server enforces (409), answers
404 for missing objects, ignores writes sent with dry-run, and counts requests the
way ``KubeApi`` does. ``failures`` injects an HTTP status for one
(verb, kind, name); the name ``*`` matches any object of that kind.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from agents.cluster.api import ApiError, RequestCounter
from agents.cluster.halt import Halt
from agents.cluster.resources import Resource


class MemoryPort:
    server = "memory://"

    def __init__(self, *objects: dict):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.counter = RequestCounter()
        self.failures: dict[tuple[str, str, str], int] = {}
        self.writes: list[tuple[str, str, str]] = []
        """(verb, kind, name) of every write that was not a dry run."""
        self._versions = itertools.count(1000)
        self.halt = Halt()
        self.metrics: list[dict] | None = None
        """PodMetrics items the metrics API serves; None: no metrics API (a list is 404)."""
        for obj in objects:
            self.add(obj)

    def add(self, obj: dict) -> dict:
        """Store an object as the server would (uid, resourceVersion, namespace filled in)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        kind = obj["kind"].lower()
        meta.setdefault("uid", f"uid-{kind}-{meta.get('namespace', '')}-{meta['name']}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(kind, meta.get("namespace", ""), meta["name"])] = obj
        return obj

    def find(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.objects.get((kind, namespace, name))

    def list_all(self, resource: Resource, field_selector: str | None = None,
                 page_size: int = 500, namespace: str | None = None,
                 label_selector: str | None = None) -> Iterator[dict]:
        if resource.kind == "podmetrics":
            yield from self._pod_metrics(resource, page_size)
            return
        items = [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                 if kind == resource.kind and _selected(o, field_selector)
                 and namespace in (None, ns) and _labelled(o, label_selector)]
        for start in range(0, max(len(items), 1), page_size):
            self._count("list", resource, "")
            yield from items[start:start + page_size]

    def _pod_metrics(self, resource: Resource, page_size: int) -> Iterator[dict]:
        if self.metrics is None:
            self._count("list", resource, "")
            raise ApiError(404, "the server could not find the requested resource", "list",
                           resource, None)
        for start in range(0, max(len(self.metrics), 1), page_size):
            self._count("list", resource, "")
            yield from copy.deepcopy(self.metrics[start:start + page_size])

    def get(self, resource: Resource, namespace: str, name: str) -> dict:
        self._count("get", resource, name)
        return copy.deepcopy(self._existing(resource, namespace, name, "get"))

    def create(self, resource: Resource, namespace: str, body: dict,
               dry_run: bool = False) -> dict:
        meta = body.get("metadata", {})
        name = meta.get("name") or f"{meta.get('generateName', 'x-')}{next(self._versions)}"
        self._count("create", resource, name)
        if self.find(resource.kind, namespace, name):
            raise ApiError(409, f"{resource.plural} {name!r} already exists", "create",
                           resource, namespace)
        obj = {**body, "kind": resource.api_kind,
               "metadata": {**meta, "name": name, "namespace": namespace}}
        return obj if dry_run else self._write("create", resource, obj)

    def patch(self, resource: Resource, namespace: str, name: str, body: dict,
              patch_type: str = "merge", dry_run: bool = False) -> dict:
        self._count("patch", resource, name)
        current = self._existing(resource, namespace, name, "patch")
        wanted = body.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "the object has been modified", "patch", resource, namespace)
        merged = _merge(copy.deepcopy(current), body, patch_type == "strategic")
        return merged if dry_run else self._write("patch", resource, merged)

    def delete(self, resource: Resource, namespace: str, name: str,
               preconditions: Mapping[str, str], dry_run: bool = False) -> dict:
        self._count("delete", resource, name)
        meta = self._existing(resource, namespace, name, "delete")["metadata"]
        if any(meta.get(k) != v for k, v in preconditions.items()):
            raise ApiError(409, "Precondition failed", "delete", resource, namespace)
        if not dry_run:
            self.writes.append(("delete", resource.kind, name))
            del self.objects[(resource.kind, namespace, name)]
        return {}

    def _count(self, verb: str, resource: Resource, name: str) -> None:
        self.counter.add(f"{verb} {resource.label}", retry=False)
        status = self.failures.get((verb, resource.kind, name),
                                   self.failures.get((verb, resource.kind, "*")))
        if status is not None:
            raise ApiError(status, "injected by the test", verb, resource, None)

    def _existing(self, resource: Resource, namespace: str, name: str, verb: str) -> dict:
        found = self.find(resource.kind, namespace, name)
        if found is None:
            raise ApiError(404, f"{resource.plural} {name!r} not found", verb, resource,
                           namespace)
        return found

    def _write(self, verb: str, resource: Resource, obj: dict) -> dict:
        self.writes.append((verb, resource.kind, obj["metadata"]["name"]))
        return self.add(obj)


def _selected(obj: dict, field_selector: str | None) -> bool:
    """The two selector forms the inventory sends: ``a.b=v`` and ``a.b!=v`` conjunctions."""
    for term in (field_selector or "").split(","):
        if not term:
            continue
        negated = "!=" in term
        path, value = term.split("!=" if negated else "=", 1)
        actual: Any = obj
        for part in path.split("."):
            actual = (actual or {}).get(part)
        if (actual == value) == negated:
            return False
    return True


def _labelled(obj: dict, label_selector: str | None) -> bool:
    """``k=v`` conjunctions, the only label selector form the tasks send."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, _, v in
               (term.partition("=") for term in (label_selector or "").split(",") if term))


def _merge(target: Any, patch: Any, strategic: bool) -> Any:
    """JSON merge patch; ``strategic`` also merges lists of named items by name."""
    if isinstance(patch, list) and strategic and isinstance(target, list):
        by_name = {item.get("name"): item for item in target if isinstance(item, dict)}
        for item in patch:
            if item.get("name") in by_name:
                _merge(by_name[item["name"]], item, strategic)
            else:
                target.append(item)
        return target
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value, strategic)
    return target
