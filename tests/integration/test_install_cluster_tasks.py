"""Each cluster task, run as its CronJob's ServiceAccount, does its whole job.

The task gets only a kubeconfig holding that account's token (TokenRequest API),
as its pod would get a projected token, and runs with `dryRun: false` against
objects seeded in a fresh namespace, so every list, patch, create and delete it
sends is authorized by the installed ClusterRole or the run records a failure.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, BatchV1Api

from scripts.localenv import kube_jobs
from scripts.localenv.controlplane import ControlPlane
from tests import installation, report_lines
from tests.installation import NODE_NAMESPACE, SYSTEM_NAMESPACE, TASKS

SEEDS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: leftover}
spec:
  replicas: 0
  selector: {matchLabels: {app: leftover}}
  template:
    metadata: {labels: {app: leftover}}
    spec:
      containers: [{name: app, image: busybox, resources: {requests: {cpu: 10m, memory: 8Mi}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  suspend: true
  successfulJobsHistoryLimit: 10
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: task, image: busybox}]
"""


def _policy(namespace: str) -> str:
    return f"""\
apiVersion: kubekeeper/v1
dryRun: false
cluster:
  namespaces: {{include: [{namespace}], exclude: []}}
  resourceRequests: {{action: patch}}
  revisionHistory:
    action: patch
    ownerlessReplicaSets: {{enabled: true, olderThan: 0s}}
  completedJobs: {{action: delete, succeededTTL: 0s, failedTTL: 0s}}
"""


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[list[dict]]:
    yield from installation.install(control_plane)


@pytest.fixture
def seeded(control_plane: ControlPlane, kube_api: ApiClient, namespace: str) -> str:
    """A namespace holding something for every task to act on."""
    control_plane.run_kubectl("apply", "-n", namespace, "-f", "-", input=SEEDS)
    batch = BatchV1Api(kube_api)
    finished = datetime.now(UTC) - timedelta(hours=1)
    for name, succeeded in (("done", True), ("broken", False)):
        batch.create_namespaced_job(namespace, kube_jobs.job(name))
        kube_jobs.finish_job(batch, namespace, name, succeeded=succeeded,
                             started=finished - timedelta(minutes=1), finished=finished)
    return namespace


def _run_as(plane: ControlPlane, task: str, policy: str, tmp_path: Path) -> list[dict]:
    """`kubekeeper cluster run TASK` as kubekeeper-TASK; returns its report lines."""
    config = installation.token_kubeconfig(plane, SYSTEM_NAMESPACE, f"kubekeeper-{task}",
                                           tmp_path / "token.kubeconfig")
    whoami = subprocess.run(
        [str(plane.kubectl), f"--kubeconfig={config}", "auth", "whoami",
         "-o", "jsonpath={.status.userInfo.username}"],
        capture_output=True, text=True, check=True).stdout
    assert whoami == installation.account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    (tmp_path / "policies.yaml").write_text(policy)
    run = installation.kubekeeper("cluster", "run", task, f"--kubeconfig={config}",
                                  f"--policy={tmp_path / 'policies.yaml'}", "--log-format=json")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = report_lines.parse(run.stdout)
    [summary] = report_lines.summaries(lines)
    assert lines[-1] is summary
    assert summary["errors"] == 0 and summary["error"] is None, summary
    done = report_lines.outcomes(lines)
    assert summary["actions"] == len(done)
    return done


def _get(plane: ControlPlane, namespace: str, *what: str) -> dict:
    return json.loads(plane.run_kubectl("get", *what, "-n", namespace, "-o", "json").stdout)


def _events(plane: ControlPlane, namespace: str) -> set[tuple[str, str]]:
    items = _get(plane, namespace, "events")["items"]
    return {(e["reason"], e["involvedObject"]["name"]) for e in items
            if e.get("source", {}).get("component") == "kubekeeper"}


def _changed(lines: list[dict]) -> set[tuple[str, str, str]]:
    """(kind, name, verb) of every change made; report-only lines are left out."""
    return {(line["kind"], line["name"], line["action"]) for line in lines
            if line["result"] == "done" and line["action"] != "report"}


