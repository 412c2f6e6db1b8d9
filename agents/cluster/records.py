"""Compact records of Kubernetes objects: only the fields the planners read.

A list page is parsed as raw JSON and each item is reduced here at once, so a
run over 10,000 Jobs keeps a few hundred bytes per Job instead of a model
object. The manifest is kept (as compact JSON text) only for objects a planner
may delete, since it goes into the report line before the deletion.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from agents.cluster.resources import RESOURCES
from agents.policy import IGNORE_ANNOTATION

_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
OWNERLESS_SINCE = "kubekeeper/ownerless-since"
REQUESTS_PATCHED = "kubekeeper/requests-patched-at"
_FINISHED_PHASES = ("Succeeded", "Failed")
_DELETABLE = ("replicaset", "job", "pod")
_SERVER_SET = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
               "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")
_JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


@dataclass(frozen=True, slots=True)
class Owner:
    kind: str
    name: str
    uid: str
    controller: bool


@dataclass(frozen=True, slots=True)
class Meta:
    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str
    created: datetime | None
    ignored: bool
    owners: tuple[Owner, ...]
    requests_patched: datetime | None = None
    """When kubekeeper last changed its requests (``kubekeeper/requests-patched-at``)."""
    deleting: bool = False
    """It has a ``deletionTimestamp``: the API server is already removing it (a finalizer
    holds it, or ``--cascade=orphan`` is being carried out), so it is not ours to change."""

    @property
    def controller(self) -> Owner | None:
        return next((o for o in self.owners if o.controller), None)


@dataclass(frozen=True, slots=True)
class Container:
    """Which resources a container names, and the values as written
    (``values``: ``("requests.cpu", "100m")`` pairs) for the recommendations."""

    name: str
    init: bool
    requests: tuple[str, ...]
    limits: tuple[str, ...]
    values: tuple[tuple[str, str], ...] = ()
    restart_on_resize: tuple[str, ...] = ()
    """Resources whose ``resizePolicy`` is ``RestartContainer``: resizing them restarts it."""

    def value(self, field: str) -> str | None:
        """``requests.cpu`` → ``"100m"``, or None when unset."""
        return next((v for k, v in self.values if k == field), None)


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    ignored: bool
    terminating: bool


@dataclass(frozen=True, slots=True)
class Workload:
    """A Deployment, StatefulSet or DaemonSet."""

    meta: Meta
    containers: tuple[Container, ...]
    history_limit: int | None
    revision: int | None


@dataclass(frozen=True, slots=True)
class ReplicaSet:
    """``ownerless_since``: when kubekeeper first saw it without an owner (its
    ``kubekeeper/ownerless-since`` annotation). ``changed``: the latest write to
    its metadata or spec (``managedFields``).

    Neither alone dates the orphaning: the garbage collector's removal of the
    ownerReferences bumps no ``managedFields`` time, so an orphan's latest
    write may be its creation. Their later one is never earlier than the
    orphaning once kubekeeper has recorded it, and a human edit since only
    makes the set younger.
    """

    meta: Meta
    containers: tuple[Container, ...]
    replicas: int
    live_replicas: int
    revision: int | None
    ownerless_since: datetime | None
    changed: datetime | None
    manifest: str | None


@dataclass(frozen=True, slots=True)
class Revision:
    """A ControllerRevision: the history of a StatefulSet or DaemonSet."""

    meta: Meta
    revision: int


@dataclass(frozen=True, slots=True)
class Job:
    meta: Meta
    containers: tuple[Container, ...]
    state: str | None
    finished_at: datetime | None
    ttl_set: bool
    manifest: str | None


@dataclass(frozen=True, slots=True)
class CronJob:
    meta: Meta
    containers: tuple[Container, ...]
    successful_limit: int
    failed_limit: int


@dataclass(frozen=True, slots=True)
class Pod:
    meta: Meta
    containers: tuple[Container, ...]
    phase: str
    finished_at: datetime | None
    manifest: str | None
    resize_pending: str | None = None
    """What the kubelet says of a resize it has not applied (``Infeasible: ...``,
    ``Deferred: ...``, a failed one's ``Error: ...``), or None."""

    @property
    def phase_finished(self) -> bool:
        return self.phase in _FINISHED_PHASES


@dataclass(frozen=True, slots=True)
class LimitRange:
    meta: Meta
    limits: str


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _time_or_none(text: Any) -> datetime | None:
    """A time written by hand may be anything: what does not parse as one is no time."""
    try:
        parsed = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def manifest(kind: str, raw: dict) -> str:
    """The object as ``kubectl apply`` recreates it, as compact JSON text.

    List items come without ``apiVersion`` and ``kind``, so they are put back.
    What only the server sets (uid, resourceVersion, timestamps, managedFields,
    status) is left out, since a create carrying a resourceVersion is refused.
    A Job's selector and its template's controller-uid labels name the deleted
    Job's uid, so they go too and the API server generates them anew.
    """
    resource = RESOURCES[kind]
    meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k not in _SERVER_SET}
    body = {k: v for k, v in raw.items() if k not in ("status", "metadata", "apiVersion", "kind")}
    if kind == "job":
        body["spec"] = _without_job_selector(body.get("spec") or {})
    return json.dumps({"apiVersion": resource.api_version, "kind": resource.api_kind,
                       "metadata": meta, **body}, separators=(",", ":"))


