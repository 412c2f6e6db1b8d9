"""Shared helpers for the cluster integration tests (this module holds no tests).

Every run is scoped to the test's own namespace through the policy's include
glob, so tests never touch each other's objects.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from agents.cluster.api import KubeApi
from agents.cluster.tasks import run_tasks
from agents.policy import Policy
from agents.policy_loader import parse_policy
from scripts.localenv.kube_jobs import finish_job, job
from tests import report_lines


def policy_for(namespace: str, cluster_yaml: str = "", *, dry_run: bool = False,
               cap: int = 500, overrides: str = "", also: tuple[str, ...] = (),
               exclude: tuple[str, ...] = (), bin_in: str | None = None) -> Policy:
    """A policy acting on ``namespace`` (and ``also``) only, keeping its recycle bin there
    (or in ``bin_in``); ``cluster_yaml`` goes under ``cluster:`` and ``overrides`` is the whole
    top-level overrides block."""
    body = "".join(f"  {line}\n" for line in cluster_yaml.strip().splitlines())
    scope = json.dumps({"include": [namespace, *also], "exclude": list(exclude)})
    return parse_policy(f"""\
apiVersion: kubekeeper/v1
dryRun: {str(dry_run).lower()}
maxDeletionsPerRun: {cap}
cluster:
  apiQPS: 0
  pageSize: 3
  namespaces: {scope}
  recycleBin: {{namespace: {bin_in or namespace}}}
{body}{overrides}""")


class Run:
    """The report of one run: its text, action lines by name, the summary, the port's counter."""

    def __init__(self, stream: io.StringIO, summary: dict[str, Any], api: KubeApi):
        self.text = stream.getvalue()
        parsed = report_lines.parse(self.text)
        self.lines, self.summary, self.api = report_lines.outcomes(parsed), summary, api
        self.intents = report_lines.intents(parsed)
        self.notes = [line for line in parsed if line["event"] == "run.note"]
        self.first = parsed[0]
        assert parsed[-1]["event"] == "run.summary"

    def line(self, kind: str, name: str, task: str | None = None) -> dict[str, Any]:
        [found] = [x for x in self.lines if (x["kind"], x["name"]) == (kind, name)
                   and task in (None, x["task"])]
        return found

    def names(self, kind: str, action: str | None = None) -> set[str]:
        return {x["name"] for x in self.lines
                if x["kind"] == kind and (action is None or x["action"] == action)}


def run_task(client: ApiClient, policy: Policy, task: str, *, now: datetime | None = None,
             api: KubeApi | None = None, plan_only: bool = False) -> Run:
    api = api or KubeApi(client)
    stream = io.StringIO()
    summary = run_tasks(api, policy, task, stream=stream, now=now, plan_only=plan_only)
    return Run(stream, summary, api)


class Interleaved(KubeApi):
    """The real port, with a test's concurrent change made just before one object's write."""

    def __init__(self, client: ApiClient, before: dict[str, Callable[[], None]]):
        super().__init__(client)
        self._before = before

    def patch(self, resource, namespace, name, body, patch_type="merge", dry_run=False):
        self._interleave(name)
        return super().patch(resource, namespace, name, body, patch_type, dry_run)

    def delete(self, resource, namespace, name, preconditions, dry_run=False):
        self._interleave(name)
        return super().delete(resource, namespace, name, preconditions, dry_run)

    def create(self, resource, namespace, body, dry_run=False):
        self._interleave(body["metadata"].get("name", ""))
        return super().create(resource, namespace, body, dry_run)

    def _interleave(self, name: str) -> None:
        change = self._before.pop(name, None)
        if change:
            change()


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def old_job(client: ApiClient, namespace: str, name: str, days: float = 3,
            annotations: dict | None = None, owner: dict | None = None) -> None:
    """A Job that completed ``days`` ago (finished through the status subresource)."""
    batch = BatchV1Api(client)
    body = job(name)
    body.metadata.annotations = annotations
    if owner:
        body.metadata.owner_references = [owner]
    batch.create_namespaced_job(namespace, body)
    finish_job(batch, namespace, name, succeeded=True, started=ago(days=days),
               finished=ago(days=days))


def exists(read: Callable[..., Any], *args: Any) -> bool:
    """Whether ``read(*args)`` finds the object (404: no; any other error is raised)."""
    try:
        read(*args)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def events_about(client: ApiClient, namespace: str,
                 name: str) -> list[tuple[str, str, str]]:
    """kubekeeper's Events about one object as (type, reason, message): controllers may
    record their own too, and on-call filters on ``type=Warning`` for what went wrong."""
    events = CoreV1Api(client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},source=kubekeeper").items
    return [(e.type, e.reason, e.message) for e in events]


def container(name: str = "main", requests: dict | None = None) -> dict:
    return {"name": name, "image": "busybox", "command": ["true"],
            "resources": {"requests": requests} if requests else {}}


def pod_template(labels: dict, *containers: dict, restart: str = "Always") -> dict:
    return {"metadata": {"labels": labels},
            "spec": {"restartPolicy": restart, "containers": list(containers or [container()])}}
