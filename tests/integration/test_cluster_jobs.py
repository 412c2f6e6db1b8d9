"""The jobs task against the real control plane: TTLs, CronJob history, orphan pods."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

from scripts.localenv.kube_jobs import finish_job, job
from tests.cluster_runs import (
    ago,
    container,
    events_about,
    exists,
    policy_for,
    run_task,
)
from tests.polling import wait_for

DELETE = "completedJobs: {action: delete}"


def finished(client: ApiClient, namespace: str, name: str, days: float, *,
             succeeded: bool = True, ttl: int | None = None,
             owner: dict | None = None) -> str:
    batch = BatchV1Api(client)
    body = job(name, ttl_seconds_after_finished=ttl)
    if owner:
        body.metadata.owner_references = [owner]
    created = batch.create_namespaced_job(namespace, body)
    when = ago(days=days)
    finish_job(batch, namespace, name, succeeded=succeeded, started=when, finished=when)
    return created.metadata.uid


def job_pod(client: ApiClient, namespace: str, job_name: str, uid: str) -> None:
    """A pod as the job controller would have made it, so the GC has something to collect."""
    CoreV1Api(client).create_namespaced_pod(namespace, {
        "metadata": {"name": f"{job_name}-pod", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"restartPolicy": "Never", "containers": [container()]}})


def reapply(plane, namespace: str, manifest: dict) -> str:
    """``kubectl apply --dry-run=server`` of a manifest from a report line."""
    return plane.run_kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                             input=json.dumps(manifest)).stdout


def test_finished_jobs_past_their_ttl_go_and_the_gc_takes_their_pods(kube_api, namespace,
                                                                     control_plane):
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    old = finished(kube_api, namespace, "old", days=3)
    job_pod(kube_api, namespace, "old", old)
    finished(kube_api, namespace, "recent", days=0.1)
    finished(kube_api, namespace, "failed-3d", days=3, succeeded=False)
    finished(kube_api, namespace, "failed-8d", days=8, succeeded=False)
    finished(kube_api, namespace, "self-cleaning", days=3, ttl=90 * 86400)
    batch.create_namespaced_job(namespace, job("running"))

    run = run_task(kube_api, policy_for(namespace, DELETE), "jobs")

    assert run.names("job") == {"old", "failed-8d"}
    line = run.line("job", "old")
    assert (line["action"], line["result"]) == ("delete", "done")
    assert line["reason"] == "completedJobs.succeededTTL: Complete 3d ago > 1d"
    assert line["id"] == old
    assert (line["manifest"]["apiVersion"], line["manifest"]["kind"]) == ("batch/v1", "Job")
    assert "status" not in line["manifest"]
    assert "managedFields" not in line["manifest"]["metadata"]
    assert reapply(control_plane, namespace, line["manifest"]) == (
        "job.batch/old created (server dry run)\n")
    assert run.line("job", "failed-8d")["reason"].startswith("completedJobs.failedTTL: Failed 8d")
    left = {j.metadata.name for j in batch.list_namespaced_job(namespace).items
            if not j.metadata.deletion_timestamp}
    assert left == {"recent", "failed-3d", "self-cleaning", "running"}
    wait_for(lambda: not exists(core.read_namespaced_pod, "old-pod", namespace),
             what="the garbage collector to delete the deleted Job's pod")
    [(kind, reason, message)] = events_about(kube_api, namespace, "old")
    assert (kind, reason) == ("Normal", "KubekeeperDeleted")
    assert "completedJobs.succeededTTL" in message
    assert run.summary["results"] == {"done": 2} and run.summary["errors"] == 0


def cronjob(client: ApiClient, namespace: str, name: str, successful: int, failed: int) -> dict:
    created = BatchV1Api(client).create_namespaced_cron_job(namespace, {
        "metadata": {"name": name},
        "spec": {"schedule": "0 0 1 1 *", "suspend": True,
                 "successfulJobsHistoryLimit": successful, "failedJobsHistoryLimit": failed,
                 "jobTemplate": {"spec": {"template": {"spec": {
                     "restartPolicy": "Never", "containers": [container()]}}}}}})
    return {"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
            "uid": created.metadata.uid, "controller": True}


def test_cronjob_history_is_kept_and_limits_above_the_maximum_patched(kube_api, namespace):
    batch = BatchV1Api(kube_api)
    keeper = cronjob(kube_api, namespace, "keeper", successful=2, failed=1)
    for day in (2, 3, 4, 5):
        finished(kube_api, namespace, f"keeper-{day}", days=day, owner=keeper)
    cronjob(kube_api, namespace, "greedy", successful=10, failed=5)

    run = run_task(kube_api, policy_for(namespace, DELETE), "jobs")

    # The CronJob controller may delete its surplus first; either way the newest two stay.
    assert run.names("job") <= {"keeper-4", "keeper-5"}
    assert {run.line("job", n)["result"] for n in run.names("job")} <= {"done"}
    wait_for(lambda: {j.metadata.name for j in batch.list_namespaced_job(namespace).items
                      if not j.metadata.deletion_timestamp} == {"keeper-2", "keeper-3"},
             what="only the CronJob's newest two Jobs to remain")
    line = run.line("cronjob", "greedy")
    assert (line["action"], line["result"]) == ("patch", "done")
    assert line["reason"] == ("completedJobs.maxSuccessfulHistory: successfulJobsHistoryLimit "
                              "10 > 3; failedJobsHistoryLimit 5 > 3")
    spec = batch.read_namespaced_cron_job("greedy", namespace).spec
    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (3, 3)
    assert [(t, r) for t, r, _ in events_about(kube_api, namespace, "greedy")] == [
        ("Normal", "KubekeeperPatched")]
    assert "keeper" not in run.names("cronjob")


def bare_pod(client: ApiClient, namespace: str, name: str, phase: str | None,
             finished_at: datetime | None = None, owner: dict | None = None) -> None:
    core = CoreV1Api(client)
    metadata: dict = {"name": name}
    if owner:
        metadata["ownerReferences"] = [owner]
    core.create_namespaced_pod(namespace, {"metadata": metadata, "spec": {
        "restartPolicy": "Never", "containers": [container()]}})
    if phase:
        stamp = (finished_at or ago(days=3)).astimezone(UTC).isoformat()
        core.patch_namespaced_pod_status(name, namespace, {"status": {
            "phase": phase, "containerStatuses": [{
                "name": "main", "image": "busybox", "imageID": "", "ready": False,
                "restartCount": 0, "state": {"terminated": {
                    "exitCode": 0 if phase == "Succeeded" else 1, "startedAt": stamp,
                    "finishedAt": stamp, "reason": "Completed"}}}]}})


def test_orphan_pods_go_only_when_opted_in(kube_api, namespace, control_plane):
    core = CoreV1Api(kube_api)
    owner = cronjob(kube_api, namespace, "owner", 1, 1)
    bare_pod(kube_api, namespace, "leftover", "Succeeded")
    bare_pod(kube_api, namespace, "crashed", "Failed", ago(days=8))
    bare_pod(kube_api, namespace, "recent", "Succeeded", ago(hours=1))
    bare_pod(kube_api, namespace, "owned", "Succeeded", owner={**owner, "controller": False})
    bare_pod(kube_api, namespace, "pending", None)

    assert run_task(kube_api, policy_for(namespace, DELETE), "jobs").lines == []

    opted_in = policy_for(namespace, "completedJobs: {action: delete, orphanPods: true}")
    run = run_task(kube_api, opted_in, "jobs", now=datetime.now(UTC) + timedelta(seconds=1))
    assert run.names("pod", "delete") == {"leftover", "crashed"}
    assert run.line("pod", "leftover")["reason"].startswith(
        "completedJobs.orphanPods: ownerless pod Succeeded 3d ago > 1d")
    assert run.line("pod", "crashed")["manifest"]["spec"]["containers"][0]["name"] == "main"
    assert reapply(control_plane, namespace, run.line("pod", "crashed")["manifest"]) == (
        "pod/crashed created (server dry run)\n")
    left = {p.metadata.name for p in core.list_namespaced_pod(namespace).items
            if not p.metadata.deletion_timestamp}
    assert left == {"recent", "owned", "pending"}