def _without_job_selector(spec: dict) -> dict:
    if spec.get("manualSelector"):
        return spec
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    labels = {k: v for k, v in (template_meta.get("labels") or {}).items()
              if k not in _JOB_UID_LABELS}
    template = {**template, "metadata": {**template_meta, "labels": labels}}
    return {**{k: v for k, v in spec.items() if k != "selector"}, "template": template}


def last_change(metadata: dict) -> datetime | None:
    """The latest ``managedFields`` time of a write to anything but the status."""
    times = [parse_time(entry.get("time")) for entry in metadata.get("managedFields") or ()
             if entry.get("subresource") != "status"]
    return max((t for t in times if t), default=None)


def meta_of(kind: str, raw: dict) -> Meta:
    m = raw.get("metadata") or {}
    owners = tuple(Owner(o.get("kind", ""), o.get("name", ""), o.get("uid", ""),
                         bool(o.get("controller"))) for o in m.get("ownerReferences") or ())
    patched = _time_or_none((m.get("annotations") or {}).get(REQUESTS_PATCHED))
    return Meta(kind, m.get("namespace", ""), m.get("name", ""), m.get("uid", ""),
                m.get("resourceVersion", ""), parse_time(m.get("creationTimestamp")),
                is_ignored(m), owners, patched, bool(m.get("deletionTimestamp")))


def is_ignored(metadata: dict) -> bool:
    return (metadata.get("annotations") or {}).get(IGNORE_ANNOTATION) == "true"


def containers_of(pod_spec: dict | None) -> tuple[Container, ...]:
    spec = pod_spec or {}
    return tuple(_container(c, init)
                 for init, key in ((False, "containers"), (True, "initContainers"))
                 for c in spec.get(key) or ())


def _container(raw: dict, init: bool) -> Container:
    resources = raw.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    values = tuple((f"{part}.{k}", str(v)) for part, given in (("requests", requests),
                                                               ("limits", limits))
                   for k, v in sorted(given.items()))
    restart = tuple(sorted(p.get("resourceName", "") for p in raw.get("resizePolicy") or ()
                           if p.get("restartPolicy") == "RestartContainer"))
    return Container(raw.get("name", ""), init, tuple(sorted(requests)), tuple(sorted(limits)),
                     values, restart)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def namespace(raw: dict) -> Namespace:
    m = raw.get("metadata") or {}
    phase = (raw.get("status") or {}).get("phase")
    return Namespace(m.get("name", ""), is_ignored(m), phase == "Terminating")


def workload(kind: str) -> Callable[[dict], Workload]:
    def parse(raw: dict) -> Workload:
        meta = meta_of(kind, raw)
        spec = raw.get("spec") or {}
        annotations = (raw.get("metadata") or {}).get("annotations") or {}
        return Workload(meta, containers_of((spec.get("template") or {}).get("spec")),
                        _int(spec.get("revisionHistoryLimit")),
                        _int(annotations.get(_REVISION_ANNOTATION)))
    return parse


def replicaset(raw: dict, manifests: bool = True) -> ReplicaSet:
    meta = meta_of("replicaset", raw)
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    replicas, live = _int(spec.get("replicas")) or 0, _int(status.get("replicas")) or 0
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    deletable = manifests and not meta.owners and replicas == 0 and live == 0
    return ReplicaSet(meta, containers_of((spec.get("template") or {}).get("spec")), replicas,
                      live, _int(annotations.get(_REVISION_ANNOTATION)),
                      _time_or_none(annotations.get(OWNERLESS_SINCE)),
                      last_change(raw.get("metadata") or {}) if not meta.owners else None,
                      manifest("replicaset", raw) if deletable else None)