def test_requests_task_patches_missing_requests(
    installed: list[dict], control_plane: ControlPlane, seeded: str, tmp_path: Path
) -> None:
    lines = _run_as(control_plane, "requests", _policy(seeded), tmp_path)

    assert _changed(lines) == {("deployment", "web", "patch"), ("cronjob", "nightly", "patch")}
    web = _get(control_plane, seeded, "deployment", "web")
    assert web["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == \
        {"cpu": "100m", "memory": "128Mi"}
    nightly = _get(control_plane, seeded, "cronjob", "nightly")
    template = nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["resources"]["requests"] == \
        {"cpu": "100m", "memory": "128Mi"}
    assert {("KubekeeperPatched", "web"), ("KubekeeperPatched", "nightly")} <= \
        _events(control_plane, seeded)


def test_requests_task_keeps_a_limitrange(
    installed: list[dict], control_plane: ControlPlane, seeded: str, tmp_path: Path
) -> None:
    policy = _policy(seeded).replace("{action: patch}", "{action: limitrange}")
    lines = _run_as(control_plane, "requests", policy, tmp_path)

    assert ("limitrange", "kubekeeper-defaults", "create") in _changed(lines)
    limits = _get(control_plane, seeded, "limitrange", "kubekeeper-defaults")["spec"]["limits"]
    assert limits[0]["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_revisions_task_caps_history_and_deletes_ownerless_replicasets(
    installed: list[dict], control_plane: ControlPlane, seeded: str, tmp_path: Path
) -> None:
    first = _run_as(control_plane, "revisions", _policy(seeded), tmp_path)
    lines = _run_as(control_plane, "revisions", _policy(seeded), tmp_path)

    assert {("deployment", "web", "patch"), ("replicaset", "leftover", "patch")} <= _changed(first)
    assert ("replicaset", "leftover", "delete") in _changed(lines)
    [deleted] = [x for x in lines if x["kind"] == "replicaset"]
    assert deleted["recycle_bin"].startswith(f"{SYSTEM_NAMESPACE}/kubekeeper-bin-")
    assert _get(control_plane, seeded, "deployment", "web")["spec"]["revisionHistoryLimit"] == 3
    assert "leftover" not in control_plane.run_kubectl(
        "get", "replicasets", "-n", seeded, "-o", "name").stdout
    assert {("KubekeeperPatched", "web"), ("KubekeeperDeleted", "leftover")} <= \
        _events(control_plane, seeded)


def test_jobs_task_deletes_finished_jobs_and_trims_cronjob_history(
    installed: list[dict], control_plane: ControlPlane, seeded: str, tmp_path: Path
) -> None:
    lines = _run_as(control_plane, "jobs", _policy(seeded), tmp_path)

    assert _changed(lines) == {("job", "done", "delete"), ("job", "broken", "delete"),
                            ("cronjob", "nightly", "patch")}
    jobs = control_plane.run_kubectl("get", "jobs", "-n", seeded, "-o", "name").stdout
    assert jobs == ""
    nightly = _get(control_plane, seeded, "cronjob", "nightly")["spec"]
    assert nightly["successfulJobsHistoryLimit"] == 3
    assert {("KubekeeperDeleted", "done"), ("KubekeeperDeleted", "broken")} <= \
        _events(control_plane, seeded)


@pytest.mark.parametrize("task", TASKS)
def test_kubekeeper_passes_its_own_rules(
    installed: list[dict], control_plane: ControlPlane, task: str, tmp_path: Path
) -> None:
    """With the shipped policy, no task finds anything to say about kubekeeper itself."""
    policy = (installation.REPO / "policies.yaml").read_text().replace(
        "include: [\"*\"]", f"include: [{NODE_NAMESPACE}, {SYSTEM_NAMESPACE}]")
    assert NODE_NAMESPACE in policy
    assert _run_as(control_plane, task, policy, tmp_path) == []
