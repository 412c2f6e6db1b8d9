"""The requests task: containers without the requests (or limits) the policy requires.

Policy ``cluster.resourceRequests``:

- ``require``: requests every container and init container must set. A limit
  without a request counts as set, because the API server copies the limit
  into the missing request.
- ``requireLimits``: limits every container must set; reported, never filled in.
- Findings are reported against the top-level owner, never per pod: Deployments,
  StatefulSets, DaemonSets and CronJobs (their job template) are always
  checked; Jobs, ReplicaSets and Pods only when no controller owns them.
  Finished bare Jobs and pods are not checked: they start no more containers.
- ``action: report`` reports; ``limitrange`` also keeps a LimitRange
  ``kubekeeper-defaults`` in every namespace in scope whose Container
  ``defaultRequest`` holds the defaults of the required resources (only that
  object is created or updated; new pods get the defaults, nothing restarts);
  ``patch`` writes the defaults for the missing requests into the pod template
  of Deployments, StatefulSets, DaemonSets (this causes a rollout) and CronJobs.
  Bare Jobs, ReplicaSets and Pods cannot be patched (their pod specs are
  immutable), so they are reported.

With usage measured (``inventory.measured``; see ``usage_observe``), a
required CPU or memory request is also compared with its recommendation
(``request_changes``): a line whenever they differ by more than
``recommend.minChange``, carrying the evidence, and while a container's usage
history is shorter than ``recommend.minHistory``, a line saying how much there
is; ``patch`` writes the
recommendations (a change of requests already set at most once per
``recommend.minInterval``, recorded in ``kubekeeper/requests-patched-at`` on
the workload), never past a limit; ``resize`` resizes running pods in place
(``plan_resize``). Without a source, nothing here changes.

Two planners: ``findings`` reads the workloads, ``limitranges`` only the
LimitRanges, so a requests run writes those while it still lists the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Verb
from agents.cluster import plan_resize
from agents.cluster.inventory import LIMITRANGE_NAME, Inventory
from agents.cluster.owners import owners
from agents.cluster.planning import act, guarded, rules_for
from agents.cluster.records import REQUESTS_PATCHED, Container, Meta
from agents.cluster.request_changes import Change, change
from agents.policy import ClusterPolicy, ResourceRequests
from agents.report import rfc3339
from agents.units import format_age, format_duration, parse_quantity

_TEMPLATE_PATH = {
    "deployment": ("spec", "template", "spec"),
    "statefulset": ("spec", "template", "spec"),
    "daemonset": ("spec", "template", "spec"),
    "cronjob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_ROLLOUT = ("deployment", "statefulset", "daemonset")


def findings(inventory: Inventory, policies: Mapping[str, ClusterPolicy],
             now: datetime) -> list[Action]:
    """One report (or template patch) per top-level owner missing something or, with
    usage measured, whose requests are off their recommendation; with ``resize``, also
    one resize per running pod whose requests are off."""
    actions = []
    owner_of = owners(inventory) if inventory.measured.source else {}
    for meta, containers in _top_level(inventory):
        rules = rules_for(meta, policies)
        if rules is None or not rules.resourceRequests.enabled:
            continue
        if inventory.measured.source is None:
            missing = _missing(containers, rules.resourceRequests)
            if missing:
                actions.append(_owner_action(meta, containers, missing, rules.resourceRequests))
            continue
        found = _changes(meta, containers, rules.resourceRequests, inventory, now)
        if found:
            actions.append(_measured_action(meta, found, rules.resourceRequests, now))
        if rules.resourceRequests.action == "resize":
            actions += plan_resize.resizes(inventory, owner_of, meta, rules.resourceRequests,
                                           now)
    return actions


def _changes(meta: Meta, containers: tuple[Container, ...], rules: ResourceRequests,
             inventory: Inventory, now: datetime) -> list[Change]:
    stamp = int(now.timestamp())
    found = (change(c, (meta.namespace, meta.kind, meta.name, c.name), rules,
                    inventory.measured, stamp) for c in containers)
    return [c for c in found if c.wanted or c.missing or c.conflicts or c.awaits_history]


def _measured_action(meta: Meta, found: list[Change], rules: ResourceRequests,
                     now: datetime) -> Action:
    """The owner's line: the evidence always; a template patch when the policy allows it."""
    why = "; ".join(c.why() for c in found)
    fill = {c.name: c.wanted for c in found if c.wanted}
    rule = _rule(found, bool(fill))
    details = {"missing": {c.name: list(c.missing) for c in found if c.missing},
               "recommendations": {c.name: c.evidence for c in found if c.evidence},
               "history": {c.name: c.waiting for c in found if c.awaits_history}}
    held = _held(meta, found, rules, now)
    if rules.action not in ("patch", "resize") or not fill or held:
        return act(meta, Verb.REPORT, rule, why + (f"; {held}" if held else ""), **details)
    if meta.kind not in _TEMPLATE_PATH:
        return act(meta, Verb.REPORT, rule, f"{why} (a {meta.kind}'s pod spec cannot be "
                   "patched)", **details)
    if rules.action == "resize" and meta.kind in _ROLLOUT:
        return act(meta, Verb.REPORT, rule, f"{why}; the pod template is left as it is "
                   "(changing it rolls out; action patch does)", **details)
    init = {c.name for c in found if c.init}
    patch = _template_patch(meta.kind, init, fill)
    if any(c.changes_set_requests for c in found):
        patch["metadata"] = {"annotations": {REQUESTS_PATCHED: rfc3339(now)}}
    effect = "; a rollout restarts its pods" if meta.kind in _ROLLOUT else ""
    return act(meta, Verb.PATCH, rule, f"{why}; writing these requests{effect}",
               patch=guarded(meta, patch), patchType="strategic", **details)


