"""What keeps the cluster tasks safe, on the real control plane: scope, opt-outs, dry-run,
the cap, conflicts, vanished objects, missing permissions and the CLI's exit codes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import yaml
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    BatchV1Api,
    CoreV1Api,
    RbacAuthorizationV1Api,
)

from agents.cli import main
from agents.cluster.api import KubeApi
from tests.cluster_runs import (
    Interleaved,
    ago,
    events_about,
    old_job,
    pod_template,
    policy_for,
    run_task,
)

DELETE = "completedJobs: {action: delete}"


def job_names(client: ApiClient, namespace: str) -> set[str]:
    return {j.metadata.name for j in BatchV1Api(client).list_namespaced_job(namespace).items
            if not j.metadata.deletion_timestamp}


def deployment(client: ApiClient, namespace: str, name: str = "web") -> None:
    AppsV1Api(client).create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": pod_template({"app": name})}})


@pytest.fixture
def other_namespace(kube_api: ApiClient) -> Iterator[str]:
    core = CoreV1Api(kube_api)
    name = f"kk-other-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_excluded_and_ignored_namespaces_annotations_and_overrides(kube_api, namespace,
                                                                   other_namespace):
    for ns in (namespace, other_namespace):
        old_job(kube_api, ns, "old", days=0.5)
    old_job(kube_api, namespace, "kept", days=3, annotations={"kubekeeper/ignore": "true"})
    overrides = f"""\
overrides:
  - namespaces: ["{namespace}"]
    completedJobs: {{succeededTTL: 1h}}
