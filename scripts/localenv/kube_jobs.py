"""Jobs in any finished state on a control plane that has no kubelet to run them.

A Job whose `spec.managedBy` names another controller is left alone by the job
controller, so a test can write its status (through the status subresource) as
if its pods had run, and it stays that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from kubernetes.client import (
    BatchV1Api,
    V1Container,
    V1Job,
    V1JobSpec,
    V1ObjectMeta,
    V1PodSpec,
    V1PodTemplateSpec,
)

FAKE_JOB_CONTROLLER = "kubekeeper.test/fake"


def job(
    name: str,
    *,
    managed_by: str | None = FAKE_JOB_CONTROLLER,
    labels: Mapping[str, str] | None = None,
    ttl_seconds_after_finished: int | None = None,
) -> V1Job:
    """A one-pod Job; by default managed by the fake controller so no pod is ever made.

    Pass `managed_by=None` for a Job the real job controller runs (its pod stays Pending).
    """
    return V1Job(
        metadata=V1ObjectMeta(name=name, labels=dict(labels or {})),
        spec=V1JobSpec(
            managed_by=managed_by,
            backoff_limit=0,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            template=V1PodTemplateSpec(
                spec=V1PodSpec(
                    restart_policy="Never",
                    containers=[V1Container(name="main", image="busybox", command=["true"])],
                )
            ),
        ),
    )


def finish_job(
    batch: BatchV1Api,
    namespace: str,
    name: str,
    *,
    succeeded: bool,
    started: datetime,
    finished: datetime,
) -> V1Job:
    """Write a finished status: Complete (via SuccessCriteriaMet) or Failed (via FailureTarget).

    Only valid for a Job managed by another controller; the API server checks
    that the conditions come in the order the real job controller sets them.
    `started` and `finished` must be timezone-aware.
    """
    target, final = ("SuccessCriteriaMet", "Complete") if succeeded else ("FailureTarget", "Failed")
    reason = "CompletionsReached" if succeeded else "BackoffLimitExceeded"
    conditions = [
        {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": "set by a test",
            "lastTransitionTime": finished.isoformat(),
        }
        for kind in (target, final)
    ]
    status: dict[str, object] = {"startTime": started.isoformat(), "conditions": conditions}
    if succeeded:
        status |= {"succeeded": 1, "completionTime": finished.isoformat()}
    else:
        status["failed"] = 1
    return batch.patch_namespaced_job_status(name, namespace, {"status": status})
