"""Which deleted objects to re-create, and as what: pure, on plain data.

A restored object must stay restored and must not act on its own:

- the fields only the server sets (uid, resourceVersion, timestamps,
  managedFields, status) go, or the create is refused;
- an ownerReference whose owner no longer exists (by uid) goes, or the
  garbage collector deletes the object again at once; so does one whose owner
  could not be checked (a kind kubekeeper does not know): an object without
  its owner is safe, one with a dangling reference is not;
- a Job is created suspended (``spec.suspend: true``), without the selector
  and ``controller-uid`` labels generated for the deleted Job (the API server
  refuses them), so it never runs again unless someone resumes it;
- ``kubekeeper/ownerless-since`` goes, so a restored ReplicaSet's age counts
  from now and the next revisions run does not delete it again;
- a Pod cannot be re-created without running again, so it is not;
- a manifest redacted in the report cannot be re-created as it was, so it is
  refused, naming the recycle bin, which keeps the complete one.

When the selection holds the same object from several runs, the latest
deletion wins; within one run's bin, the later chunk (a deletion planned
again after a 409 keeps the version it deleted in a chunk of its own).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Outcome, Result, Verb
from agents.cluster.redaction import redact as redacted
from agents.cluster.resources import RESOURCES
from agents.report import RawJSON, rfc3339

REDACTED = "redacted:sha256:"
_SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
               "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
_JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
_OWNERLESS_SINCE = "kubekeeper/ownerless-since"
KINDS = {r.api_kind: r.kind for r in RESOURCES.values()}
"""A manifest's ``kind`` (``Job``) → the report's kind (``job``)."""


@dataclass(frozen=True)
class Entry:
    """One deleted object's manifest, as kept, and where it was kept."""

    manifest: dict[str, Any] | None
    run: str
    deleted: datetime
    source: str
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    chunk: int = 0
    """The recycle bin chunk's number (``kubekeeper/chunk``): breaks a tie on ``deleted``."""


@dataclass(frozen=True)
class Selection:
    """``--run --kind --namespace --name --since``; None admits everything."""

    run: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    since: datetime | None = None

    def admits(self, kind: str, namespace: str, name: str, run: str, deleted: datetime
               ) -> bool:
        return ((self.run is None or run == self.run)
                and (self.kind is None or kind == self.kind.lower())
                and (self.namespace is None or namespace == self.namespace)
                and (self.name is None or name == self.name)
                and (self.since is None or deleted >= self.since))


@dataclass(frozen=True)
class RestorePlan:
    """Creates to attempt (each action's ``sealed`` is the body), and refusals."""

    creates: list[Action] = field(default_factory=list)
    refused: list[Outcome] = field(default_factory=list)


def owners(entries: Iterable[Entry]) -> set[tuple[str, str, str, str]]:
    """(kind, namespace, name, uid) of every owner the entries name: the caller checks
    which still exist, since only they may stay referenced."""
    found = set()
    for entry in entries:
        meta = (entry.manifest or {}).get("metadata") or {}
        for ref in meta.get("ownerReferences") or ():
            found.add((str(ref.get("kind")), entry.namespace, str(ref.get("name")),
                       str(ref.get("uid"))))
    return found


def plan(entries: Iterable[Entry], owners_found: Mapping[str, bool], redact: bool = True
         ) -> RestorePlan:
    """The creates for ``entries`` (already selected). ``owners_found``: by owner uid,
    whether it still exists; an owner not in it could not be checked. ``redact``: the
    lines show a redacted manifest."""
    latest: dict[tuple[str, str, str], Entry] = {}
    for entry in entries:
        key = (entry.kind, entry.namespace, entry.name)
        if key not in latest or _order(entry) > _order(latest[key]):
            latest[key] = entry
    result = RestorePlan()
    for entry in sorted(latest.values(), key=lambda e: (e.kind, e.namespace, e.name)):
        action = _action(entry, owners_found, redact)
        refusal = _refusal(entry)
        if refusal:
            result.refused.append(Outcome(action, Result.FAILED, error=refusal))
        elif entry.kind == "pod":
            result.refused.append(Outcome(action, Result.SKIPPED, error=(
                "a Pod cannot be re-created without running again; not restored "
                f"(its manifest is in {entry.source})")))
        else:
            result.creates.append(action)
    return result