def _rule(found: list[Change], fills: bool) -> str:
    """``recommend`` for a line about usage (a recommendation, or the history so far)."""
    if any(c.recommended for c in found) or not (fills or any(c.missing for c in found)):
        return "resourceRequests.recommend"
    return "resourceRequests.require" if fills else "resourceRequests.requireLimits"


def _held(meta: Meta, found: list[Change], rules: ResourceRequests, now: datetime
          ) -> str | None:
    """Why a patch the policy asks for waits: a limit in the way, or ``minInterval``."""
    if rules.action not in ("patch", "resize"):
        return None
    if any(c.conflicts for c in found):
        return "not patched: a limit would end up below its request (limits are never lowered)"
    last, interval = meta.requests_patched, rules.recommend.minInterval
    if (last is not None and now - last < interval
            and any(c.changes_set_requests for c in found)):
        return (f"not patched: requests last patched {format_age(now - last)} ago "
                f"(recommend.minInterval {format_duration(interval)})")
    return None


def _top_level(inventory: Inventory) -> Iterator[tuple[Meta, tuple[Container, ...]]]:
    for records in (inventory.deployment, inventory.statefulset, inventory.daemonset,
                    inventory.cronjob):
        yield from ((r.meta, r.containers) for r in records)
    yield from ((j.meta, j.containers) for j in inventory.job
                if j.meta.controller is None and j.finished_at is None)
    yield from ((r.meta, r.containers) for r in inventory.replicaset if r.meta.controller is None)
    yield from ((p.meta, p.containers) for p in inventory.pod
                if p.meta.controller is None and p.phase not in ("Succeeded", "Failed"))


def _missing(containers: tuple[Container, ...], rules: ResourceRequests) -> dict[str, list[str]]:
    """Container name → the fields it lacks (``requests.cpu``, ``limits.memory``)."""
    found = {}
    for c in containers:
        lacks = [f"requests.{r}" for r in rules.require
                 if r not in c.requests and r not in c.limits]
        lacks += [f"limits.{r}" for r in rules.requireLimits if r not in c.limits]
        if lacks:
            found[c.name] = lacks
    return found


