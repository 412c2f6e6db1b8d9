"""``kubekeeper restore``: re-create deleted objects from the recycle bin or the report.

The sources are read here, the decisions are ``restore_plan``'s, and the
creates are made here, each in two steps: a server-side dry run (which also
says whether the object exists again: then it is ``skipped``, never
overwritten), then, after its flushed ``action.intent`` line, the create.
Every restore is one report line in the run report's format (agent
``cluster``, task ``restore``, action ``create``), so ``kubekeeper report``
reads it like any other run.

Restore runs with the caller's own kubeconfig, never a pod's service
account: the CronJobs' accounts may delete, and must not be able to create.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from loguru import logger

from agents.actions import Action, Outcome, Result
from agents.cluster import recycle_bin, restore_plan
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.connection import SERVICE, connect
from agents.cluster.resources import RESOURCES
from agents.cluster.restore_plan import KINDS, Entry, Selection
from agents.errors import Unreachable, exit_code
from agents.policy import Policy
from agents.report import Reporter, choose_format
from agents.report_lines import Counts, opened, records

_DOCKER_KINDS = frozenset({"container", "image", "volume"})


@dataclass(frozen=True)
class RestoreOptions:
    """``sources`` empty means the recycle bin; otherwise report files (``-`` is stdin)."""

    selection: Selection
    sources: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    log_format: str = "auto"
    dry_run: bool = False


def run_restore_cli(policy: Policy, options: RestoreOptions) -> int:
    api = connect(options.kubeconfig, options.context, policy.cluster, in_cluster=False)
    summary = run_restore(api, policy, options, fmt=choose_format(options.log_format,
                                                                  sys.stdout))
    return exit_code([summary])


def run_restore(port: ClusterPort, policy: Policy, options: RestoreOptions, *,
                fmt: str = "json", stream: IO[str] | None = None) -> dict[str, Any]:
    """One restore; returns its summary line."""
    reporter = Reporter("cluster", "restore", options.dry_run, stream=stream, fmt=fmt)
    try:
        entries, docker = _selected(port, policy, options)
    except ApiError as err:
        if err.status == 0:
            raise Unreachable(SERVICE, port.server, err.message) from err
        return reporter.summary(error=f"cannot read the recycle bin: {err}")
    if docker:
        logger.warning("the selection holds Docker objects ({}): they cannot be restored, "
                       "since Docker removes them for good; only Kubernetes objects are",
                       ", ".join(f"{n} {k}" for k, n in sorted(docker.items())))
    plan = restore_plan.plan(entries, owners_found(port, entries),
                             redact=policy.cluster.redactManifests)
    for outcome in plan.refused:
        reporter.action(outcome)
    for action in plan.creates:
        _restore(port, reporter, action, options.dry_run)
    return reporter.summary(error=None if entries or docker else "nothing in the selection")


def _selected(port: ClusterPort, policy: Policy, options: RestoreOptions
              ) -> tuple[list[Entry], Counter[str]]:
    """The selected entries, and the Docker deletions the selection holds, by kind."""
    if options.sources:
        return from_report(opened(options.sources), options.selection)
    if (options.selection.kind or "").lower() in _DOCKER_KINDS:
        logger.warning("Docker objects cannot be restored (Docker removes them for good); "
                       "the recycle bin holds Kubernetes objects only")
    return from_bin(port, policy.cluster.recycleBin.namespace, options.selection), Counter()


def from_bin(port: ClusterPort, namespace: str, selection: Selection) -> list[Entry]:
    """The selected manifests of the recycle bin Secrets in ``namespace``."""
    selector = recycle_bin.SELECTOR + (f",kubekeeper/run={selection.run}"
                                       if selection.run else "")
    entries = []
    for secret in port.list_all(RESOURCES["secret"], namespace=namespace,
                                label_selector=selector):
        meta = secret.get("metadata") or {}
        run = (meta.get("labels") or {}).get("kubekeeper/run", "")
        kept = _when(meta.get("creationTimestamp"))
        chunk = _chunk((meta.get("annotations") or {}).get(recycle_bin.CHUNK))
        for key, encoded in (secret.get("data") or {}).items():
            where = f"{namespace}/{meta.get('name')}/{key}"
            entry = _entry(_decoded(encoded), run, kept, where, uid=key.rsplit(".", 1)[-1],
                           chunk=chunk)
            if entry is None:
                logger.warning("recycle bin entry {} is not a manifest; left alone", where)
            elif selection.admits(entry.kind, entry.namespace, entry.name, run, kept):
                entries.append(entry)
    return entries


def _when(text: Any) -> datetime:
    """A line's or Secret's time; one that does not parse sorts first (the epoch)."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    return moment if moment and moment.tzinfo else datetime.fromtimestamp(0, UTC)


