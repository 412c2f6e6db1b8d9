"""``kubekeeper restore`` on the real control plane: what the jobs and revisions tasks
deleted comes back, from the recycle bin and from a report written with redaction off."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api

from agents.cli import main
from agents.cluster.api import KubeApi
from agents.cluster.resources import RESOURCES
from agents.cluster.restore import RestoreOptions, run_restore
from agents.cluster.restore_plan import Selection
from scripts.localenv.kube_jobs import finish_job, job
from tests import report_lines
from tests.cluster_runs import Interleaved, ago, pod_template, policy_for, run_task
from tests.integration.test_cluster_recycle_bin import SECRET, bin_manifest, job_with_a_secret

JOBS = "completedJobs: {action: delete}"
OWNERLESS = ("revisionHistory: {action: patch, ownerlessReplicaSets: {enabled: true, "
             "olderThan: 5m}}")
_GENERATED = ("controller-uid", "batch.kubernetes.io/controller-uid")


def raw(client: ApiClient, kind: str, namespace: str, name: str) -> dict:
    return KubeApi(client).get(RESOURCES[kind], namespace, name)


def comparable_job_spec(spec: dict) -> dict:
    """A Job's spec without what the server generates per Job (selector, uid labels)
    and without ``suspend``, which a restore sets."""
    template = spec["template"]
    labels = {k: v for k, v in template["metadata"].get("labels", {}).items()
              if k not in _GENERATED}
    return {**{k: v for k, v in spec.items() if k not in ("selector", "suspend")},
            "template": {**template, "metadata": {**template["metadata"], "labels": labels}}}


def delete_jobs_and_an_orphan(client: ApiClient, namespace: str, redact: bool
                              ) -> tuple[dict[str, dict], str]:
    """A jobs run deletes two Jobs, two revisions runs delete an ownerless ReplicaSet.

    Returns the specs as they were and the text of the runs' reports.
    """
    job_with_a_secret(client, namespace, "migrate")
    job_with_a_secret(client, namespace, "nightly")
    AppsV1Api(client).create_namespaced_replica_set(namespace, {
        "metadata": {"name": "orphan", "labels": {"rs": "orphan"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"rs": "orphan"}},
                 "template": pod_template({"rs": "orphan"})}})
    before = {name: raw(client, kind, namespace, name)["spec"]
              for kind, name in (("job", "migrate"), ("job", "nightly"),
                                 ("replicaset", "orphan"))}
    extra = "" if redact else "\nredactManifests: false"
    text = ""
    for rules, task, now in ((JOBS, "jobs", None), (OWNERLESS, "revisions", None),
                             (OWNERLESS, "revisions", datetime.now(UTC) + timedelta(minutes=10))):
        run = run_task(client, policy_for(namespace, rules + extra), task, now=now)
        text += run.text
    assert BatchV1Api(client).list_namespaced_job(namespace).items == []
    assert [rs.metadata.name for rs in AppsV1Api(client).list_namespaced_replica_set(namespace)
            .items if not rs.metadata.deletion_timestamp] == []
    return before, text


def restore(client: ApiClient, namespace: str, sources: tuple[str, ...] = ()) -> list[dict]:
    stream = io.StringIO()
    options = RestoreOptions(selection=Selection(namespace=namespace), sources=sources)
    run_restore(KubeApi(client), policy_for(namespace), options, stream=stream)
    return report_lines.parse(stream.getvalue())


def assert_back_as_before(client: ApiClient, namespace: str, before: dict[str, dict]) -> None:
    for name in ("migrate", "nightly"):
        job = raw(client, "job", namespace, name)
        assert job["spec"]["suspend"] is True
        assert comparable_job_spec(job["spec"]) == comparable_job_spec(before[name])
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "DB_PASSWORD", "value": SECRET}]
    assert raw(client, "replicaset", namespace, "orphan")["spec"] == before["orphan"]


def outcomes_by_name(lines: list[dict]) -> dict[str, dict]:
    return {line["name"]: line for line in report_lines.outcomes(lines)}


def test_restore_from_the_bin_brings_back_jobs_suspended_and_the_replicaset(
        kube_api, namespace):
    before, _ = delete_jobs_and_an_orphan(kube_api, namespace, redact=True)

    lines = restore(kube_api, namespace)

    restored = outcomes_by_name(lines)
    assert {n: (x["kind"], x["action"], x["result"]) for n, x in restored.items()} == {
        "migrate": ("job", "create", "done"), "nightly": ("job", "create", "done"),
        "orphan": ("replicaset", "create", "done")}
    assert restored["migrate"]["reason"].startswith("restore from 20")
    assert "created suspended (spec.suspend: true)" in restored["migrate"]["reason"]
    assert restored["migrate"]["restored_from"].startswith(f"{namespace}/kubekeeper-bin-")
    assert [i["name"] for i in report_lines.intents(lines)].count("migrate") == 1
    assert SECRET not in json.dumps(lines)
    assert_back_as_before(kube_api, namespace, before)
    annotations = raw(kube_api, "replicaset", namespace, "orphan")["metadata"].get(
        "annotations") or {}
    assert "kubekeeper/ownerless-since" not in annotations

    again = outcomes_by_name(restore(kube_api, namespace))
    assert {n: (x["result"], x["error"]) for n, x in again.items()} == {
        n: ("skipped", "already exists: not overwritten") for n in restored}


def test_restore_from_a_report_written_with_redaction_off(kube_api, namespace, control_plane,
                                                          tmp_path: Path, capsys):
    before, text = delete_jobs_and_an_orphan(kube_api, namespace, redact=False)
    report = tmp_path / "report.jsonl"
    report.write_text("".join(f"[pod/kubekeeper-jobs-x/cluster] {line}\n"
                              for line in text.splitlines()) + '{"ts": "2026-1\n')
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: kubekeeper/v1\n")

    code = main(["restore", str(report), "--namespace", namespace, "--policy", str(policy),
                 "--kubeconfig", str(control_plane.kubeconfig), "--log-format", "json"])

    restored = outcomes_by_name(report_lines.parse(capsys.readouterr().out))
    assert code == 0
    assert {n: x["result"] for n, x in restored.items()} == {
        "migrate": "done", "nightly": "done", "orphan": "done"}
    assert restored["orphan"]["restored_from"] == "the report"
    assert_back_as_before(kube_api, namespace, before)
    again = restore(kube_api, namespace, (str(report),))
    assert {x["result"] for x in report_lines.outcomes(again)} == {"skipped"}


def test_a_redacted_report_is_refused_with_the_way_to_the_bin(kube_api, namespace,
                                                             tmp_path: Path):
    """The Jobs' env values were redacted; the ReplicaSet had nothing to redact, so its
    manifest is complete and it comes back."""
    _, text = delete_jobs_and_an_orphan(kube_api, namespace, redact=True)
    report = tmp_path / "report.jsonl"
    report.write_text(text)

    lines = restore(kube_api, namespace, (str(report),))

    refused = outcomes_by_name(lines)
    assert {n: x["result"] for n, x in refused.items()} == {
        "migrate": "failed", "nightly": "failed", "orphan": "done"}
    assert "is redacted" in refused["migrate"]["error"]
    assert "kubekeeper restore --from-bin --run" in refused["migrate"]["error"]
    assert report_lines.summaries(lines)[0]["errors"] == 2
    assert BatchV1Api(kube_api).list_namespaced_job(namespace).items == []


def owned_job(client: ApiClient, namespace: str, owner: str) -> dict:
    """A StatefulSet (no pods) owning a Job that finished 3 days ago; the policy opts Jobs
    owned by StatefulSets in (a CronJob's own controller would prune its Jobs first)."""
    sts = AppsV1Api(client).create_namespaced_stateful_set(namespace, {
        "metadata": {"name": owner},
        "spec": {"replicas": 0, "serviceName": owner, "selector": {"matchLabels": {"o": owner}},
                 "template": pod_template({"o": owner})}})
    ref = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": owner,
           "uid": sts.metadata.uid}
    batch = BatchV1Api(client)
    body = job(f"{owner}-job")
    body.metadata.owner_references = [ref]
    batch.create_namespaced_job(namespace, body)
    finish_job(batch, namespace, f"{owner}-job", succeeded=True, started=ago(days=3),
               finished=ago(days=3))
    return ref


