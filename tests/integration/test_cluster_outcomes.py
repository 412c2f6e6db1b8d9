"""What each outcome means, on the real control plane: 404s on creates and patches,
dry runs that never say done, creates whose answer was lost, Jobs of other controllers,
and the Warning Events that tell the cluster what kubekeeper did not do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import urllib3
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, CoreV1Api

from agents.cluster.api import KubeApi
from tests.cluster_runs import (
    Interleaved,
    events_about,
    exists,
    old_job,
    pod_template,
    policy_for,
    run_task,
)
from tests.polling import wait_for

DELETE = "completedJobs: {action: delete}"
LIMITRANGES = "resourceRequests: {action: limitrange}"


@pytest.fixture
def doomed_namespace(kube_api: ApiClient) -> Iterator[str]:
    """A namespace the test itself deletes mid-run."""
    core = CoreV1Api(kube_api)
    name = f"kk-doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    if exists(core.read_namespace, name):
        core.delete_namespace(name)


def delete_namespace_and_wait(client: ApiClient, name: str) -> None:
    core = CoreV1Api(client)
    core.delete_namespace(name)
    wait_for(lambda: not exists(core.read_namespace, name), timeout=60,
             what=f"namespace {name} to be gone")


def test_a_create_into_a_namespace_deleted_meanwhile_failed(kube_api, doomed_namespace):
    api = Interleaved(kube_api, {"kubekeeper-defaults": lambda: delete_namespace_and_wait(
        kube_api, doomed_namespace)})

    run = run_task(kube_api, policy_for(doomed_namespace, LIMITRANGES), "requests", api=api)

    line = run.line("limitrange", "kubekeeper-defaults")
    assert (line["action"], line["result"]) == ("create", "failed")
    assert line["error"].startswith(f"404: could not create limitranges in namespace "
                                    f"{doomed_namespace}")
    assert run.summary["errors"] == 1


def test_a_patch_of_an_object_deleted_meanwhile_failed_and_says_so_in_an_event(
        kube_api, namespace):
    apps = AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": pod_template({"app": "web"})}})
    api = Interleaved(kube_api, {"web": lambda: apps.delete_namespaced_deployment(
        "web", namespace)})

    run = run_task(kube_api, policy_for(namespace, "revisionHistory: {action: patch}"),
                   "revisions", api=api)

    line = run.line("deployment", "web")
    assert (line["action"], line["result"]) == ("patch", "failed")
    assert line["error"].startswith("404: could not patch deployments")
    [(kind, reason, message)] = events_about(kube_api, namespace, "web")
    assert (kind, reason) == ("Warning", "KubekeeperFailed")
    assert message.startswith("kubekeeper could not patch this Deployment (policy rule "
                              "revisionHistory.maxLimit: ")


def test_a_dry_run_never_says_done_for_a_mutation(kube_api, namespace):
    old_job(kube_api, namespace, "vanishing")
    batch = BatchV1Api(kube_api)
    api = Interleaved(kube_api, {"vanishing": lambda: batch.delete_namespaced_job(
        "vanishing", namespace, propagation_policy="Background")})

    run = run_task(kube_api, policy_for(namespace, DELETE, dry_run=True), "jobs", api=api)

    line = run.line("job", "vanishing")
    assert (line["action"], line["result"], line["error"]) == (
        "delete", "skipped", "already gone (404)")
    assert events_about(kube_api, namespace, "vanishing") == []


class LostAnswers(KubeApi):
    """The real port, where the first POST of each named resource reaches the API server
    and takes effect, but its answer is lost on the way back (a read timeout)."""

    def __init__(self, client: ApiClient, *plurals: str):
        super().__init__(client)
        self._lose = set(plurals)

    def _once(self, method, path, query, headers, body):
        answer = super()._once(method, path, query, headers, body)
        plural = path.rsplit("/", 1)[-1]
        if method == "POST" and plural in self._lose:
            self._lose.discard(plural)
            raise urllib3.exceptions.ReadTimeoutError(None, path, "Read timed out.")
        return answer


def test_a_create_whose_answer_was_lost_is_read_back_and_done(kube_api, namespace):
    api = LostAnswers(kube_api, "limitranges")

    run = run_task(kube_api, policy_for(namespace, LIMITRANGES), "requests", api=api)

    line = run.line("limitrange", "kubekeeper-defaults")
    assert (line["action"], line["result"], line["error"]) == ("create", "done", None)
    assert api.counter.by_request["create limitranges"] == 2
    assert api.counter.by_request["get limitranges"] == 1
    [limits] = CoreV1Api(kube_api).list_namespaced_limit_range(namespace).items
    assert limits.metadata.labels == {"app.kubernetes.io/managed-by": "kubekeeper"}


def test_an_event_whose_answer_was_lost_is_not_posted_twice(kube_api, namespace):
    old_job(kube_api, namespace, "old")
    api = LostAnswers(kube_api, "events")

    run = run_task(kube_api, policy_for(namespace, DELETE), "jobs", api=api)

    assert run.line("job", "old")["result"] == "done"
    assert api.counter.by_request["create events"] == 1
    assert [(t, r) for t, r, _ in events_about(kube_api, namespace, "old")] == [
        ("Normal", "KubekeeperDeleted")]


def owner_configmap(client: ApiClient, namespace: str) -> dict:
    """A ConfigMap standing in for another controller's object (a Workflow, a workload)."""
    made = CoreV1Api(client).create_namespaced_config_map(namespace, {
        "metadata": {"name": "controller"}})
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": "controller",
            "uid": made.metadata.uid, "controller": True}


def test_jobs_of_other_controllers_are_kept_unless_their_kind_is_opted_in(kube_api, namespace):
    old_job(kube_api, namespace, "theirs", owner=owner_configmap(kube_api, namespace))
    old_job(kube_api, namespace, "bare")

    run = run_task(kube_api, policy_for(namespace, DELETE), "jobs")

    kept = run.line("job", "theirs")
    assert (kept["action"], kept["result"]) == ("delete", "skipped")
    assert kept["error"].startswith("kept: owned by ConfigMap controller")
    assert run.line("job", "bare")["result"] == "done"
    assert exists(BatchV1Api(kube_api).read_namespaced_job, "theirs", namespace)
    [(kind, reason, message)] = events_about(kube_api, namespace, "theirs")
    assert (kind, reason) == ("Warning", "KubekeeperSkipped")
    assert "owned by ConfigMap controller" in message
    assert run.summary["results"] == {"done": 1, "skipped": 1}

    opted = policy_for(namespace, "completedJobs: {action: delete, ownerKinds: [ConfigMap]}")
    assert run_task(kube_api, opted, "jobs").line("job", "theirs")["result"] == "done"
    assert not exists(BatchV1Api(kube_api).read_namespaced_job, "theirs", namespace)
