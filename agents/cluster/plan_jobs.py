"""The jobs task: finished Jobs, CronJob history limits and (opt-in) orphan pods.

Policy ``cluster.completedJobs``:

- A Job that finished (condition Complete or Failed) longer ago than
  ``succeededTTL`` or ``failedTTL`` goes, deleted in the background so its pods
  go too. The finish time is ``status.completionTime``, else the time of the
  terminal condition.
- Jobs that set ``ttlSecondsAfterFinished`` are left to Kubernetes.
- Only bare Jobs and CronJob Jobs are cleaned by default. A Job another
  controller owns (an Argo Workflow, a Kueue workload, an operator) belongs to
  that controller, which may still read it: it is reported ``skipped`` with the
  owner's kind, unless ``ownerKinds`` names that kind.
- A CronJob's Jobs always keep the CronJob's own newest
  ``successfulJobsHistoryLimit`` Complete and ``failedJobsHistoryLimit`` Failed
  Jobs; ``kubekeeper/ignore`` on a CronJob covers the Jobs it owns.
- CronJobs whose history limits exceed ``maxSuccessfulHistory`` or
  ``maxFailedHistory`` get them lowered.
- ``orphanPods`` (opt-in): pods with no owner references in phase Succeeded
  (Failed) whose last container finished longer ago than ``succeededTTL``
  (``failedTTL``) are deleted; ``kubectl run`` leaves these behind.
- ``action: report`` changes nothing; ``delete`` enables the Job and pod
  deletions and the CronJob patches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from agents.actions import Action, Verb
from agents.cluster.inventory import Inventory
from agents.cluster.planning import act, deletion, guarded, rules_for
from agents.cluster.records import CronJob, Job, Meta, Pod
from agents.policy import ClusterPolicy, CompletedJobs
from agents.units import format_age, format_duration

_NEVER = datetime.min.replace(tzinfo=UTC)


def plan(inventory: Inventory, policies: Mapping[str, ClusterPolicy],
         now: datetime) -> list[Action]:
    cronjobs = {c.meta.uid: c for c in inventory.cronjob}
    kept = _kept_by_history(inventory.job, cronjobs)
    actions: list[Action] = []
    for job in inventory.job:
        rules = _rules(job.meta, policies)
        owner = cronjobs.get(job.meta.controller.uid) if job.meta.controller else None
        if rules and job.meta.uid not in kept and not (owner and owner.meta.ignored):
            action = _job_action(job, rules, now)
            actions.extend([action] if action else [])
    for cronjob in inventory.cronjob:
        rules = _rules(cronjob.meta, policies)
        action = _history_action(cronjob, rules) if rules else None
        actions.extend([action] if action else [])
    return actions + _orphan_pods(inventory.pod, policies, now)


def _rules(meta: Meta, policies: Mapping[str, ClusterPolicy]) -> CompletedJobs | None:
    rules = rules_for(meta, policies)
    return rules.completedJobs if rules and rules.completedJobs.enabled else None


def _kept_by_history(jobs: Iterable[Job], cronjobs: Mapping[str, CronJob]) -> set[str]:
    """Uids of the Jobs each CronJob's own history limits keep (newest finished first)."""
    finished: dict[tuple[str, str], list[Job]] = defaultdict(list)
    for job in jobs:
        owner = job.meta.controller
        if owner and owner.uid in cronjobs and job.state:
            finished[(owner.uid, job.state)].append(job)
    kept = set()
    for (uid, state), group in finished.items():
        cronjob = cronjobs[uid]
        limit = cronjob.successful_limit if state == "Complete" else cronjob.failed_limit
        group.sort(key=lambda j: (j.finished_at or _NEVER, j.meta.name), reverse=True)
        kept.update(j.meta.uid for j in group[:limit])
    return kept


def _job_action(job: Job, rules: CompletedJobs, now: datetime) -> Action | None:
    if job.state is None or job.ttl_set:
        return None
    ttl, rule = _ttl(rules, job.state == "Complete")
    if job.finished_at is None:
        return act(job.meta, Verb.DELETE, rule, f"{job.state}",
                   skip="kept: no completionTime or condition time, so its age is unknown")
    age = now - job.finished_at
    if age <= ttl:
        return None
    why = f"{job.state} {format_age(age)} ago > {format_duration(ttl)}"
    foreign = next((o for o in job.meta.owners
                    if o.kind != "CronJob" and o.kind not in rules.ownerKinds), None)
    if foreign:
        return act(job.meta, Verb.DELETE, rule, why,
                   skip=f"kept: owned by {foreign.kind} {foreign.name}, which may still need "
                        f"it (completedJobs.ownerKinds opts {foreign.kind} in)")
    return _removal(job.meta, rules, rule, why, job.manifest)


def _ttl(rules: CompletedJobs, succeeded: bool) -> tuple[timedelta, str]:
    if succeeded:
        return rules.succeededTTL, "completedJobs.succeededTTL"
    return rules.failedTTL, "completedJobs.failedTTL"


def _removal(meta: Meta, rules: CompletedJobs, rule: str, why: str,
             manifest: str | None) -> Action:
    """A deletion only with ``action: delete`` and the manifest for the report in hand."""
    if rules.action == "delete" and manifest is not None:
        return deletion(meta, rule, why, manifest)
    return act(meta, Verb.REPORT, rule, why)


def _history_action(cronjob: CronJob, rules: CompletedJobs) -> Action | None:
    spec, reasons, rule = {}, [], ""
    for field, value, ceiling, key in (
            ("successfulJobsHistoryLimit", cronjob.successful_limit, rules.maxSuccessfulHistory,
             "completedJobs.maxSuccessfulHistory"),
            ("failedJobsHistoryLimit", cronjob.failed_limit, rules.maxFailedHistory,
             "completedJobs.maxFailedHistory")):
        if value > ceiling:
            spec[field] = ceiling
            reasons.append(f"{field} {value} > {ceiling}")
            rule = rule or key
    if not spec:
        return None
    why = "; ".join(reasons)
    if rules.action != "delete":
        return act(cronjob.meta, Verb.REPORT, rule, why)
    return act(cronjob.meta, Verb.PATCH, rule, why, patch=guarded(cronjob.meta, {"spec": spec}),
               patchType="merge")


def _orphan_pods(pods: Iterable[Pod], policies: Mapping[str, ClusterPolicy],
                 now: datetime) -> list[Action]:
    actions = []
    for pod in pods:
        rules = _rules(pod.meta, policies)
        if rules is None or not rules.orphanPods or pod.meta.owners or not pod.phase_finished:
            continue
        if pod.finished_at is None:
            actions.append(act(pod.meta, Verb.DELETE, "completedJobs.orphanPods",
                               f"ownerless pod {pod.phase}",
                               skip="kept: no container or condition says when it stopped"))
            continue
        ttl, _ = _ttl(rules, pod.phase == "Succeeded")
        age = now - pod.finished_at
        if age > ttl:
            why = (f"ownerless pod {pod.phase} {format_age(age)} ago > "
                   f"{format_duration(ttl)}")
            actions.append(_removal(pod.meta, rules, "completedJobs.orphanPods", why,
                                    pod.manifest))
    return actions