def test_a_restored_job_keeps_a_live_owner_and_loses_a_gone_one(kube_api, namespace):
    """Without dropping the reference to a deleted owner, the garbage collector would
    delete the restored Job again within a second or two."""
    live = owned_job(kube_api, namespace, "kept")
    owned_job(kube_api, namespace, "gone")
    rules = "completedJobs: {action: delete, ownerKinds: [StatefulSet]}"
    run = run_task(kube_api, policy_for(namespace, rules), "jobs")
    assert run.names("job", "delete") == {"kept-job", "gone-job"}
    AppsV1Api(kube_api).delete_namespaced_stateful_set("gone", namespace)

    lines = outcomes_by_name(restore(kube_api, namespace))

    assert {n: x["result"] for n, x in lines.items()} == {"kept-job": "done", "gone-job": "done"}
    assert "dropped ownerReference to StatefulSet gone (no longer exists)" in lines[
        "gone-job"]["reason"]
    refs = raw(kube_api, "job", namespace, "kept-job")["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"], r["uid"]) for r in refs] == [
        ("StatefulSet", "kept", live["uid"])]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        restored = raw(kube_api, "job", namespace, "gone-job")["metadata"]
        assert "ownerReferences" not in restored and "deletionTimestamp" not in restored
        time.sleep(0.5)