def _order(entry: Entry) -> tuple[datetime, int]:
    return entry.deleted, entry.chunk


def _refusal(entry: Entry) -> str | None:
    if entry.manifest is None:
        return f"no manifest for it in {entry.source} (its action.intent line was not read)"
    if entry.kind not in RESOURCES:
        return f"kind {entry.kind!r} is not one kubekeeper can re-create"
    if _redacted(entry.manifest):
        return (f"the manifest in {entry.source} is redacted (values start with {REDACTED}; "
                "cluster.redactManifests is true), so it cannot be re-created as it was: "
                f"restore it from the recycle bin (kubekeeper restore --from-bin --run "
                f"{entry.run})")
    return None


def _redacted(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(REDACTED)
    if isinstance(value, dict):
        return any(_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(_redacted(v) for v in value)
    return False


def _action(entry: Entry, owners_found: Mapping[str, bool], redact: bool) -> Action:
    body, notes = recreatable(entry.kind, entry.manifest or {}, owners_found)
    shown = _shown(body, redact) if entry.manifest and not _redacted(entry.manifest) else None
    details: dict[str, Any] = {"restored_from": entry.source}
    if shown is not None:
        details["manifest"] = shown
    return Action(kind=entry.kind, name=entry.name, namespace=entry.namespace or None,
                  id=entry.uid, verb=Verb.CREATE, rule=f"restore from {run_time(entry)}",
                  why="; ".join((f"deleted by run {entry.run}", *notes)),
                  details=MappingProxyType(details), sealed=json.dumps(body, separators=(",", ":")))


def _shown(body: dict[str, Any], redact: bool) -> RawJSON:
    return RawJSON(json.dumps(redacted(body) if redact else body, separators=(",", ":")))


def run_time(entry: Entry) -> str:
    """The deleting run's start (from its id, ``20261202T011323Z-3fa2c1``), else the deletion."""
    try:
        started = datetime.strptime(entry.run[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        started = entry.deleted
    return rfc3339(started)


def recreatable(kind: str, manifest: dict[str, Any], owners_found: Mapping[str, bool]
                ) -> tuple[dict[str, Any], list[str]]:
    """The create body for a kept manifest, and what was changed: said in the line's
    ``reason``, so the text view shows it too."""
    notes: list[str] = []
    meta = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in _SERVER_SET}
    refs = meta.pop("ownerReferences", None) or []
    kept = [r for r in refs if owners_found.get(str(r.get("uid")))]
    notes += [f"dropped ownerReference to {r.get('kind')} {r.get('name')} "
              f"({'no longer exists' if str(r.get('uid')) in owners_found else 'not checked'})"
              for r in refs if r not in kept]
    if kept:
        meta["ownerReferences"] = kept
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != _OWNERLESS_SINCE}
    if "annotations" in meta:
        meta["annotations"] = annotations
    body = {k: v for k, v in manifest.items() if k not in ("status", "metadata")}
    body["metadata"] = meta
    if kind == "job":
        body, notes = _suspended(body), [*notes, "created suspended (spec.suspend: true) so "
                                         "it does not run again; the generated selector and "
                                         "controller-uid labels were dropped"]
    return body, notes


def _suspended(job: dict[str, Any]) -> dict[str, Any]:
    spec = dict(job.get("spec") or {})
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
        template = dict(spec.get("template") or {})
        template["metadata"] = _without_uid_labels(template.get("metadata") or {})
        spec["template"] = template
    spec["suspend"] = True
    return {**job, "metadata": _without_uid_labels(job["metadata"]), "spec": spec}


def _without_uid_labels(meta: dict[str, Any]) -> dict[str, Any]:
    if "labels" not in meta:
        return meta
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _JOB_UID_LABELS}
    return {**meta, "labels": labels}