def _chunk(text: Any) -> int:
    """A bin's chunk number; a bin written before chunks were numbered counts as 0."""
    return int(text) if isinstance(text, str) and text.isdecimal() and len(text) < 10 else 0


def _decoded(encoded: str) -> dict[str, Any] | None:
    try:
        manifest = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _entry(manifest: dict[str, Any] | None, run: str, deleted: datetime, source: str,
           uid: str = "", line: dict[str, Any] | None = None, chunk: int = 0
           ) -> Entry | None:
    meta = (manifest or {}).get("metadata") or {}
    line = line or {}
    kind = KINDS.get(str((manifest or {}).get("kind")), line.get("kind") or "")
    if not kind:
        return None
    return Entry(manifest, run, deleted, source, kind,
                 meta.get("namespace") or line.get("namespace") or "",
                 meta.get("name") or line.get("name") or "", uid, chunk)


def from_report(lines: Iterable[str], selection: Selection
                ) -> tuple[list[Entry], Counter[str]]:
    """The selected deletions done in the report lines, and the Docker ones by kind.

    A deletion's manifest is on its intent line (write-ahead); only the intents
    of selected objects wait for their outcome, so memory grows with the
    selection, not the input.
    """
    counts, ahead = Counts(), {}
    entries: list[Entry] = []
    docker: Counter[str] = Counter()
    for line in records(lines, counts):
        if line.get("action") != "delete" or line.get("task") == "recycle-bin":
            continue
        deleted = _when(line.get("ts"))
        kind, run = str(line.get("kind")), str(line.get("run"))
        if not selection.admits(kind, line.get("namespace") or "", line.get("name") or "",
                                run, deleted):
            continue
        if line["event"] == "action.intent" and line.get("agent") == "cluster":
            ahead[(run, line.get("op"))] = line.get("manifest")
        elif line["event"] == "action" and line.get("result") == "done":
            if line.get("agent") == "node":
                docker[kind] += 1
                continue
            manifest = line.get("manifest") or ahead.pop((run, line.get("op")), None)
            entry = _entry(manifest, run, deleted, "the report",
                           str(line.get("id") or ""), line)
            if entry:
                entries.append(entry)
    if counts.torn or counts.foreign:
        logger.info("{} torn and {} foreign lines skipped", counts.torn, counts.foreign)
    return entries, docker


def owners_found(port: ClusterPort, entries: Iterable[Entry]) -> dict[str, bool]:
    """By uid, whether each named owner still exists (same name and uid); an owner of a
    kind kubekeeper does not know, or whose read failed, is left out: not checked."""
    found: dict[str, bool] = {}
    for kind, namespace, name, uid in restore_plan.owners(entries):
        resource = RESOURCES.get(KINDS.get(kind, ""))
        if resource is None:
            continue
        try:
            owner = port.get(resource, namespace, name)
        except ApiError as err:
            if err.status == 404:
                found[uid] = False
            else:
                logger.warning("owner {} {}/{} not checked ({}): its reference is dropped",
                               kind, namespace, name, err)
            continue
        found[uid] = (owner.get("metadata") or {}).get("uid") == uid
    return found


def _restore(port: ClusterPort, reporter: Reporter, action: Action, dry_run: bool) -> None:
    """Dry run, then (after the intent line) the create; an existing object is skipped."""
    resource, body = RESOURCES[action.kind], json.loads(action.sealed or "{}")
    namespace = action.namespace or ""
    try:
        port.create(resource, namespace, body, dry_run=True)
    except ApiError as err:
        reporter.action(_refused(action, err))
        return
    if dry_run:
        reporter.action(Outcome(action, Result.PLANNED, details={
            "verdict": "accepted by the API server (server-side dry run)"}))
        return
    op = reporter.intent(action)
    try:
        port.create(resource, namespace, body)
    except ApiError as err:
        reporter.action(_refused(action, err), op=op)
        return
    reporter.action(Outcome(action, Result.DONE), op=op)


def _refused(action: Action, err: ApiError) -> Outcome:
    if err.status == 409:
        return Outcome(action, Result.SKIPPED, error="already exists: not overwritten")
    return Outcome(action, Result.FAILED, error=str(err))
