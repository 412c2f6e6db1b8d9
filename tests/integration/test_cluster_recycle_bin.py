"""Secrets stay out of the report, and every deleted object's complete manifest is kept
in the recycle bin, on the real control plane."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta

from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, V1EnvVar

from agents.cluster.api import KubeApi
from agents.cluster.tasks import run_tasks
from scripts.localenv.kube_jobs import finish_job, job
from tests.cluster_runs import Run, ago, policy_for

DELETE = "completedJobs: {action: delete}"
SECRET = "hunter2-do-not-log"


def job_with_a_secret(client: ApiClient, namespace: str, name: str) -> None:
    batch = BatchV1Api(client)
    body = job(name)
    container = body.spec.template.spec.containers[0]
    container.env = [V1EnvVar(name="DB_PASSWORD", value=SECRET)]
    container.args = [f"--db-password={SECRET}"]
    body.metadata.annotations = {"vault.example/token": SECRET}
    batch.create_namespaced_job(namespace, body)
    finish_job(batch, namespace, name, succeeded=True, started=ago(days=3),
               finished=ago(days=3))


def run_capturing(client: ApiClient, policy, now=None) -> tuple[str, Run]:
    """The run and the raw text of its report, to search for what must not be there."""
    stream = io.StringIO()
    api = KubeApi(client)
    summary = run_tasks(api, policy, "jobs", stream=stream, now=now)
    text = stream.getvalue()
    return text, Run(io.StringIO(text), summary, api)


def bin_manifest(client: ApiClient, where: str) -> dict:
    namespace, secret, key = where.split("/")
    data = CoreV1Api(client).read_namespaced_secret(secret, namespace).data
    return json.loads(base64.b64decode(data[key]))


def test_the_report_is_redacted_and_the_bin_keeps_the_complete_manifest(
        kube_api, namespace, control_plane):
    job_with_a_secret(kube_api, namespace, "migrate")

    text, run = run_capturing(kube_api, policy_for(namespace, DELETE))

    assert SECRET not in text
    line = run.line("job", "migrate")
    assert line["result"] == "done"
    container = line["manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["name"] == "DB_PASSWORD"
    assert container["env"][0]["value"].startswith("redacted:sha256:")
    [intent] = [i for i in run.intents if i["name"] == "migrate"]
    assert intent["recycle_bin"] == line["recycle_bin"]
    assert line["recycle_bin"].startswith(f"{namespace}/kubekeeper-bin-")
    kept = bin_manifest(kube_api, line["recycle_bin"])
    assert kept["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == SECRET
    reapplied = control_plane.run_kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                          input=json.dumps(kept))
    assert reapplied.stdout == "job.batch/migrate created (server dry run)\n"


def test_no_deletion_goes_ahead_without_its_manifest_kept(kube_api, namespace):
    job_with_a_secret(kube_api, namespace, "migrate")
    text, run = run_capturing(kube_api, policy_for(namespace, DELETE,
                                                   bin_in=f"{namespace}-missing"))

    line = run.line("job", "migrate")
    assert (line["result"], line["error"].startswith("recycle bin not written: 404")) == (
        "failed", True)
    assert [j.metadata.name for j in BatchV1Api(kube_api).list_namespaced_job(namespace).items
            ] == ["migrate"]
    assert run.summary["errors"] == 1
    assert SECRET not in text


def test_expired_bins_are_pruned_by_a_later_run(kube_api, namespace):
    job_with_a_secret(kube_api, namespace, "migrate")
    _, first = run_capturing(kube_api, policy_for(namespace, DELETE))
    secret = first.line("job", "migrate")["recycle_bin"].split("/")[1]

    week = datetime.now(UTC) + timedelta(days=6)
    _, early = run_capturing(kube_api, policy_for(namespace, DELETE), now=week)
    assert early.names("secret") == set()
    _, later = run_capturing(kube_api, policy_for(namespace, DELETE),
                             now=week + timedelta(days=2))

    pruned = later.line("secret", secret)
    assert (pruned["action"], pruned["result"]) == ("delete", "done")
    assert pruned["reason"].startswith("cluster.recycleBin.keepFor: recycle bin expired")
    assert "manifest" not in pruned
    left = CoreV1Api(kube_api).list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/component=recycle-bin").items
    assert left == []


def test_with_redaction_off_the_report_line_holds_the_complete_manifest(kube_api, namespace):
    job_with_a_secret(kube_api, namespace, "migrate")

    text, run = run_capturing(kube_api, policy_for(namespace, f"{DELETE}\nredactManifests: false"))

    line = run.line("job", "migrate")
    assert line["manifest"] == bin_manifest(kube_api, line["recycle_bin"])
    assert SECRET in text