def _owner_action(meta: Meta, containers: tuple[Container, ...], missing: dict[str, list[str]],
                  rules: ResourceRequests) -> Action:
    init = {c.name for c in containers if c.init}
    why = "; ".join(f"{'init container' if name in init else 'container'} {name} lacks "
                    f"{', '.join(fields)}" for name, fields in missing.items())
    fill = _fill(missing, rules)
    rule = "resourceRequests.require" if fill else "resourceRequests.requireLimits"
    if rules.action != "patch" or not fill or meta.kind not in _TEMPLATE_PATH:
        if rules.action == "patch" and fill:
            why += f" (a {meta.kind}'s pod spec cannot be patched)"
        return act(meta, Verb.REPORT, rule, why, missing=missing)
    effect = "; a rollout restarts its pods" if meta.kind in _ROLLOUT else ""
    return act(meta, Verb.PATCH, rule, f"{why}; filling policy defaults{effect}",
               missing=missing, patch=guarded(meta, _template_patch(meta.kind, init, fill)),
               patchType="strategic")


def _fill(missing: dict[str, list[str]], rules: ResourceRequests) -> dict[str, dict[str, str]]:
    """Container name → the default requests to add; limits are never filled in."""
    fill = {}
    for name, fields in missing.items():
        wanted = {f.removeprefix("requests."): rules.defaults.for_resource(
            f.removeprefix("requests.")) for f in fields if f.startswith("requests.")}
        if wanted:
            fill[name] = wanted
    return fill


def _template_patch(kind: str, init: set[str], fill: dict[str, dict[str, str]]) -> dict:
    """A strategic merge patch: containers merge by name, so only the missing keys change."""
    spec: dict[str, Any] = {}
    for name, requests in fill.items():
        key = "initContainers" if name in init else "containers"
        spec.setdefault(key, []).append({"name": name, "resources": {"requests": requests}})
    for part in reversed(_TEMPLATE_PATH[kind]):
        spec = {part: spec}
    return spec


def limitranges(inventory: Inventory, policies: Mapping[str, ClusterPolicy],
                now: datetime) -> list[Action]:
    """The LimitRange of each namespace in scope to create or update; reads nothing else."""
    existing = {r.meta.namespace: r for r in inventory.limitrange
                if r.meta.name == LIMITRANGE_NAME}
    actions = []
    for namespace, rules in sorted(policies.items()):
        requests = rules.resourceRequests
        if not requests.enabled or requests.action != "limitrange" or not requests.require:
            continue
        wanted = {r: requests.defaults.for_resource(r) for r in requests.require}
        current = existing.get(namespace)
        if current is None:
            actions.append(_create_limitrange(namespace, wanted))
        elif not current.meta.ignored:
            action = _update_limitrange(current.meta, json.loads(current.limits), wanted)
            actions.extend([action] if action else [])
    return actions


def _create_limitrange(namespace: str, wanted: dict[str, str]) -> Action:
    body = {"apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": LIMITRANGE_NAME, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "kubekeeper"}},
            "spec": {"limits": [{"type": "Container", "defaultRequest": wanted}]}}
    return Action(kind="limitrange", name=LIMITRANGE_NAME, namespace=namespace,
                  verb=Verb.CREATE, rule="resourceRequests.defaults",
                  why=f"no LimitRange {LIMITRANGE_NAME}; defaultRequest {_show(wanted)}",
                  details=MappingProxyType({"body": body}))


def _update_limitrange(meta: Meta, limits: list[dict], wanted: dict[str, str]) -> Action | None:
    """Rewrite only the Container item's defaultRequest; other items and fields stay."""
    item = next((i for i in limits if i.get("type") == "Container"), None)
    current = (item or {}).get("defaultRequest") or {}
    if _same_quantities(current, wanted):
        return None
    others = [i for i in limits if i is not item]
    updated = {**(item or {"type": "Container"}), "defaultRequest": wanted}
    return act(meta, Verb.PATCH, "resourceRequests.defaults",
               f"defaultRequest {_show(current) or 'unset'} differs from {_show(wanted)}",
               patch=guarded(meta, {"spec": {"limits": [*others, updated]}}), patchType="merge")


def _same_quantities(current: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    if set(current) != set(wanted):
        return False
    try:
        return all(parse_quantity(current[k]) == parse_quantity(wanted[k]) for k in wanted)
    except ValueError:
        return False


def _show(quantities: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(quantities.items()))
