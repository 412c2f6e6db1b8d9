"""The requests task against the real control plane: owners, LimitRange, template patches."""

from __future__ import annotations

from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from scripts.localenv.kube_jobs import job
from tests.cluster_runs import (
    container,
    events_about,
    pod_template,
    policy_for,
    run_task,
)
from tests.polling import wait_for

SIZED = {"cpu": "50m", "memory": "64Mi"}


def deployment(client: ApiClient, namespace: str, name: str, *containers: dict,
               replicas: int = 1) -> None:
    AppsV1Api(client).create_namespaced_deployment(namespace, {
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": pod_template({"app": name}, *containers)}})


def cronjob(client: ApiClient, namespace: str, name: str, *containers: dict) -> None:
    BatchV1Api(client).create_namespaced_cron_job(namespace, {
        "metadata": {"name": name},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True, "jobTemplate": {"spec": {
            "template": pod_template({}, *containers, restart="Never")}}}})


def test_findings_are_reported_once_against_each_top_level_owner(kube_api, namespace):
    apps, core = AppsV1Api(kube_api), CoreV1Api(kube_api)
    deployment(kube_api, namespace, "web", container("app", {"cpu": "10m"}))
    deployment(kube_api, namespace, "sized", container("app", SIZED))
    cronjob(kube_api, namespace, "nightly", container("task", {"memory": "1Mi"}))
    BatchV1Api(kube_api).create_namespaced_job(namespace, job("bare-job", managed_by=None))
    core.create_namespaced_pod(namespace, {"metadata": {"name": "bare-pod"},
                                           "spec": {"containers": [container()]}})
    wait_for(lambda: len([p for p in core.list_namespaced_pod(namespace).items
                          if p.metadata.owner_references]) >= 3,
             what="the pods of both Deployments and of the Job")

    run = run_task(kube_api, policy_for(namespace), "requests")

    assert {(x["kind"], x["name"]) for x in run.lines} == {
        ("deployment", "web"), ("cronjob", "nightly"), ("job", "bare-job"), ("pod", "bare-pod")}
    web = run.line("deployment", "web")
    assert (web["action"], web["result"]) == ("report", "done")
    assert web["reason"] == "resourceRequests.require: container app lacks requests.memory"
    assert web["missing"] == {"app": ["requests.memory"]}
    assert run.line("cronjob", "nightly")["missing"] == {"task": ["requests.cpu"]}
    assert len(apps.list_namespaced_replica_set(namespace).items) == 2


def test_limitrange_is_created_then_updated_and_nothing_restarts(kube_api, namespace):
    apps, core = AppsV1Api(kube_api), CoreV1Api(kube_api)
    deployment(kube_api, namespace, "web", container(), replicas=0)
    template = apps.read_namespaced_deployment("web", namespace).spec.template.to_dict()

    run = run_task(kube_api, policy_for(namespace, "resourceRequests: {action: limitrange}"),
                   "requests")
    created = run.line("limitrange", "kubekeeper-defaults")
    assert (created["action"], created["result"]) == ("create", "done")
    limits = core.read_namespaced_limit_range("kubekeeper-defaults", namespace).spec.limits
    assert [(i.type, i.default_request) for i in limits] == [
        ("Container", {"cpu": "100m", "memory": "128Mi"})]
    core.create_namespaced_pod(namespace, {"metadata": {"name": "new"},
                                           "spec": {"containers": [container()]}})
    new = core.read_namespaced_pod("new", namespace).spec.containers[0].resources.requests
    assert new == {"cpu": "100m", "memory": "128Mi"}

    core.patch_namespaced_limit_range("kubekeeper-defaults", namespace, {"spec": {"limits": [
        {"type": "PersistentVolumeClaim", "max": {"storage": "5Gi"}},
        {"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}})
    raised = "resourceRequests: {action: limitrange, defaults: {cpu: 250m}}"
    run = run_task(kube_api, policy_for(namespace, raised), "requests")
    updated = run.line("limitrange", "kubekeeper-defaults")
    assert (updated["action"], updated["result"]) == ("patch", "done")
    limits = core.read_namespaced_limit_range("kubekeeper-defaults", namespace).spec.limits
    assert [(i.type, i.default_request, i.max) for i in limits] == [
        ("PersistentVolumeClaim", None, {"storage": "5Gi"}),
        ("Container", {"cpu": "250m", "memory": "128Mi"}, None)]
    assert apps.read_namespaced_deployment("web", namespace).spec.template.to_dict() == template
    assert run_task(kube_api, policy_for(namespace, raised), "requests").names(
        "limitrange") == set()


def test_patch_fills_only_missing_requests_and_rolls_out(kube_api, namespace):
    apps, batch = AppsV1Api(kube_api), BatchV1Api(kube_api)
    deployment(kube_api, namespace, "web", container("app", {"cpu": "10m"}),
               container("sidecar", SIZED), replicas=0)
    wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="a ReplicaSet")
    cronjob(kube_api, namespace, "nightly", container("task"))

    run = run_task(kube_api, policy_for(namespace, "resourceRequests: {action: patch}"),
                   "requests")

    assert run.line("deployment", "web")["result"] == "done"
    assert run.line("deployment", "web")["reason"].endswith("a rollout restarts its pods")
    containers = apps.read_namespaced_deployment("web", namespace).spec.template.spec.containers
    assert [(c.name, c.resources.requests) for c in containers] == [
        ("app", {"cpu": "10m", "memory": "128Mi"}), ("sidecar", SIZED)]
    wait_for(lambda: len(apps.list_namespaced_replica_set(namespace).items) == 2,
             what="the rollout's new ReplicaSet")
    task = batch.read_namespaced_cron_job("nightly", namespace).spec.job_template.spec.template
    assert task.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert [(t, r) for t, r, _ in events_about(kube_api, namespace, "nightly")] == [
        ("Normal", "KubekeeperPatched")]
    assert run_task(kube_api, policy_for(namespace, "resourceRequests: {action: patch}"),
                    "requests").lines == []
