"""The revisions task: revision history kept beyond ``revisionHistory.maxLimit``.

Policy ``cluster.revisionHistory``:

- Deployments, StatefulSets and DaemonSets whose ``spec.revisionHistoryLimit``
  is unset (Kubernetes keeps 10) or above ``maxLimit`` are reported, or with
  ``action: patch`` get the limit lowered to ``maxLimit``. Only that field
  changes, so nothing restarts; the controllers then prune the surplus
  ReplicaSets and ControllerRevisions themselves, which is the safe path.
- The ReplicaSets such a change frees are listed (verb ``report``, detail
  ``owner``): the ones the Deployment controller would delete, i.e. the
  oldest old revisions beyond the newest ``maxLimit``, with 0 replicas.
- ``ownerlessReplicaSets`` (opt-in): ReplicaSets with no owner references and
  0 replicas that have been ownerless longer than ``olderThan`` are deleted
  with ``action: patch``, reported with ``action: report``. The API server
  records no time for the orphaning, so on first sight kubekeeper writes one
  (annotation ``kubekeeper/ownerless-since``, under ``action: patch``) and the
  age counts from there, or from any later write: a months-old ReplicaSet
  orphaned a minute ago is never old. Until it is recorded, nothing is deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from agents.actions import Action, Verb
from agents.cluster.inventory import Inventory
from agents.cluster.planning import act, deletion, guarded, rules_for
from agents.cluster.records import OWNERLESS_SINCE, Meta, ReplicaSet, Workload
from agents.policy import ClusterPolicy, RevisionHistory
from agents.report import rfc3339
from agents.units import format_age, format_duration

KUBERNETES_DEFAULT_LIMIT = 10
_RULE = "revisionHistory.maxLimit"


def plan(inventory: Inventory, policies: Mapping[str, ClusterPolicy],
         now: datetime) -> list[Action]:
    owned_sets = _by_owner(inventory.replicaset)
    owned_revisions = _by_owner(inventory.controllerrevision)
    actions: list[Action] = []
    for workload in inventory.deployment:
        history = _history(workload.meta, policies)
        if history:
            actions += _deployment(workload, owned_sets.get(workload.meta.uid, []), history)
    for workload in (*inventory.statefulset, *inventory.daemonset):
        history = _history(workload.meta, policies)
        if history is None:
            continue
        old = max(0, len(owned_revisions.get(workload.meta.uid, [])) - 1)
        action = _limit_action(workload, history, max(0, old - history.maxLimit),
                               "ControllerRevisions")
        actions.extend([action] if action else [])
    return actions + _ownerless(inventory.replicaset, policies, now)


def _history(meta: Meta, policies: Mapping[str, ClusterPolicy]) -> RevisionHistory | None:
    rules = rules_for(meta, policies)
    return rules.revisionHistory if rules and rules.revisionHistory.enabled else None


def _by_owner(records: Iterable) -> dict[str, list]:
    owned = defaultdict(list)
    for record in records:
        if record.meta.controller:
            owned[record.meta.controller.uid].append(record)
    return owned


def _deployment(workload: Workload, sets: list[ReplicaSet],
                history: RevisionHistory) -> list[Action]:
    freed = obsolete_replicasets(workload, sets, history.maxLimit)
    action = _limit_action(workload, history, len(freed), "ReplicaSets")
    if action is None:
        return []
    owner = f"deployment/{workload.meta.name}"
    return [action] + [act(rs.meta, Verb.REPORT, _RULE,
                           f"obsolete revision {rs.revision} of {owner}, freed once its "
                           f"revisionHistoryLimit is {history.maxLimit}", owner=owner)
                       for rs in freed]


def obsolete_replicasets(workload: Workload, sets: list[ReplicaSet], limit: int
                         ) -> list[ReplicaSet]:
    """What the Deployment controller deletes at this limit: surplus old, scaled-down sets.

    The current ReplicaSet (the Deployment's own revision, else the newest) is
    never counted; the old ones are sorted by revision and the oldest beyond
    ``limit`` are freed when they have 0 replicas, as ``cleanupDeployment`` does.
    """
    current = workload.revision or max((s.revision or 0 for s in sets), default=0)
    old = sorted((s for s in sets if s.revision != current),
                 key=lambda s: (s.revision or 0, s.meta.name))
    surplus = old[:max(0, len(old) - limit)]
    return [s for s in surplus if s.replicas == 0 and s.live_replicas == 0]


def _limit_action(workload: Workload, history: RevisionHistory, frees: int,
                  what: str) -> Action | None:
    limit = workload.history_limit
    shown = f"{limit}" if limit is not None else f"unset (default {KUBERNETES_DEFAULT_LIMIT})"
    if (KUBERNETES_DEFAULT_LIMIT if limit is None else limit) <= history.maxLimit:
        return None
    why = f"revisionHistoryLimit {shown} > maxLimit {history.maxLimit}; frees {frees} {what}"
    if history.action != "patch":
        return act(workload.meta, Verb.REPORT, _RULE, why, frees=frees)
    patch = guarded(workload.meta, {"spec": {"revisionHistoryLimit": history.maxLimit}})
    return act(workload.meta, Verb.PATCH, _RULE, why + "; pod template untouched, no restart",
               frees=frees, patch=patch, patchType="merge")


def _ownerless(sets: Iterable[ReplicaSet], policies: Mapping[str, ClusterPolicy],
               now: datetime) -> list[Action]:
    actions = []
    for rs in sets:
        history = _history(rs.meta, policies)
        if (history is None or not history.ownerlessReplicaSets.enabled or rs.meta.owners
                or rs.replicas or rs.live_replicas):
            continue
        action = _ownerless_action(rs, history, now)
        actions.extend([action] if action else [])
    return actions


def _ownerless_action(rs: ReplicaSet, history: RevisionHistory, now: datetime
                      ) -> Action | None:
    rule, key = history.ownerlessReplicaSets, "revisionHistory.ownerlessReplicaSets"
    if rs.ownerless_since is None:
        return _record_ownerless(rs, history, now)
    age = now - max(rs.ownerless_since, rs.changed or rs.ownerless_since)
    if age <= rule.olderThan:
        return None
    why = (f"no owner, 0 replicas, ownerless and unchanged for {format_age(age)} > "
           f"{format_duration(rule.olderThan)}")
    if history.action != "patch" or rs.manifest is None:
        return act(rs.meta, Verb.REPORT, key, why)
    return deletion(rs.meta, key, why, rs.manifest)


def _record_ownerless(rs: ReplicaSet, history: RevisionHistory, now: datetime) -> Action:
    """First sight of an orphan: write down when, since the API server does not."""
    key = "revisionHistory.ownerlessReplicaSets"
    if history.action != "patch":
        return act(rs.meta, Verb.REPORT, key, "no owner, 0 replicas; when it lost its owner is "
                   "not recorded yet (kubekeeper records it under action: patch)")
    patch = guarded(rs.meta, {"metadata": {"annotations": {OWNERLESS_SINCE: rfc3339(now)}}})
    return act(rs.meta, Verb.PATCH, key, f"no owner, 0 replicas, first seen ownerless now: "
               f"{OWNERLESS_SINCE} recorded, olderThan counts from here",
               patch=patch, patchType="merge")
