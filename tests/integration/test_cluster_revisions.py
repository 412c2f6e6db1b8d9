"""The revisions task against the real control plane: the controllers do the pruning."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from kubernetes.client import ApiClient, AppsV1Api

from tests.cluster_runs import (
    events_about,
    pod_template,
    policy_for,
    run_task,
)
from tests.polling import wait_for

PATCH = "revisionHistory: {action: patch, maxLimit: 3}"


def replicasets(apps: AppsV1Api, namespace: str) -> dict[str, int]:
    """Live ReplicaSets by name → revision."""
    return {rs.metadata.name: int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
            for rs in apps.list_namespaced_replica_set(namespace).items
            if not rs.metadata.deletion_timestamp}


def deployment_with_revisions(client: ApiClient, namespace: str, count: int) -> None:
    """A scaled-to-zero Deployment whose template changed ``count - 1`` times."""
    apps = AppsV1Api(client)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": pod_template({"app": "web"})}})
    wait_for(lambda: len(replicasets(apps, namespace)) == 1, what="the first ReplicaSet")
    for revision in range(2, count + 1):
        apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"metadata": {
            "annotations": {"test/revision": str(revision)}}}}})
        wait_for(lambda r=revision: max(replicasets(apps, namespace).values()) == r,
                 what=f"ReplicaSet revision {revision}")


def test_the_deployment_controller_prunes_what_the_report_said_it_would(kube_api, namespace):
    apps = AppsV1Api(kube_api)
    deployment_with_revisions(kube_api, namespace, 7)
    before = replicasets(apps, namespace)

    report = run_task(kube_api, policy_for(namespace), "revisions")
    line = report.line("deployment", "web")
    assert (line["action"], line["result"]) == ("report", "done")
    assert line["reason"] == ("revisionHistory.maxLimit: revisionHistoryLimit 10 > maxLimit 3; "
                              "frees 3 ReplicaSets")
    freed = report.names("replicaset")
    assert freed == {name for name, rev in before.items() if rev in (1, 2, 3)}
    assert {report.line("replicaset", n)["owner"] for n in freed} == {"deployment/web"}

    run = run_task(kube_api, policy_for(namespace, PATCH), "revisions")
    assert run.line("deployment", "web")["result"] == "done"
    assert apps.read_namespaced_deployment("web", namespace).spec.revision_history_limit == 3
    wait_for(lambda: len(replicasets(apps, namespace)) == 4,
             what="the Deployment controller to prune to 1 + 3 ReplicaSets")
    assert set(replicasets(apps, namespace)) == set(before) - freed
    assert [(t, r) for t, r, _ in events_about(kube_api, namespace, "web")] == [
        ("Normal", "KubekeeperPatched")]
    assert run_task(kube_api, policy_for(namespace, PATCH), "revisions").lines == []


def revision(client: ApiClient, namespace: str, owner: dict, number: int) -> None:
    AppsV1Api(client).create_namespaced_controller_revision(namespace, {
        "metadata": {"name": f"{owner['name']}-r{number}", "ownerReferences": [owner]},
        "data": {"spec": {"template": {"metadata": {"annotations": {"n": str(number)}}}}},
        "revision": number})


def test_statefulsets_and_daemonsets_get_the_same_treatment(kube_api, namespace):
    apps = AppsV1Api(kube_api)
    selector = {"matchLabels": {"app": "db"}}
    sts = apps.create_namespaced_stateful_set(namespace, {
        "metadata": {"name": "db"},
        "spec": {"replicas": 0, "serviceName": "db", "selector": selector,
                 "template": pod_template({"app": "db"})}})
    apps.create_namespaced_daemon_set(namespace, {
        "metadata": {"name": "agent"},
        "spec": {"revisionHistoryLimit": 3, "selector": {"matchLabels": {"app": "agent"}},
                 "template": pod_template({"app": "agent"})}})
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
             "uid": sts.metadata.uid, "controller": True}
    for number in range(1, 7):
        revision(kube_api, namespace, owner, number)
    history = [r for r in apps.list_namespaced_controller_revision(namespace).items
               if r.metadata.owner_references[0].uid == sts.metadata.uid]

    run = run_task(kube_api, policy_for(namespace, PATCH), "revisions")

    line = run.line("statefulset", "db")
    assert (line["action"], line["result"], line["frees"]) == ("patch", "done",
                                                               max(0, len(history) - 4))
    assert apps.read_namespaced_stateful_set("db", namespace).spec.revision_history_limit == 3
    assert "agent" not in run.names("daemonset")
    apps.patch_namespaced_daemon_set("agent", namespace, {"spec": {"revisionHistoryLimit": 8}})
    again = run_task(kube_api, policy_for(namespace, PATCH), "revisions")
    assert again.line("daemonset", "agent")["result"] == "done"
    assert apps.read_namespaced_daemon_set("agent", namespace).spec.revision_history_limit == 3


OWNERLESS = "revisionHistory: {action: patch, ownerlessReplicaSets: {enabled: true, olderThan: 5m}}"


def test_ownerless_replicasets_are_deleted_only_when_opted_in(kube_api, namespace,
                                                              control_plane):
    apps = AppsV1Api(kube_api)
    for name, replicas in (("orphan", 0), ("busy", 1)):
        apps.create_namespaced_replica_set(namespace, {
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"rs": name}},
                     "template": pod_template({"rs": name})}})
    later = datetime.now(UTC) + timedelta(minutes=10)
    reported = OWNERLESS.replace("action: patch", "action: report")

    assert run_task(kube_api, policy_for(namespace), "revisions", now=later).lines == []
    only_said = run_task(kube_api, policy_for(namespace, reported), "revisions", now=later)
    assert only_said.line("replicaset", "orphan")["action"] == "report"
    noted = run_task(kube_api, policy_for(namespace, OWNERLESS), "revisions")
    assert noted.line("replicaset", "orphan")["action"] == "patch"
    assert run_task(kube_api, policy_for(namespace, OWNERLESS), "revisions").lines == []
    assert set(replicasets_any(apps, namespace)) == {"orphan", "busy"}
    run = run_task(kube_api, policy_for(namespace, OWNERLESS), "revisions", now=later)

    line = run.line("replicaset", "orphan")
    assert (line["action"], line["result"]) == ("delete", "done")
    assert line["reason"].startswith("revisionHistory.ownerlessReplicaSets: no owner, 0 replicas")
    assert run.names("replicaset") == {"orphan"}
    assert set(replicasets_any(apps, namespace)) == {"busy"}
    reapplied = control_plane.run_kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                          input=json.dumps(line["manifest"]))
    assert "replicaset.apps/orphan created (server dry run)" in reapplied.stdout


def test_a_replicaset_orphaned_a_moment_ago_is_young_however_old_it_is(kube_api, namespace):
    """``kubectl delete deploy --cascade=orphan`` bumps no managedFields time: the age
    counts from kubekeeper's own record of first seeing it ownerless."""
    apps = AppsV1Api(kube_api)
    deployment_with_revisions(kube_api, namespace, 1)
    time.sleep(4)
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Orphan")
    wait_for(lambda: not any(rs.metadata.owner_references for rs in
                             apps.list_namespaced_replica_set(namespace).items),
             what="the ReplicaSet orphaned by the garbage collector")
    policy = policy_for(namespace, OWNERLESS.replace("5m", "3s"))

    first = run_task(kube_api, policy, "revisions")

    [noted] = first.lines
    assert (noted["action"], noted["result"]) == ("patch", "done")
    [rs] = apps.list_namespaced_replica_set(namespace).items
    assert "kubekeeper/ownerless-since" in rs.metadata.annotations
    assert run_task(kube_api, policy, "revisions").lines == []
    later = run_task(kube_api, policy, "revisions", now=datetime.now(UTC) + timedelta(seconds=5))
    [line] = later.lines
    assert (line["kind"], line["action"], line["result"]) == ("replicaset", "delete", "done")
    assert replicasets_any(apps, namespace) == []


def test_a_deployment_being_deleted_is_not_patched(kube_api, namespace):
    """A finalizer holds a deleted Deployment with a deletionTimestamp (as the garbage
    collector does during ``--cascade=orphan``): it is left alone, never patched."""
    apps = AppsV1Api(kube_api)
    deployment_with_revisions(kube_api, namespace, 5)
    apps.patch_namespaced_deployment("web", namespace,
                                     {"metadata": {"finalizers": ["kubekeeper.test/hold"]}})
    apps.delete_namespaced_deployment("web", namespace)
    try:
        run = run_task(kube_api, policy_for(namespace, PATCH), "revisions")
        held = apps.read_namespaced_deployment("web", namespace)
        assert held.metadata.deletion_timestamp and held.spec.revision_history_limit == 10
        assert run.lines == []
    finally:
        apps.patch_namespaced_deployment("web", namespace, {"metadata": {"finalizers": None}})


def replicasets_any(apps: AppsV1Api, namespace: str) -> list[str]:
    return [rs.metadata.name for rs in apps.list_namespaced_replica_set(namespace).items
            if not rs.metadata.deletion_timestamp]
