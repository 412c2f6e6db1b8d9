"""The requests planner with usage measured: evidence, patches, minInterval, limits, resize."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from agents.actions import Verb
from agents.cluster import plan_requests, records
from agents.cluster.inventory import Inventory
from agents.cluster.recommend import Measured
from agents.cluster.usage import ContainerUsage
from agents.report import rfc3339
from tests.unit.test_cluster_plan_requests import NOW, action_is, container, meta, policies

STAMP = int(NOW.timestamp())
MI = 2**20


def used(cores: float, memory_mi: float, hours: float = 48, every: int = 600
         ) -> ContainerUsage:
    start = STAMP - int(hours * 3600)
    record = ContainerUsage.started(start)
    for when in range(start, STAMP + 1, every):
        record = record.add(cores, memory_mi * MI, when, 86400, 8 * 86400)
    return record


def measured(**entries: ContainerUsage) -> Measured:
    """Entries keyed ``kind__name__container`` in namespace apps."""
    return Measured("metrics.k8s.io", {("apps", *k.split("__")): v for k, v in entries.items()})


def deployment(name: str, *containers: dict, annotations: dict | None = None):
    data = meta(name)
    data["annotations"] = annotations or {}
    return records.workload("deployment")({"metadata": data, "spec": {"template": {"spec": {
        "containers": list(containers)}}}})


def running_pod(name: str, *containers: dict, owner: str = "ReplicaSet/web-1"):
    return records.pod({"metadata": meta(name, owner), "spec": {"containers": list(containers)},
                        "status": {"phase": "Running"}})


def replicaset():
    return records.replicaset({"metadata": meta("web-1", "Deployment/web"),
                               "spec": {"template": {"spec": {"containers": []}}}})


SET = {"cpu": "100m", "memory": "512Mi"}
BURNS = used(0.2, 300)  # 200m, 300Mi for two days


def plan(inventory: Inventory, yaml: str = ""):
    return plan_requests.findings(inventory, policies(yaml), NOW)


def test_a_report_line_carries_the_evidence_for_each_resource():
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          measured=measured(deployment__web__app=BURNS))
    [line] = plan(inventory)
    assert (line.verb, line.rule) == (Verb.REPORT, "resourceRequests.recommend")
    cpu = line.details["recommendations"]["app"]["cpu"]
    assert cpu == {"request": "100m", "recommended": cpu["recommended"], "usage": "216m",
                   "percentile": 90, "margin": 15, "window": "8d", "history": "2d",
                   "samples": 289, "source": "metrics.k8s.io"}
    assert cpu["recommended"] == "249m"
    memory = line.details["recommendations"]["app"]["memory"]
    assert (memory["request"], memory["recommended"], memory["percentile"]) == (
        "512Mi", "345Mi", "peak")
    assert line.why.startswith("container app: cpu 100m → 249m (p90 216m +15% over 2d of 8d, "
                               "289 samples, metrics.k8s.io), memory 512Mi → 345Mi (peak")


def test_requests_within_min_change_of_the_recommendation_are_left_alone():
    close = {"cpu": "230m", "memory": "330Mi"}
    inventory = Inventory(deployment=(deployment("web", container("app", close)),),
                          measured=measured(deployment__web__app=BURNS))
    assert plan(inventory) == []


def test_before_min_history_a_missing_request_gets_the_default_and_the_line_says_why():
    inventory = Inventory(deployment=(deployment("web", container("app", {"cpu": "1"}),
                                                 container("new")),),
                          measured=measured(deployment__web__app=used(0.2, 300, hours=3)))
    [line] = plan(inventory, action_is("patch"))
    assert line.rule == "resourceRequests.require"
    assert line.why.startswith(
        "container app lacks requests.memory (usage: 3h of usage history (19 samples), 1d "
        "needed); container new lacks requests.cpu, requests.memory (usage: no usage seen yet)")
    spec = line.details["patch"]["spec"]["template"]["spec"]
    assert spec["containers"] == [
        {"name": "app", "resources": {"requests": {"memory": "128Mi"}}},
        {"name": "new", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]
    assert "annotations" not in line.details["patch"]["metadata"]


def test_before_min_history_a_container_with_requests_set_gets_a_line_with_its_history():
    inventory = Inventory(deployment=(deployment("web", container("app", SET),
                                                 container("idle", SET)),),
                          measured=measured(deployment__web__app=used(0.2, 300, hours=3)))
    [line] = plan(inventory, action_is("patch"))
    assert (line.verb, line.rule) == (Verb.REPORT, "resourceRequests.recommend")
    assert line.why == ("container app: no recommendation yet: 3h of usage history "
                        "(19 samples), 1d needed")
    assert line.details["history"] == {"app": "3h of usage history (19 samples), 1d needed"}
    assert "patch" not in line.details


def test_no_line_about_history_where_the_policy_requires_no_cpu_or_memory():
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          measured=measured(deployment__web__app=used(0.2, 300, hours=3)))
    assert plan(inventory, "cluster:\n  resourceRequests: {require: []}\n") == []


def test_patch_writes_the_recommendations_and_records_when():
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          measured=measured(deployment__web__app=BURNS))
    [line] = plan(inventory, action_is("patch"))
    assert line.verb is Verb.PATCH and line.why.endswith("a rollout restarts its pods")
    patch = line.details["patch"]
    assert patch["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "resources": {"requests": {"cpu": "249m", "memory": "345Mi"}}}]
    assert patch["metadata"] == {"annotations": {records.REQUESTS_PATCHED: rfc3339(NOW)},
                                 "resourceVersion": "5"}


def test_at_most_one_patch_per_min_interval():
    recently = {records.REQUESTS_PATCHED: rfc3339(NOW - timedelta(days=2))}
    long_ago = {records.REQUESTS_PATCHED: rfc3339(NOW - timedelta(days=8))}
    for written, verb in ((recently, Verb.REPORT), (long_ago, Verb.PATCH)):
        inventory = Inventory(deployment=(deployment("web", container("app", SET),
                                                     annotations=written),),
                              measured=measured(deployment__web__app=BURNS))
        [line] = plan(inventory, action_is("patch"))
        assert line.verb is verb
    assert line.details["recommendations"]
    [held] = plan(replace(inventory, deployment=(deployment("web", container("app", SET),
                                                            annotations=recently),)),
                  action_is("patch"))
    assert held.why.endswith("not patched: requests last patched 2d ago "
                             "(recommend.minInterval 7d)")


def test_a_limit_below_the_new_request_is_reported_never_patched():
    limited = container("app", SET, limits={"cpu": "200m"})
    inventory = Inventory(deployment=(deployment("web", limited),),
                          measured=measured(deployment__web__app=BURNS))
    [line] = plan(inventory, action_is("patch"))
    assert line.verb is Verb.REPORT
    assert "limits.cpu 200m of container app is below the recommended request 249m" in line.why
    assert line.why.endswith("not patched: a limit would end up below its request "
                             "(limits are never lowered)")


def test_without_a_source_the_planner_does_what_it_did_before_usage():
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          measured=Measured(None, {("apps", "deployment", "web", "app"): BURNS}))
    assert plan(inventory) == []


def test_resize_changes_running_pods_in_place_and_leaves_a_rolling_template():
    pod_container = {**container("app", SET), "resizePolicy": [
        {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          replicaset=(replicaset(),),
                          pod=(running_pod("web-1-a", pod_container),
                               running_pod("web-1-b", container("app", {"cpu": "249m",
                                                                        "memory": "345Mi"}))),
                          measured=measured(deployment__web__app=BURNS))
    owner, resize = plan(inventory, action_is("resize"))
    assert owner.verb is Verb.REPORT and "the pod template is left as it is" in owner.why
    assert (resize.kind, resize.name, resize.verb) == ("pod", "web-1-a", Verb.PATCH)
    assert resize.details["resource"] == "pod/resize"
    assert resize.details["patch"] == {
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "249m"}}}]},
        "metadata": {"resourceVersion": "5"}}
    assert "memory of container app left: its resizePolicy is RestartContainer" in resize.why


def test_resize_keeps_a_pod_whose_limit_is_in_the_way_and_adds_no_request():
    inventory = Inventory(
        pod=(running_pod("solo", container("app", {"cpu": "100m"}, limits={"cpu": "150m"}),
                         owner=None),),
        measured=measured(pod__solo__app=BURNS))
    owner, resize = plan(inventory, action_is("resize"))
    assert owner.verb is Verb.REPORT and owner.why.endswith("(limits are never lowered)")
    assert resize.skip.startswith("limits.cpu 150m of container app is below")
    assert "memory of container app left: it sets no request" in resize.why


def test_a_resize_the_kubelet_refused_is_reported_as_it_said_and_not_sent_again():
    """The pod's spec holds the refused requests already, so only its condition tells."""
    refused = records.pod({"metadata": meta("web-1-a", "ReplicaSet/web-1"),
                           "spec": {"containers": [container("app", SET)]},
                           "status": {"phase": "Running", "conditions": [
                               {"type": "PodResizePending", "status": "True",
                                "reason": "Infeasible",
                                "message": "Node didn't have enough capacity: cpu"}]}})
    inventory = Inventory(deployment=(deployment("web", container("app", SET)),),
                          replicaset=(replicaset(),), pod=(refused,),
                          measured=measured(deployment__web__app=BURNS))
    _owner, line = plan(inventory, action_is("resize"))
    assert (line.kind, line.name, line.verb, line.skip) == ("pod", "web-1-a", Verb.REPORT, None)
    assert line.why == ("the kubelet has not applied the resize: PodResizePending Infeasible: "
                        "Node didn't have enough capacity: cpu (owner deployment/web)")


def test_a_resize_in_progress_or_done_is_no_pending_one():
    for conditions in ([], [{"type": "PodResizeInProgress", "status": "True", "reason": ""}],
                       [{"type": "PodResizePending", "status": "False", "reason": "Deferred"}]):
        pod = records.pod({"metadata": meta("p"), "spec": {"containers": []},
                           "status": {"phase": "Running", "conditions": conditions}})
        assert pod.resize_pending is None
    failed = records.pod({"metadata": meta("p"), "spec": {"containers": []}, "status": {
        "conditions": [{"type": "PodResizeInProgress", "status": "True", "reason": "Error",
                        "message": "runtime said no"}]}})
    assert failed.resize_pending == "PodResizeInProgress Error: runtime said no"
