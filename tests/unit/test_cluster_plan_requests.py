"""The requests planner: findings per top-level owner, LimitRanges, template patches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents.actions import Verb
from agents.cluster import plan_requests, records
from agents.cluster.inventory import Inventory, scope
from agents.cluster.records import Namespace
from agents.policy_loader import parse_policy

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def policies(cluster_yaml: str = "", namespaces: tuple[str, ...] = ("apps",)):
    policy = parse_policy("apiVersion: kubekeeper/v1\n" + cluster_yaml)
    return scope(policy, [Namespace(n, False, False) for n in namespaces])


def action_is(name: str) -> str:
    return f"cluster:\n  resourceRequests: {{action: {name}}}\n"


def container(name: str, requests: dict | None = None, limits: dict | None = None) -> dict:
    return {"name": name, "image": "busybox",
            "resources": {"requests": requests or {}, "limits": limits or {}}}


def meta(name: str, controller: str | None = None, ns: str = "apps") -> dict:
    data: dict = {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "5"}
    if controller:
        kind, owner = controller.split("/")
        data["ownerReferences"] = [{"kind": kind, "name": owner, "uid": f"uid-{owner}",
                                    "controller": True}]
    return data


def workload(kind: str, name: str, *containers: dict, init: tuple[dict, ...] = ()):
    pod_spec = {"containers": list(containers), "initContainers": list(init)}
    return records.workload(kind)({"metadata": meta(name),
                                   "spec": {"template": {"spec": pod_spec}}})


def templated(parse, name: str, *containers: dict, controller: str | None = None):
    return parse({"metadata": meta(name, controller),
                  "spec": {"template": {"spec": {"containers": list(containers)}}}})


def pod(name: str, *containers: dict, controller: str | None = None, phase: str = "Pending"):
    return records.pod({"metadata": meta(name, controller),
                        "spec": {"containers": list(containers)}, "status": {"phase": phase}})


FULL = container("full", {"cpu": "1", "memory": "1Gi"})
BARE = container("app")


def plan(inventory: Inventory, rules=None):
    rules = rules if rules is not None else policies()
    return (plan_requests.findings(inventory, rules, NOW)
            + plan_requests.limitranges(inventory, rules, NOW))


def test_findings_name_container_and_missing_requests_against_the_owner():
    inventory = Inventory(
        deployment=(workload("deployment", "web", FULL, container("app", {"cpu": "1"}),
                             init=(container("setup"),)),),
        replicaset=(templated(records.replicaset, "web-1", BARE,
                              controller="Deployment/web"),),
        pod=(pod("web-1-x", BARE, controller="ReplicaSet/web-1"),))
    [action] = plan(inventory)
    assert (action.kind, action.name, action.verb) == ("deployment", "web", Verb.REPORT)
    assert action.rule == "resourceRequests.require"
    assert action.why == ("container app lacks requests.memory; "
                          "init container setup lacks requests.cpu, requests.memory")
    assert action.details["missing"] == {"app": ["requests.memory"],
                                         "setup": ["requests.cpu", "requests.memory"]}


def test_a_limit_counts_as_the_request_the_server_would_copy_from_it():
    limited = container("app", limits={"cpu": "1", "memory": "1Gi"})
    assert plan(Inventory(statefulset=(workload("statefulset", "db", limited),))) == []


def test_required_limits_are_reported_under_their_own_rule():
    rules = policies("cluster:\n  resourceRequests: {requireLimits: [memory], action: patch}\n")
    [action] = plan(Inventory(daemonset=(workload("daemonset", "agent", FULL),)), rules)
    assert (action.verb, action.rule) == (Verb.REPORT, "resourceRequests.requireLimits")
    assert action.details["missing"] == {"full": ["limits.memory"]}


def test_every_top_level_owner_kind_is_checked_and_owned_objects_are_not():
    inventory = Inventory(
        cronjob=(records.cronjob({"metadata": meta("nightly"), "spec": {"jobTemplate": {
            "spec": {"template": {"spec": {"containers": [BARE]}}}}}}),),
        job=(templated(records.job, "bare-job", BARE),
             templated(records.job, "nightly-1", BARE, controller="CronJob/nightly")),
        replicaset=(templated(records.replicaset, "bare-rs", BARE),),
        pod=(pod("bare-pod", BARE), pod("done", BARE, phase="Succeeded"),
             pod("nightly-1-x", BARE, controller="Job/nightly-1")))
    found = sorted((a.kind, a.name) for a in plan(inventory))
    assert found == [("cronjob", "nightly"), ("job", "bare-job"), ("pod", "bare-pod"),
                     ("replicaset", "bare-rs")]


def test_finished_bare_jobs_start_no_containers_and_are_not_checked():
    done = records.job({"metadata": meta("migrate"), "spec": {"template": {"spec": {
        "containers": [BARE]}}}, "status": {"completionTime": "2025-05-01T00:00:00Z",
        "conditions": [{"type": "Complete", "status": "True"}]}})
    running = templated(records.job, "import", BARE)
    assert [a.name for a in plan(Inventory(job=(done, running)))] == ["import"]


def test_patch_fills_only_the_missing_requests_of_the_template():
    inventory = Inventory(deployment=(workload("deployment", "web", FULL,
                                               container("app", {"cpu": "250m"}),
                                               init=(container("setup"),)),))
    [action] = plan(inventory, policies(action_is("patch")))
    assert (action.verb, action.details["patchType"]) == (Verb.PATCH, "strategic")
    assert action.why.endswith("filling policy defaults; a rollout restarts its pods")
    assert action.details["patch"] == {
        "metadata": {"resourceVersion": "5"},
        "spec": {"template": {"spec": {
            "containers": [{"name": "app", "resources": {"requests": {"memory": "128Mi"}}}],
            "initContainers": [{"name": "setup", "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}}


def test_patch_reaches_a_cronjobs_job_template_and_reports_immutable_pod_specs():
    inventory = Inventory(
        cronjob=(records.cronjob({"metadata": meta("nightly"), "spec": {"jobTemplate": {
            "spec": {"template": {"spec": {"containers": [BARE]}}}}}}),),
        pod=(pod("bare-pod", BARE),))
    by_kind = {a.kind: a for a in plan(inventory, policies(action_is("patch")))}
    template = by_kind["cronjob"].details["patch"]["spec"]["jobTemplate"]["spec"]["template"]
    assert template["spec"]["containers"][0]["name"] == "app"
    assert by_kind["pod"].verb is Verb.REPORT
    assert by_kind["pod"].why.endswith("(a pod's pod spec cannot be patched)")


def limitrange(ns: str, limits: list, ignored: bool = False) -> records.LimitRange:
    data = meta("kubekeeper-defaults", ns=ns)
    if ignored:
        data["annotations"] = {"kubekeeper/ignore": "true"}
    return records.limitrange({"metadata": data, "spec": {"limits": limits}})


def test_limitrange_is_created_in_every_namespace_in_scope():
    rules = policies(action_is("limitrange"), namespaces=("a", "b", "kube-system"))
    actions = plan(Inventory(), rules)
    assert [(a.verb, a.namespace, a.name) for a in actions] == [
        (Verb.CREATE, "a", "kubekeeper-defaults"), (Verb.CREATE, "b", "kubekeeper-defaults")]
    assert actions[0].details["body"]["spec"] == {
        "limits": [{"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}


def test_limitrange_is_updated_only_when_it_differs_and_keeps_other_items():
    rules = policies(action_is("limitrange"), namespaces=("same", "old", "mine"))
    pvc = {"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}}
    inventory = Inventory(limitrange=(
        limitrange("same", [{"type": "Container",
                             "defaultRequest": {"cpu": "0.1", "memory": "128Mi"}}]),
        limitrange("old", [pvc, {"type": "Container", "max": {"cpu": "2"},
                                 "defaultRequest": {"cpu": "50m"}}]),
        limitrange("mine", [], ignored=True)))
    [action] = plan(inventory, rules)
    assert (action.verb, action.namespace) == (Verb.PATCH, "old")
    assert action.why == "defaultRequest cpu=50m differs from cpu=100m, memory=128Mi"
    assert json.dumps(action.details["patch"]["spec"]["limits"]) == json.dumps([
        pvc, {"type": "Container", "max": {"cpu": "2"},
              "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}])
    assert action.details["patch"]["metadata"] == {"resourceVersion": "5"}


def test_disabled_or_out_of_scope_checks_nothing():
    inventory = Inventory(deployment=(workload("deployment", "web", BARE),))
    nothing_required = "cluster:\n  resourceRequests: {action: limitrange, require: []}\n"
    assert plan(inventory, policies(nothing_required)) == []
    assert plan(inventory, policies("cluster:\n  resourceRequests: {enabled: false}\n")) == []
    assert plan(inventory, policies(namespaces=("other",))) == []
