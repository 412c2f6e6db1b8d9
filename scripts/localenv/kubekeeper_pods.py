"""kubekeeper's pods on the local node, read as an admin reads them: with kubectl.

The DaemonSet pod's report and each CronJob's one-off run (``kubectl create job
--from=cronjob/...``) are read back with ``kubectl logs``; the demo prints them
and the tests assert on them, through the same few calls.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from scripts.localenv.controlplane import ControlPlane

NODE_NAMESPACE = "kubekeeper-node"
SYSTEM_NAMESPACE = "kubekeeper-system"
AGENT_LABELS = "app.kubernetes.io/name=kubekeeper,app.kubernetes.io/component=node"


@dataclass(frozen=True)
class JobRun:
    """One CronJob run by hand: whether it completed, and its pod's report lines."""

    task: str
    completed: bool
    lines: list[dict[str, Any]]
    problem: str  # kubectl's wait error and the raw log when it did not complete


def report_of(plane: ControlPlane, *target: str, namespace: str) -> list[dict[str, Any]]:
    """The JSON lines of ``kubectl logs <target>`` (anything else in the log is left out)."""
    logs = plane.run_kubectl("logs", "-n", namespace, *target, check=False).stdout
    return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


def roll_out(plane: ControlPlane, timeout: str = "180s") -> str:
    """Wait for the DaemonSet's rollout; returns kubectl's error ('' when rolled out)."""
    rolled = plane.run_kubectl("rollout", "status", "-n", NODE_NAMESPACE,
                               "daemonset/kubekeeper-node", f"--timeout={timeout}", check=False)
    return "" if rolled.returncode == 0 else rolled.stderr


def agent_pod(plane: ControlPlane) -> str:
    """The one agent pod that is not terminating (the node has one)."""
    listed = plane.run_kubectl("get", "pods", "-n", NODE_NAMESPACE, "-l", AGENT_LABELS,
                               "-o", "json").stdout
    pods = [p["metadata"]["name"] for p in json.loads(listed)["items"]
            if not p["metadata"].get("deletionTimestamp")]
    if len(pods) != 1:
        raise RuntimeError(f"expected one kubekeeper-node pod, found {pods}")
    return pods[0]


def first_run(lines: list[dict[str, Any]], task: str) -> list[dict[str, Any]] | None:
    """The lines of the first finished run of ``task`` in a pod's report, once there is one."""
    done = [x for x in lines if x.get("event") == "run.summary" and x.get("task") == task]
    return [x for x in lines if x.get("run") == done[0]["run"]] if done else None


def wait_for_run(plane: ControlPlane, pod: str, task: str = "cleanup",
                 timeout: float = 180) -> list[dict[str, Any]]:
    """The agent pod's first finished ``task`` run (it starts after the policy's jitter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = first_run(report_of(plane, pod, namespace=NODE_NAMESPACE), task)
        if run:
            return run
        time.sleep(1)
    raise TimeoutError(f"pod {pod} finished no {task} run in {timeout:.0f}s")


def run_cronjobs(plane: ControlPlane, tasks: tuple[str, ...], suffix: str,
                 timeout: str = "180s") -> list[JobRun]:
    """Start a Job from each task's CronJob at once, then wait for each; one JobRun each."""
    jobs = {task: f"{task}-{suffix}" for task in tasks}
    for task, job in jobs.items():
        plane.run_kubectl("create", "job", f"--from=cronjob/kubekeeper-{task}", job,
                          "-n", SYSTEM_NAMESPACE)
    runs = []
    for task, job in jobs.items():
        waited = plane.run_kubectl("wait", "--for=condition=complete", f"job/{job}", "-n",
                                   SYSTEM_NAMESPACE, f"--timeout={timeout}", check=False)
        lines = report_of(plane, f"job/{job}", namespace=SYSTEM_NAMESPACE)
        problem = "" if waited.returncode == 0 else waited.stderr + plane.run_kubectl(
            "logs", "-n", SYSTEM_NAMESPACE, f"job/{job}", check=False).stdout
        runs.append(JobRun(task, waited.returncode == 0, lines, problem))
    return runs