"""
    wider = policy_for(namespace, DELETE, overrides=overrides, also=(other_namespace,),
                       exclude=(other_namespace,))

    run = run_task(kube_api, wider, "jobs")
    assert {(x["namespace"], x["name"]) for x in run.lines} == {(namespace, "old")}
    assert job_names(kube_api, other_namespace) == {"old"}
    assert job_names(kube_api, namespace) == {"kept"}

    CoreV1Api(kube_api).patch_namespace(
        other_namespace, {"metadata": {"annotations": {"kubekeeper/ignore": "true"}}})
    opted_out = policy_for(other_namespace, "completedJobs: {action: delete, succeededTTL: 1h}")
    assert run_task(kube_api, opted_out, "jobs").lines == []
    assert job_names(kube_api, other_namespace) == {"old"}


def test_server_side_dry_run_changes_nothing(kube_api, namespace):
    old_job(kube_api, namespace, "old")
    deployment(kube_api, namespace)
    apps, core = AppsV1Api(kube_api), CoreV1Api(kube_api)
    everything = (f"{DELETE}\nrevisionHistory: {{action: patch}}\n"
                  "resourceRequests: {action: limitrange}")

    run = run_task(kube_api, policy_for(namespace, everything, dry_run=True), "all")

    mutating = [x for x in run.lines if x["action"] != "report"]
    assert {(x["task"], x["kind"], x["action"]) for x in mutating} == {
        ("jobs", "job", "delete"), ("revisions", "deployment", "patch"),
        ("requests", "limitrange", "create")}
    assert all(x["result"] == "planned" and x["dry_run"] for x in mutating)
    assert all(x["verdict"].startswith("accepted by the API server") for x in mutating)
    assert job_names(kube_api, namespace) == {"old"}
    web = apps.read_namespaced_deployment("web", namespace)  # its status changes, never its spec
    assert (web.metadata.generation, web.spec.revision_history_limit) == (1, 10)
    assert core.list_namespaced_limit_range(namespace).items == []
    assert core.list_namespaced_event(namespace, field_selector="source=kubekeeper").items == []
    assert run.summary["task"] == "all" and run.summary["results"]["planned"] == 3


def test_the_deletion_cap_refuses_the_whole_plan(kube_api, namespace):
    for name in ("a", "b", "c"):
        old_job(kube_api, namespace, name)
    deployment(kube_api, namespace)
    rules = f"{DELETE}\nrevisionHistory: {{action: patch}}"

    run = run_task(kube_api, policy_for(namespace, rules, cap=2), "all")

    assert run.summary["aborted"].startswith(
        "plan has 3 destructive actions (deletions and truncations), more than "
        "maxDeletionsPerRun=2")
    assert {x["result"] for x in run.lines if x["action"] != "report"} == {"skipped"}
    assert job_names(kube_api, namespace) == {"a", "b", "c"}
    limit = AppsV1Api(kube_api).read_namespaced_deployment("web", namespace).spec
    assert limit.revision_history_limit == 10


def test_a_concurrent_update_is_re_read_and_decided_again(kube_api, namespace):
    apps, batch = AppsV1Api(kube_api), BatchV1Api(kube_api)
    deployment(kube_api, namespace)
    old_job(kube_api, namespace, "opted-out-meanwhile")
    old_job(kube_api, namespace, "relabelled-meanwhile")

    def relabel(kind: str, name: str):
        read = {"deployment": apps.patch_namespaced_deployment,
                "job": batch.patch_namespaced_job}[kind]
        return lambda: read(name, namespace, {"metadata": {"labels": {"touched": "yes"}}})

    api = Interleaved(kube_api, {
        "web": relabel("deployment", "web"),
        "relabelled-meanwhile": relabel("job", "relabelled-meanwhile"),
        "opted-out-meanwhile": lambda: batch.patch_namespaced_job(
            "opted-out-meanwhile", namespace,
            {"metadata": {"annotations": {"kubekeeper/ignore": "true"}}})})
    rules = f"{DELETE}\nrevisionHistory: {{action: patch}}"
    run = run_task(kube_api, policy_for(namespace, rules), "all", api=api)

    web = run.line("deployment", "web", task="revisions")
    assert (web["result"], web["replanned"]) == ("done", True)
    patched = apps.read_namespaced_deployment("web", namespace)
    assert patched.spec.revision_history_limit == 3 and patched.metadata.labels == {
        "touched": "yes"}
    assert run.line("job", "relabelled-meanwhile", task="jobs")["result"] == "done"
    skipped = run.line("job", "opted-out-meanwhile", task="jobs")
    assert skipped["result"] == "skipped" and "no longer applies" in skipped["error"]
    assert job_names(kube_api, namespace) == {"opted-out-meanwhile"}
    assert api.counter.by_request["get deployments"] == 1
    assert api.counter.by_request["get jobs"] == 2


def test_a_concurrent_delete_counts_as_done(kube_api, namespace):
    old_job(kube_api, namespace, "vanishing")
    batch = BatchV1Api(kube_api)
    api = Interleaved(kube_api, {"vanishing": lambda: batch.delete_namespaced_job(
        "vanishing", namespace, propagation_policy="Background")})

    run = run_task(kube_api, policy_for(namespace, DELETE), "jobs", api=api)

    line = run.line("job", "vanishing")
    assert (line["result"], line["note"], line["error"]) == ("done", "already gone (404)", None)
    assert run.summary["errors"] == 0 and events_about(kube_api, namespace, "vanishing") == []


@pytest.fixture
def narrow_client(kube_api: ApiClient, namespace: str) -> Iterator[ApiClient]:
    """Impersonates a ServiceAccount that may read everything but delete only pods (and
    keep the recycle bin)."""
    rbac, name = RbacAuthorizationV1Api(kube_api), f"{namespace}-narrow"
    user = f"system:serviceaccount:{namespace}:narrow"
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": [
        {"apiGroups": ["", "batch"], "resources": ["namespaces", "jobs", "cronjobs", "pods"],
         "verbs": ["get", "list"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": namespace}]})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "delete-pods"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "create"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "delete-pods"}, "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "delete-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": namespace}]})
    client = ApiClient(kube_api.configuration)
    client.set_default_header("Impersonate-User", user)
    yield client
    client.close()
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def test_forbidden_names_the_missing_permission_and_the_run_goes_on(kube_api, namespace,
                                                                    narrow_client):
    old_job(kube_api, namespace, "old")
    core = CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "leftover"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}})
    core.patch_namespaced_pod_status("leftover", namespace, {"status": {
        "phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False",
                                              "lastTransitionTime": ago(minutes=1).isoformat()}]}})
    rules = "completedJobs: {action: delete, orphanPods: true, succeededTTL: 0s}"

    run = run_task(narrow_client, policy_for(namespace, rules), "jobs")

    denied = run.line("job", "old")
    assert denied["result"] == "failed"
    assert denied["error"].startswith(f"forbidden: cannot delete jobs in namespace {namespace}: ")
    assert run.line("pod", "leftover")["result"] == "done"
    assert job_names(kube_api, namespace) == {"old"}
    assert run.summary["errors"] == 1 and run.summary["results"] == {"done": 1, "failed": 1}

    dry = run_task(narrow_client, policy_for(namespace, rules, dry_run=True), "jobs")
    assert dry.line("job", "old")["verdict"].startswith("rejected: forbidden: cannot delete jobs")


def test_the_cli_runs_plans_and_maps_exit_codes(kube_api, namespace, control_plane, tmp_path,
                                                capsys):
    old_job(kube_api, namespace, "old")
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(yaml.safe_dump({
        "apiVersion": "kubekeeper/v1", "dryRun": False,
        "cluster": {"namespaces": {"include": [namespace]},
                    "recycleBin": {"namespace": namespace},
                    "completedJobs": {"action": "delete"}}}))
    args = ["--policy", str(policy_file), "--kubeconfig", str(control_plane.kubeconfig),
            "--log-format", "json"]

    assert main(["cluster", "plan", "jobs", *args]) == 0
    [planned, summary] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (planned["result"], planned["dry_run"], summary["event"]) == (
        "planned", True, "run.summary")
    assert job_names(kube_api, namespace) == {"old"}

    assert main(["cluster", "run", "jobs", *args]) == 0
    assert job_names(kube_api, namespace) == set()

    broken = yaml.safe_load(control_plane.kubeconfig.read_text())
    broken["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    (tmp_path / "broken").write_text(yaml.safe_dump(broken))
    assert main(["cluster", "run", "jobs", "--policy", str(policy_file),
                 "--kubeconfig", str(tmp_path / "broken")]) == 3


def test_requests_are_counted_page_by_page(kube_api, namespace):
    for name in ("a", "b", "c", "d"):
        old_job(kube_api, namespace, name, days=0.1)
    api = KubeApi(kube_api)
    run_task(kube_api, policy_for(namespace, DELETE), "jobs", api=api)
    pages = api.counter.by_request
    assert pages["list jobs"] >= 2  # four Jobs, page size 3
    assert set(pages) == {"list namespaces", "list jobs", "list cronjobs", "list secrets"}
