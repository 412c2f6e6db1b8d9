"""The recycle bin: complete manifests of what a run deletes, kept as Secrets.

The report keeps redacted manifests (``redaction.py``), so recreating a
deleted Job with its real ``env`` needs the complete object somewhere that
only the cluster's RBAC lets people read: Secrets in ``recycleBin.namespace``
(``kubekeeper-system``), written before the deletions they cover.

- One Secret per run and task, split into chunks of at most ``CHUNK_BYTES``
  of manifests, well under the API server's 1 MiB object limit. Each key is
  ``<kind>.<namespace>.<name>.<uid prefix>``; the report line of each deletion
  says where its manifest is (``recycle_bin: <secret>/<key>``).
- A chunk that cannot be written leaves its deletions undone (``failed``):
  no deletion goes ahead without its complete manifest kept.
- Each Secret carries its expiry (annotation ``kubekeeper/expires``); every
  later run of a deleting task plans the deletion of expired ones.
- A deletion planned again after a 409 keeps the new version in a chunk of
  its own before the DELETE is sent again. Chunks are numbered in the order
  they were written (annotation ``kubekeeper/chunk``), so when one run's bin
  holds an object twice, ``restore`` takes the later chunk: the version that
  was deleted. Task accounts may create and delete Secrets, never patch them,
  so the older entry stays.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from agents.actions import Action, Verb
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.records import meta_of, parse_time
from agents.cluster.resources import RESOURCES
from agents.report import rfc3339
from agents.units import format_age

CHUNK_BYTES = 512 * 1024
COMPONENT = "recycle-bin"
SELECTOR = f"app.kubernetes.io/managed-by=kubekeeper,app.kubernetes.io/component={COMPONENT}"
EXPIRES = "kubekeeper/expires"
CHUNK = "kubekeeper/chunk"
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")


def entry_key(action: Action) -> str:
    """A Secret data key naming the object (allowed characters only, at most 253)."""
    raw = f"{action.kind}.{action.namespace or '-'}.{action.name}.{action.id[:8]}"
    return _KEY_CHARS.sub("_", raw)[:253]


def chunks(actions: Sequence[Action], limit: int = CHUNK_BYTES) -> list[list[Action]]:
    """Consecutive groups whose manifests add up to at most ``limit`` bytes (a
    manifest bigger than that gets a chunk of its own)."""
    groups: list[list[Action]] = []
    size = limit + 1
    for action in actions:
        length = len(action.sealed or "")
        if size + length > limit:
            groups.append([])
            size = 0
        groups[-1].append(action)
        size += length
    return groups


def secret_body(name: str, run_id: str, task: str, actions: Iterable[Action],
                expires: datetime, number: int = 0) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "kubekeeper",
            "app.kubernetes.io/component": COMPONENT,
            "kubekeeper/run": run_id[:63], "kubekeeper/task": task},
            "annotations": {EXPIRES: rfc3339(expires), CHUNK: str(number)}},
        "stringData": {entry_key(a): a.sealed or "" for a in actions},
    }


class RecycleBin:
    """Writes one run's bins; the executor calls it before any deletion starts."""

    def __init__(self, port: ClusterPort, namespace: str, keep_for: timedelta, run_id: str,
                 now: datetime):
        self._port, self._namespace = port, namespace
        self._run_id, self._expires = run_id, now + keep_for
        self._written: Counter[str] = Counter()
        self._lock = threading.Lock()

    def keep(self, task: str, actions: Sequence[Action]
             ) -> tuple[dict[int, str], dict[int, str]]:
        """Store the sealed manifests; returns (where each is, why each is not), by index.

        Safe across threads: a re-planned deletion's call gets the next chunk number.
        """
        where: dict[int, str] = {}
        missing: dict[int, str] = {}
        position = {id(a): i for i, a in enumerate(actions)}
        for group in chunks(actions):
            with self._lock:
                number = self._written[task]
                self._written[task] += 1
            name = _KEY_CHARS.sub("-", f"kubekeeper-bin-{self._run_id}-{task}-{number}").lower()
            body = secret_body(name, self._run_id, task, group, self._expires, number)
            try:
                self._port.create(RESOURCES["secret"], self._namespace, body)
            except ApiError as err:
                for action in group:
                    missing[position[id(action)]] = f"recycle bin not written: {err}"
                continue
            for action in group:
                where[position[id(action)]] = f"{self._namespace}/{name}/{entry_key(action)}"
        return where, missing


def expired(secrets: Iterable[dict], now: datetime) -> list[Action]:
    """Deletions of the bins past their expiry; a bin without a readable expiry is kept."""
    actions = []
    for raw in secrets:
        meta = meta_of("secret", raw)
        annotations = (raw.get("metadata") or {}).get("annotations") or {}
        try:
            expires = parse_time(annotations.get(EXPIRES))
        except ValueError:
            expires = None
        if expires is None or expires > now:
            continue
        actions.append(Action(
            kind="secret", name=meta.name, namespace=meta.namespace, id=meta.uid,
            verb=Verb.DELETE, rule="cluster.recycleBin.keepFor",
            why=f"recycle bin expired {format_age(now - expires)} ago",
            details={"preconditions": {"uid": meta.uid,
                                       "resourceVersion": meta.resource_version}}))
    return actions
