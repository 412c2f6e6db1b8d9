"""The usage record on the cluster: ConfigMaps ``kubekeeper-usage-<n>`` in one namespace.

Why ConfigMaps: the record must outlive each CronJob pod, and the API server
is the one store every run can reach with the account it already has.

- **Bounded**: an entry is at most about 1.5 KB (``usage``), and each
  ConfigMap holds at most ``SHARD_BYTES`` (half the API server's 1 MiB
  limit). Entries go to shard ``sha1(key) % shards``; when a shard would
  overflow, the shard count doubles and every shard is written anew. It never
  shrinks, so no run needs to delete a ConfigMap: the account may only list,
  create and patch them.
- **Page-size discipline**: the shards are listed a few at a time
  (``_PAGE_BYTES`` of record per page at most), never all in one answer.
- **Races**: each patch carries the listed ``resourceVersion``; a shard that
  changed (another run wrote it) is not overwritten, and the save says so.
  Reading merges every shard found, the newer entry winning, so a run that
  died half-way through a reshard loses nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.resources import RESOURCES
from agents.cluster.usage import ContainerUsage, Key, dumps, key_text, loads

SHARD_BYTES = 512 * 1024
_PAGE_BYTES = 8 * 1024 * 1024
LABEL = "kubekeeper/usage-record"
SELECTOR = f"{LABEL}=v1"
DATA_KEY = "usage.json"
SHARDS = "kubekeeper/shards"
_CONFIGMAP = RESOURCES["configmap"]


@dataclass(frozen=True)
class Loaded:
    """What was read: the entries, and each shard's name → resourceVersion."""

    entries: dict[Key, ContainerUsage]
    versions: Mapping[str, str]
    shards: int


def shard_name(index: int) -> str:
    return f"kubekeeper-usage-{index}"


def load(port: ClusterPort, namespace: str, page_size: int) -> Loaded:
    """Every shard's entries; raises ApiError when the shards cannot be listed."""
    entries: dict[Key, ContainerUsage] = {}
    versions: dict[str, str] = {}
    shards = 1
    page = max(1, min(page_size, _PAGE_BYTES // SHARD_BYTES))
    for raw in port.list_all(_CONFIGMAP, namespace=namespace, label_selector=SELECTOR,
                             page_size=page):
        meta = raw.get("metadata") or {}
        versions[meta.get("name", "")] = meta.get("resourceVersion", "")
        shards = max(shards, _int((meta.get("annotations") or {}).get(SHARDS)))
        try:
            found = loads((raw.get("data") or {}).get(DATA_KEY) or "{}")
        except ValueError:
            continue
        for key, entry in found.items():
            if key not in entries or entry.last > entries[key].last:
                entries[key] = entry
    return Loaded(entries, versions, shards)


def layout(entries: Mapping[Key, ContainerUsage], shards: int) -> tuple[int, list[str]]:
    """The shard count (at least ``shards``, a power of two) and each shard's text."""
    count = 1 << max(0, shards - 1).bit_length()
    while True:
        texts = [dumps(part) for part in _split(entries, count)]
        if all(len(t.encode()) <= SHARD_BYTES for t in texts):
            return count, texts
        count *= 2


def save(port: ClusterPort, namespace: str, entries: Mapping[Key, ContainerUsage],
         loaded: Loaded) -> list[str]:
    """Write every shard; returns what could not be written (empty when all was)."""
    count, texts = layout(entries, loaded.shards)
    problems = []
    for index, text in enumerate(texts):
        name = shard_name(index)
        try:
            _write(port, namespace, name, text, count, loaded.versions.get(name))
        except ApiError as err:
            why = "changed since it was read" if err.status == 409 else str(err)
            problems.append(f"usage record {namespace}/{name} not written: {why}")
    return problems


def _write(port: ClusterPort, namespace: str, name: str, text: str, count: int,
           version: str | None) -> None:
    meta = {"name": name, "labels": {LABEL: "v1", "app.kubernetes.io/managed-by": "kubekeeper"},
            "annotations": {SHARDS: str(count)}}
    if version is None:
        port.create(_CONFIGMAP, namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": meta, "data": {DATA_KEY: text}})
        return
    port.patch(_CONFIGMAP, namespace, name, {"metadata": {**meta, "resourceVersion": version},
                                             "data": {DATA_KEY: text}})


def _split(entries: Mapping[Key, ContainerUsage], count: int
           ) -> list[dict[Key, ContainerUsage]]:
    parts: list[dict[Key, ContainerUsage]] = [{} for _ in range(count)]
    for key, entry in entries.items():
        digest = hashlib.sha1(key_text(key).encode(), usedforsecurity=False).digest()
        parts[int.from_bytes(digest[:4], "big") % count][key] = entry
    return parts


def _int(text: object) -> int:
    try:
        return max(1, int(str(text)))
    except ValueError:
        return 1

