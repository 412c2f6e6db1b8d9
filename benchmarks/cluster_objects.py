"""The objects the cluster benchmark seeds, as raw JSON bodies, deterministic by index.

Everything is a function of the scale, the object's index and a fixed ``now``,
so a re-seed produces the same Jobs with the same states and finish times.

- Jobs set ``spec.managedBy`` to a fake controller: the job controller leaves
  them alone, so their status can be written through the status subresource
  as if their pods had run, and no pod is ever made. 4 in 5 are Complete
  (2 to 29 days ago), 1 in 5 Failed (8 to 29 days ago): all past the default
  TTLs (1d, 7d).
- Deployments have 0 replicas and carry ``revisions`` ReplicaSets made
  directly, with owner references and revision annotations as the Deployment
  controller writes them; only the newest matches the Deployment's template.
- Bare pods stay Pending (no scheduler); ``finished_percent`` of them are
  written Succeeded or Failed with a container that terminated days ago.
- Half of all containers set cpu/memory requests, half set none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from agents.report import rfc3339

BENCH_LABEL = "kubekeeper.bench"
NAMESPACE_PREFIX = "kkb-"
FAKE_JOB_CONTROLLER = "kubekeeper.bench/fake"
_REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Scale:
    namespaces: int = 100
    jobs: int = 10_000
    deployments: int = 1_000
    revisions: int = 10
    pods: int = 5_000
    finished_percent: int = 30

    def namespace(self, index: int) -> str:
        return f"{NAMESPACE_PREFIX}{index % self.namespaces:03d}"

    def finished_pod(self, index: int) -> bool:
        return index % 100 < self.finished_percent

    @property
    def finished_pods(self) -> int:
        return sum(1 for i in range(self.pods) if self.finished_pod(i))


def namespace_body(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}}}


def _container(name: str, image: str, index: int) -> dict:
    container = {"name": name, "image": image, "command": ["true"]}
    if index % 2 == 0:
        container["resources"] = {"requests": {"cpu": "50m", "memory": "64Mi"}}
    return container


def job_name(index: int) -> str:
    return f"job-{index:05d}"


def job_body(index: int) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(index), "labels": {BENCH_LABEL: "1"}},
        "spec": {"managedBy": FAKE_JOB_CONTROLLER, "backoffLimit": 0,
                 "template": {"metadata": {"labels": {BENCH_LABEL: "1"}}, "spec": {
                     "restartPolicy": "Never",
                     "containers": [_container("main", "busybox", index)]}}},
    }


def job_status(index: int, now: datetime) -> dict:
    """Complete or Failed, with the conditions in the order the job controller sets them."""
    succeeded = index % 5 != 0
    days = (2 + index % 28) if succeeded else (8 + index % 22)
    finished = now - timedelta(days=days, minutes=index % 60)
    started = rfc3339(finished - timedelta(minutes=1))
    target, final = ("SuccessCriteriaMet", "Complete") if succeeded else ("FailureTarget", "Failed")
    reason = "CompletionsReached" if succeeded else "BackoffLimitExceeded"
    conditions = [{"type": kind, "status": "True", "reason": reason, "message": "benchmark",
                   "lastTransitionTime": rfc3339(finished)} for kind in (target, final)]
    status: dict = {"startTime": started, "conditions": conditions}
    if succeeded:
        status |= {"succeeded": 1, "completionTime": rfc3339(finished)}
    else:
        status["failed"] = 1
    return {"status": status}


def deployment_name(index: int) -> str:
    return f"app-{index:04d}"


def _template(app: str, revision: int, index: int, hash_label: str | None = None) -> dict:
    labels = {"app": app, **({"pod-template-hash": hash_label} if hash_label else {})}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [_container("app", f"registry.invalid/app:{revision}", index)]}}


def deployment_body(index: int, revisions: int) -> dict:
    """Created paused, so the controller makes no ReplicaSet of its own before ours exist."""
    app = deployment_name(index)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "labels": {BENCH_LABEL: "1"},
                     "annotations": {_REVISION: str(revisions)}},
        "spec": {"replicas": 0, "paused": True, "selector": {"matchLabels": {"app": app}},
                 "template": _template(app, revisions, index)},
    }


def replicaset_name(index: int, revision: int) -> str:
    return f"{deployment_name(index)}-rev{revision:02d}"


def replicaset_body(index: int, revision: int, owner_uid: str) -> dict:
    """Revision ``revision`` of the Deployment, as the controller would have left it."""
    app, hash_label = deployment_name(index), f"rev{revision:02d}"
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": owner_uid,
             "controller": True, "blockOwnerDeletion": True}
    annotations = {_REVISION: str(revision), "deployment.kubernetes.io/desired-replicas": "0",
                   "deployment.kubernetes.io/max-replicas": "0"}
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": replicaset_name(index, revision), "labels": {
            BENCH_LABEL: "1", "app": app, "pod-template-hash": hash_label},
            "annotations": annotations, "ownerReferences": [owner]},
        "spec": {"replicas": 0,
                 "selector": {"matchLabels": {"app": app, "pod-template-hash": hash_label}},
                 "template": _template(app, revision, index, hash_label)},
    }


REPLICASET_STATUS = {"status": {"observedGeneration": 1, "replicas": 0, "terminatingReplicas": 0}}
"""What the ReplicaSet controller would write for 0 replicas: written by us, it has
nothing left to do (at its own 20 QPS, 10,000 status writes take over 8 minutes, and
each one makes the Deployment controller write its Deployment's status again)."""


def pod_name(index: int) -> str:
    return f"pod-{index:05d}"


def pod_body(index: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(index), "labels": {BENCH_LABEL: "1"}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "containers": [_container("main", "busybox", index)]}}


def pod_status(index: int, now: datetime) -> dict:
    """Succeeded (2 in 3; 2 to 29 days ago) or Failed (8 to 29 days ago)."""
    succeeded = index % 3 != 0
    days = (2 + index % 28) if succeeded else (8 + index % 22)
    finished = now - timedelta(days=days, minutes=index % 60)
    started = rfc3339(finished - timedelta(minutes=1))
    terminated = {"exitCode": 0 if succeeded else 1,
                  "reason": "Completed" if succeeded else "Error",
                  "startedAt": started, "finishedAt": rfc3339(finished)}
    return {"status": {
        "phase": "Succeeded" if succeeded else "Failed", "startTime": started,
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "",
                               "ready": False, "restartCount": 0,
                               "state": {"terminated": terminated}}]}}
