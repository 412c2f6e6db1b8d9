"""The revisions planner: limits above maxLimit, freed ReplicaSets, ownerless ReplicaSets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agents.actions import Verb
from agents.cluster import plan_revisions, records
from agents.cluster.inventory import Inventory, scope
from agents.cluster.records import Namespace
from agents.policy_loader import parse_policy
from agents.report import rfc3339

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def policies(revisions_yaml: str = "{}"):
    policy = parse_policy(f"apiVersion: kubekeeper/v1\ncluster:\n  revisionHistory: "
                          f"{revisions_yaml}\n")
    return scope(policy, [Namespace("apps", False, False)])


def deployment(name: str, limit: int | None = None, revision: int = 6,
               kind: str = "deployment", deleted: datetime | None = None) -> records.Workload:
    spec = {"template": {"spec": {"containers": [{"name": "c"}]}}}
    if limit is not None:
        spec["revisionHistoryLimit"] = limit
    meta = {"name": name, "namespace": "apps", "uid": f"uid-{name}", "resourceVersion": "11",
            "annotations": {"deployment.kubernetes.io/revision": str(revision)}}
    if deleted:
        meta["deletionTimestamp"] = rfc3339(deleted)
    return records.workload(kind)({"metadata": meta, "spec": spec})


def replicaset(name: str, revision: int | None = None, owner: str | None = "web",
               replicas: int = 0, age: timedelta = timedelta(days=30),
               recorded: timedelta | None = timedelta(days=30),
               written: timedelta | None = None, deleted: datetime | None = None
               ) -> records.ReplicaSet:
    """``recorded``: how long ago kubekeeper noted it ownerless (None: not yet);
    ``written``: how long ago its metadata or spec last changed (default: at creation)."""
    meta: dict = {"name": name, "namespace": "apps", "uid": f"uid-{name}",
                  "resourceVersion": "4", "creationTimestamp": rfc3339(NOW - age),
                  "annotations": {}}
    meta["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update",
         "time": rfc3339(NOW - (written or age))},
        {"manager": "kube-controller-manager", "operation": "Update",
         "subresource": "status", "time": rfc3339(NOW)}]
    if deleted:
        meta["deletionTimestamp"] = rfc3339(deleted)
    if recorded is not None:
        meta["annotations"]["kubekeeper/ownerless-since"] = rfc3339(NOW - recorded)
    if revision is not None:
        meta["annotations"]["deployment.kubernetes.io/revision"] = str(revision)
    if owner:
        meta["ownerReferences"] = [{"kind": "Deployment", "name": owner, "uid": f"uid-{owner}",
                                    "controller": True}]
    return records.replicaset({"kind": "ReplicaSet", "metadata": meta,
                               "spec": {"replicas": replicas},
                               "status": {"replicas": replicas}})


def revision(owner: str, number: int) -> records.Revision:
    return records.revision({"metadata": {
        "name": f"{owner}-{number}", "namespace": "apps", "uid": f"uid-{owner}-{number}",
        "ownerReferences": [{"kind": "StatefulSet", "name": owner, "uid": f"uid-{owner}",
                             "controller": True}]}, "revision": number})


def plan(inventory: Inventory, rules=None):
    return plan_revisions.plan(inventory, rules if rules is not None else policies(), NOW)


def test_unset_limit_is_reported_with_the_replicasets_it_frees():
    sets = tuple(replicaset(f"web-{n}", n) for n in range(1, 7))
    sets += (replicaset("web-0", 0, replicas=2),)
    actions = plan(Inventory(deployment=(deployment("web"),), replicaset=sets))
    owner, *freed = actions
    assert (owner.kind, owner.verb, owner.rule) == ("deployment", Verb.REPORT,
                                                    "revisionHistory.maxLimit")
    assert owner.why == "revisionHistoryLimit unset (default 10) > maxLimit 3; frees 2 ReplicaSets"
    # web-6 is current; of the six old ones the oldest three go, but web-0 still has replicas
    assert [(a.kind, a.name, a.verb) for a in freed] == [
        ("replicaset", "web-1", Verb.REPORT), ("replicaset", "web-2", Verb.REPORT)]
    assert freed[0].details["owner"] == "deployment/web"
    assert freed[0].why == ("obsolete revision 1 of deployment/web, freed once its "
                            "revisionHistoryLimit is 3")


def test_patch_lowers_only_the_limit_and_is_guarded_by_resource_version():
    [action] = plan(Inventory(deployment=(deployment("web", limit=20),)),
                    policies("{action: patch}"))
    assert action.verb is Verb.PATCH and action.details["patchType"] == "merge"
    assert action.details["patch"] == {"spec": {"revisionHistoryLimit": 3},
                                       "metadata": {"resourceVersion": "11"}}
    assert action.why.endswith("pod template untouched, no restart")


def test_objects_already_being_deleted_are_left_to_the_deletion():
    """A Deployment deleted with ``--cascade=orphan`` lives on for a moment with a
    deletionTimestamp; patching it then only races the garbage collector (and 404s)."""
    sets = tuple(replicaset(f"web-{n}", n) for n in range(1, 7))
    sets += (replicaset("lost", owner=None, deleted=NOW),)
    doomed = Inventory(deployment=(deployment("web", deleted=NOW),), replicaset=sets)
    opted_in = policies("{action: patch, ownerlessReplicaSets: {enabled: true}}")
    assert plan(doomed, opted_in) == []


def test_limits_within_the_maximum_are_fine():
    assert plan(Inventory(deployment=(deployment("web", limit=3), deployment("b", limit=0)))) == []


def test_statefulsets_and_daemonsets_count_their_controller_revisions():
    inventory = Inventory(statefulset=(deployment("db", kind="statefulset"),),
                          daemonset=(deployment("agent", limit=5, kind="daemonset"),),
                          controllerrevision=tuple(revision("db", n) for n in range(1, 7)))
    actions = {a.name: a for a in plan(inventory, policies("{action: patch}"))}
    assert actions["db"].details["frees"] == 2
    assert "frees 2 ControllerRevisions" in actions["db"].why
    assert actions["agent"].why.startswith("revisionHistoryLimit 5 > maxLimit 3; frees 0")


OWNERLESS = "{action: patch, ownerlessReplicaSets: {enabled: true, olderThan: 7d}}"


def test_ownerless_replicasets_are_deleted_only_when_opted_in():
    sets = (replicaset("orphan", owner=None), replicaset("busy", owner=None, replicas=1),
            replicaset("young", owner=None, recorded=timedelta(days=1)), replicaset("owned"))
    assert plan(Inventory(replicaset=sets)) == []
    [action] = plan(Inventory(replicaset=sets), policies(OWNERLESS))
    assert (action.name, action.verb, action.rule) == (
        "orphan", Verb.DELETE, "revisionHistory.ownerlessReplicaSets")
    assert action.why == "no owner, 0 replicas, ownerless and unchanged for 30d > 7d"
    manifest = json.loads(action.sealed)
    assert (manifest["apiVersion"], manifest["kind"], manifest["spec"]) == (
        "apps/v1", "ReplicaSet", {"replicas": 0})
    assert "resourceVersion" not in manifest["metadata"]


def test_ownerless_replicasets_are_only_reported_unless_the_section_patches():
    rules = policies("{ownerlessReplicaSets: {enabled: true, olderThan: 7d}}")
    [action] = plan(Inventory(replicaset=(replicaset("orphan", owner=None),)), rules)
    assert (action.verb, action.mutates) == (Verb.REPORT, False)


def test_an_old_replicaset_first_seen_ownerless_is_only_noted_however_old_it_is():
    sets = (replicaset("orphan", owner=None, age=timedelta(days=90), recorded=None),)
    [action] = plan(Inventory(replicaset=sets), policies(OWNERLESS))
    assert (action.verb, action.destructive) == (Verb.PATCH, False)
    assert action.details["patch"]["metadata"] == {
        "annotations": {"kubekeeper/ownerless-since": rfc3339(NOW)}, "resourceVersion": "4"}
    reported = policies(OWNERLESS.replace("action: patch", "action: report"))
    [said] = plan(Inventory(replicaset=sets), reported)
    assert said.verb is Verb.REPORT and "not recorded yet" in said.why


def test_a_write_after_the_record_makes_it_young_again():
    sets = (replicaset("orphan", owner=None, recorded=timedelta(days=30),
                       written=timedelta(hours=1)),)
    assert plan(Inventory(replicaset=sets), policies(OWNERLESS)) == []


def test_a_record_that_is_not_a_time_is_no_record():
    rs = replicaset("orphan", owner=None)
    raw_annotations = {"kubekeeper/ownerless-since": "last tuesday"}
    broken = records.replicaset({"kind": "ReplicaSet", "metadata": {
        "name": "orphan", "namespace": "apps", "uid": "u", "resourceVersion": "4",
        "annotations": raw_annotations}, "spec": {"replicas": 0}})
    assert rs.ownerless_since is not None and broken.ownerless_since is None