def revision(raw: dict) -> Revision:
    return Revision(meta_of("controllerrevision", raw), _int(raw.get("revision")) or 0)


def job(raw: dict, manifests: bool = True) -> Job:
    meta = meta_of("job", raw)
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    state, finished_at = _job_finish(status)
    ttl_set = spec.get("ttlSecondsAfterFinished") is not None
    containers = containers_of((spec.get("template") or {}).get("spec"))
    keep_manifest = manifests and state is not None and not ttl_set
    return Job(meta, containers, state, finished_at, ttl_set,
               manifest("job", raw) if keep_manifest else None)


def _job_finish(status: dict) -> tuple[str | None, datetime | None]:
    """Complete or Failed, and when: completionTime, else the condition's transition time."""
    for condition in status.get("conditions") or ():
        kind = condition.get("type")
        if kind in ("Complete", "Failed") and condition.get("status") == "True":
            when = status.get("completionTime") if kind == "Complete" else None
            return kind, parse_time(when or condition.get("lastTransitionTime"))
    return None, None


def cronjob(raw: dict) -> CronJob:
    spec = raw.get("spec") or {}
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
    successful = _int(spec.get("successfulJobsHistoryLimit"))
    failed = _int(spec.get("failedJobsHistoryLimit"))
    return CronJob(meta_of("cronjob", raw), containers_of(template.get("spec")),
                   3 if successful is None else successful, 1 if failed is None else failed)


def pod(raw: dict, manifests: bool = True) -> Pod:
    meta = meta_of("pod", raw)
    status = raw.get("status") or {}
    phase = status.get("phase") or ""
    finished = phase in _FINISHED_PHASES
    return Pod(meta, containers_of(raw.get("spec")), phase,
               _pod_finish(status) if finished else None,
               manifest("pod", raw) if manifests and finished and not meta.owners else None,
               _resize_pending(status))


def _resize_pending(status: dict) -> str | None:
    """The kubelet's own words on a resize it has not applied: a true PodResizePending
    (Deferred or Infeasible), or a PodResizeInProgress whose reason is Error."""
    for condition in status.get("conditions") or ():
        kind, reason = condition.get("type"), condition.get("reason") or ""
        pending = kind == "PodResizePending" or (kind == "PodResizeInProgress"
                                                 and reason == "Error")
        if pending and condition.get("status") == "True":
            return f"{kind} {reason}: {condition.get('message') or '(no message)'}"
    return None


def _pod_finish(status: dict) -> datetime | None:
    """When the pod stopped: its last container's finishedAt or its last condition change.

    An evicted pod may have no terminated container; its Ready condition still
    says when it stopped. Never its start or creation time: a pod that ran for a
    month and stopped a minute ago is a minute old. None when nothing says.
    """
    ends = [parse_time(terminated.get("finishedAt"))
            for key in ("containerStatuses", "initContainerStatuses")
            for s in status.get(key) or ()
            if (terminated := (s.get("state") or {}).get("terminated"))]
    ends += [parse_time(c.get("lastTransitionTime")) for c in status.get("conditions") or ()]
    return max((e for e in ends if e), default=None)


def limitrange(raw: dict) -> LimitRange:
    limits = (raw.get("spec") or {}).get("limits") or []
    return LimitRange(meta_of("limitrange", raw), json.dumps(limits, separators=(",", ":")))


def parser(kind: str, manifests: bool) -> Callable[[dict], Any]:
    """The parser of a kind's raw objects; without ``manifests`` no record keeps one.

    A run that cannot delete never reports a manifest, and encoding one per
    finished Job or pod was a fifth of the requests task's listing CPU.
    """
    parse = PARSERS[kind]
    return parse if manifests or kind not in _DELETABLE else partial(parse, manifests=False)


PARSERS: dict[str, Callable[[dict], Any]] = {
    "namespace": namespace,
    "deployment": workload("deployment"),
    "statefulset": workload("statefulset"),
    "daemonset": workload("daemonset"),
    "replicaset": replicaset,
    "controllerrevision": revision,
    "job": job,
    "cronjob": cronjob,
    "pod": pod,
    "limitrange": limitrange,
}
