"""The jobs planner on plain records: TTLs, CronJob history, orphan pods, scope."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agents.actions import Verb
from agents.cluster import plan_jobs, records
from agents.cluster.inventory import Inventory, scope
from agents.cluster.records import Namespace
from agents.policy_loader import parse_policy
from agents.report import rfc3339

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return rfc3339(NOW - timedelta(**delta))


def policies(cluster_yaml: str = "", namespaces: tuple[str, ...] = ("apps",),
             ignored: tuple[str, ...] = ()):
    text = "apiVersion: kubekeeper/v1\n" + cluster_yaml
    policy = parse_policy(text)
    return scope(policy, [Namespace(n, n in ignored, False) for n in namespaces])


DELETE = "cluster:\n  completedJobs: {action: delete}\n"


def job(name: str, ns: str = "apps", state: str | None = "Complete",
        finished: str | None = None, ttl: int | None = None, owner: str | None = None,
        ignored: bool = False, completion_time: bool = True,
        owner_kind: str = "CronJob") -> records.Job:
    finished = finished or ago(days=2)
    status: dict = {}
    if state:
        status["conditions"] = [{"type": state, "status": "True",
                                 "lastTransitionTime": finished}]
        if state == "Complete" and completion_time:
            status["completionTime"] = finished
    meta: dict = {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "7",
                  "managedFields": [{"manager": "x"}]}
    if owner:
        meta["ownerReferences"] = [{"kind": owner_kind, "name": owner, "uid": f"uid-{owner}",
                                    "controller": True}]
    if ignored:
        meta["annotations"] = {"kubekeeper/ignore": "true"}
    spec = {"ttlSecondsAfterFinished": ttl} if ttl is not None else {}
    return records.job({"kind": "Job", "metadata": meta, "spec": spec, "status": status})


def cronjob(name: str, successful: int = 3, failed: int = 1, ignored: bool = False,
            ns: str = "apps") -> records.CronJob:
    meta: dict = {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "9"}
    if ignored:
        meta["annotations"] = {"kubekeeper/ignore": "true"}
    return records.cronjob({"metadata": meta, "spec": {"successfulJobsHistoryLimit": successful,
                                                       "failedJobsHistoryLimit": failed}})


def pod(name: str, phase: str = "Succeeded", finished: str | None = None,
        owned: bool = False) -> records.Pod:
    meta: dict = {"name": name, "namespace": "apps", "uid": f"uid-{name}",
                  "resourceVersion": "3"}
    if owned:
        meta["ownerReferences"] = [{"kind": "Job", "name": "j", "uid": "u", "controller": True}]
    status = {"phase": phase, "containerStatuses": [
        {"name": "c", "state": {"terminated": {"finishedAt": finished or ago(days=3)}}}]}
    return records.pod({"metadata": meta, "spec": {"containers": [{"name": "c"}]},
                        "status": status})


def plan(inventory: Inventory, rules=None):
    return plan_jobs.plan(inventory, rules if rules is not None else policies(DELETE), NOW)


def test_complete_job_past_succeeded_ttl_is_deleted_with_its_manifest():
    [action] = plan(Inventory(job=(job("old"), job("fresh", finished=ago(hours=2)))))
    assert (action.name, action.verb, action.rule) == ("old", Verb.DELETE,
                                                       "completedJobs.succeededTTL")
    assert action.why == "Complete 2d ago > 1d"
    manifest = json.loads(action.sealed)
    assert manifest["metadata"]["name"] == "old"
    assert "managedFields" not in manifest["metadata"] and "status" not in manifest


def test_a_job_already_being_deleted_is_not_deleted_again():
    raw_meta = {"deletionTimestamp": ago(seconds=5)}
    doomed = records.job({"kind": "Job", "metadata": {
        "name": "old", "namespace": "apps", "uid": "uid-old", **raw_meta},
        "status": {"conditions": [{"type": "Complete", "status": "True",
                                   "lastTransitionTime": ago(days=2)}]}})
    assert plan(Inventory(job=(doomed,))) == []


def test_report_action_changes_nothing():
    [action] = plan(Inventory(job=(job("old"),)), policies())
    assert action.verb is Verb.REPORT and action.sealed is None


def test_failed_job_uses_failed_ttl_and_its_condition_time():
    jobs = (job("failed-3d", state="Failed", finished=ago(days=3)),
            job("failed-8d", state="Failed", finished=ago(days=8)))
    [action] = plan(Inventory(job=jobs))
    assert (action.name, action.rule) == ("failed-8d", "completedJobs.failedTTL")


def test_condition_time_stands_in_for_a_missing_completion_time():
    [action] = plan(Inventory(job=(job("old", completion_time=False),)))
    assert action.why == "Complete 2d ago > 1d"


def test_jobs_with_ttl_seconds_after_finished_and_running_jobs_are_left_alone():
    assert plan(Inventory(job=(job("ttl", ttl=60), job("running", state=None)))) == []


def test_cronjob_keeps_its_newest_history_whatever_the_ttl():
    jobs = tuple(job(f"ok-{d}", owner="nightly", finished=ago(days=d)) for d in (2, 3, 4, 5))
    jobs += tuple(job(f"bad-{d}", owner="nightly", state="Failed", finished=ago(days=d))
                  for d in (10, 11))
    actions = plan(Inventory(job=jobs, cronjob=(cronjob("nightly", successful=2, failed=1),)))
    assert sorted(a.name for a in actions) == ["bad-11", "ok-4", "ok-5"]


def test_ignored_cronjob_covers_its_jobs():
    jobs = tuple(job(f"ok-{d}", owner="nightly", finished=ago(days=d)) for d in (2, 3, 4, 5))
    assert plan(Inventory(job=jobs, cronjob=(cronjob("nightly", 0, 0, ignored=True),))) == []


def test_cronjob_history_limits_above_the_maximum_are_patched_down():
    [action] = plan(Inventory(cronjob=(cronjob("nightly", successful=10, failed=5),)))
    assert (action.verb, action.rule) == (Verb.PATCH, "completedJobs.maxSuccessfulHistory")
    assert action.why == "successfulJobsHistoryLimit 10 > 3; failedJobsHistoryLimit 5 > 3"
    assert action.details["patch"] == {
        "spec": {"successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3},
        "metadata": {"resourceVersion": "9"}}
    assert plan(Inventory(cronjob=(cronjob("fine", 3, 1),))) == []


def test_orphan_pods_are_opt_in():
    pods = (pod("done"), pod("owned", owned=True), pod("running", phase="Running"),
            pod("recent", finished=ago(hours=1)), pod("failed", phase="Failed"))
    assert plan(Inventory(pod=pods)) == []
    opted_in = policies("cluster:\n  completedJobs: {action: delete, orphanPods: true}\n")
    [action] = plan(Inventory(pod=pods), opted_in)
    assert (action.name, action.verb, action.rule) == ("done", Verb.DELETE,
                                                       "completedJobs.orphanPods")
    assert action.why == "ownerless pod Succeeded 3d ago > 1d"


def test_overrides_apply_per_namespace():
    rules = policies(DELETE + "overrides:\n  - namespaces: [batch-*]\n"
                     "    completedJobs: {succeededTTL: 10m}\n",
                     namespaces=("apps", "batch-1"))
    jobs = (job("a", finished=ago(hours=1)), job("b", ns="batch-1", finished=ago(hours=1)))
    assert [a.name for a in plan(Inventory(job=jobs), rules)] == ["b"]


def test_excluded_and_ignored_namespaces_and_objects_are_never_touched():
    rules = policies(DELETE, namespaces=("apps", "kube-system", "quiet"), ignored=("quiet",))
    jobs = (job("a", ns="kube-system"), job("b", ns="quiet"), job("c", ignored=True),
            job("d", ns="unknown"))
    assert plan(Inventory(job=jobs), rules) == []


names = st.sampled_from(["apps", "kube-system", "quiet", "gone"])


@given(st.lists(st.tuples(names, st.booleans(), st.sampled_from(["Complete", "Failed", None]),
                          st.integers(0, 30), st.one_of(st.none(), st.just(60)),
                          st.booleans()), max_size=25))
def test_no_action_ever_targets_a_protected_job(specs):
    rules = policies(DELETE, namespaces=("apps", "kube-system", "quiet"), ignored=("quiet",))
    jobs = tuple(job(f"j{i}", ns=ns, ignored=ignored, state=state, finished=ago(days=days),
                     ttl=ttl, owner="cron" if owned else None)
                 for i, (ns, ignored, state, days, ttl, owned) in enumerate(specs))
    cron = cronjob("cron", successful=2, failed=2)
    by_name = {j.meta.name: j for j in jobs}
    for action in plan(Inventory(job=jobs, cronjob=(cron,)), rules):
        if action.kind != "job":
            continue
        target = by_name[action.name]
        assert target.meta.namespace == "apps" and not target.meta.ignored
        assert target.state and not target.ttl_set
        age = NOW - target.finished_at
        assert age > (timedelta(days=1) if target.state == "Complete" else timedelta(days=7))
    owned = sorted((j for j in jobs if j.meta.controller and j.state == "Complete"),
                   key=lambda j: (j.finished_at, j.meta.name), reverse=True)[:2]
    deleted = {a.name for a in plan(Inventory(job=jobs, cronjob=(cron,)), rules)}
    assert not deleted & {j.meta.name for j in owned}


def test_jobs_of_other_controllers_are_kept_and_say_whose_they_are():
    jobs = (job("bare"), job("cron-1", owner="cron"),
            job("wf-1", owner="wf", owner_kind="Workflow"))
    by_name = {a.name: a for a in plan(Inventory(job=jobs))}
    assert by_name["bare"].mutates and by_name["cron-1"].mutates
    kept = by_name["wf-1"]
    assert not kept.mutates and not kept.destructive
    assert kept.skip.startswith("kept: owned by Workflow wf, which may still need it")


def test_owner_kinds_opts_other_controllers_in():
    rules = policies("cluster:\n  completedJobs: {action: delete, ownerKinds: [Workflow]}\n")
    jobs = (job("wf-1", owner="wf", owner_kind="Workflow"),
            job("mpi-1", owner="mpi", owner_kind="MPIJob"))
    by_name = {a.name: a for a in plan(Inventory(job=jobs), rules)}
    assert by_name["wf-1"].verb is Verb.DELETE and by_name["wf-1"].mutates
    assert not by_name["mpi-1"].mutates


def evicted(name: str, stopped: str | None) -> records.Pod:
    """A pod evicted after a month of running: no terminated container, maybe a condition."""
    status: dict = {"phase": "Failed", "reason": "Evicted", "startTime": ago(days=30)}
    if stopped:
        status["conditions"] = [{"type": "Ready", "status": "False",
                                 "lastTransitionTime": stopped}]
    return records.pod({"metadata": {"name": name, "namespace": "apps", "uid": f"uid-{name}",
                                     "creationTimestamp": ago(days=30)},
                        "spec": {"containers": [{"name": "c"}]}, "status": status})


ORPHANS = "cluster:\n  completedJobs: {action: delete, orphanPods: true, failedTTL: 1d}\n"


def test_a_pod_stopped_a_minute_ago_is_young_however_long_it_ran():
    assert plan(Inventory(pod=(evicted("stopped", ago(minutes=1)),)), policies(ORPHANS)) == []
    [old] = plan(Inventory(pod=(evicted("stopped", ago(days=2)),)), policies(ORPHANS))
    assert old.verb is Verb.DELETE and old.mutates


def test_a_pod_without_a_stop_time_is_kept_and_says_why():
    [kept] = plan(Inventory(pod=(evicted("unknown", None),)), policies(ORPHANS))
    assert not kept.mutates and "says when it stopped" in kept.skip


def test_a_job_without_a_finish_time_is_kept_and_says_why():
    unknown = records.job({"metadata": {"name": "j", "namespace": "apps", "uid": "u"},
                           "status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    [kept] = plan(Inventory(job=(unknown,)))
    assert not kept.mutates and "age is unknown" in kept.skip