def test_a_deletion_planned_again_after_a_409_is_restored_as_it_was_deleted(
        kube_api, namespace, tmp_path: Path):
    """The Job is relabelled between the list and the DELETE: the DELETE gets a 409, the
    new version is planned and deleted. Its manifest must reach the bin and a new intent
    line before the DELETE is sent again, or a restore brings back the version listed."""
    job_with_a_secret(kube_api, namespace, "migrate")
    batch = BatchV1Api(kube_api)
    api = Interleaved(kube_api, {"migrate": lambda: batch.patch_namespaced_job(
        "migrate", namespace, {"metadata": {"labels": {"touched": "yes"}}})})
    rules = JOBS + "\nredactManifests: false"

    run = run_task(kube_api, policy_for(namespace, rules), "jobs", api=api)

    line = run.line("job", "migrate")
    assert (line["result"], line["replanned"]) == ("done", True)
    first, again = [i for i in run.intents if i["name"] == "migrate"]
    assert first["op"] == again["op"] == line["op"] and again["replanned"] is True
    assert "touched" not in first["manifest"]["metadata"]["labels"]
    assert again["manifest"]["metadata"]["labels"]["touched"] == "yes"
    assert again["recycle_bin"] == line["recycle_bin"] != first["recycle_bin"]
    assert bin_manifest(kube_api, line["recycle_bin"])["metadata"]["labels"]["touched"] == "yes"
    report = tmp_path / "report.jsonl"
    report.write_text(run.text)
    for sources in ((), (str(report),)):
        restored = outcomes_by_name(restore(kube_api, namespace, sources))
        assert restored["migrate"]["result"] == "done"
        back = raw(kube_api, "job", namespace, "migrate")
        assert back["metadata"]["labels"]["touched"] == "yes"
        env = back["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "DB_PASSWORD", "value": SECRET}]
        batch.delete_namespaced_job("migrate", namespace, propagation_policy="Background")
