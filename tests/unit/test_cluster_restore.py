"""The restore planner on plain manifests, and a restore against the in-memory port."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

from agents.actions import Action, Outcome, Result, Verb
from agents.cli import main
from agents.cluster import connection
from agents.cluster.restore import (
    RestoreOptions,
    from_bin,
    from_report,
    owners_found,
    run_restore,
)
from agents.cluster.restore_plan import Entry, Selection, plan, recreatable
from agents.policy_loader import parse_policy
from agents.report import Reporter
from tests import report_lines
from tests.memory_port import MemoryPort

WHEN = datetime(2026, 12, 2, 1, 13, 23, tzinfo=UTC)
RUN = "20261202T011323Z-3fa2c1"


def job_manifest(name: str = "migrate", owners: list | None = None, **spec: object) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "batch", "uid": "u1", "resourceVersion": "9",
                     "creationTimestamp": "2026-11-29T00:00:00Z", "managedFields": [{}],
                     "labels": {"controller-uid": "u1", "team": "data"},
                     **({"ownerReferences": owners} if owners else {})},
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                 "template": {"metadata": {"labels": {"controller-uid": "u1",
                                                      "batch.kubernetes.io/controller-uid": "u1",
                                                      "job-name": name}},
                              "spec": {"containers": [{"name": "m", "image": "busybox"}]}},
                 **spec},
        "status": {"succeeded": 1},
    }


def entry(manifest: dict | None, kind: str = "job", name: str = "migrate",
          deleted: datetime = WHEN, run: str = RUN) -> Entry:
    return Entry(manifest, run, deleted, "kubekeeper-system/bin/key", kind, "batch", name)


def test_a_job_comes_back_suspended_without_server_fields_or_generated_labels():
    body, notes = recreatable("job", job_manifest(), {})

    assert body["spec"]["suspend"] is True
    assert "selector" not in body["spec"] and "status" not in body
    assert body["metadata"] == {"name": "migrate", "namespace": "batch",
                                "labels": {"team": "data"}}
    assert body["spec"]["template"]["metadata"]["labels"] == {"job-name": "migrate"}
    assert any("suspend" in note for note in notes)


def test_a_manual_selector_is_kept():
    body, _ = recreatable("job", job_manifest(manualSelector=True), {})
    assert body["spec"]["selector"] and body["spec"]["suspend"] is True


def test_owner_references_stay_only_when_the_owner_still_exists():
    owners = [{"kind": "CronJob", "name": "nightly", "uid": "alive"},
              {"kind": "CronJob", "name": "old", "uid": "gone"},
              {"kind": "Workflow", "name": "argo", "uid": "unknown"}]
    body, notes = recreatable("job", job_manifest(owners=owners), {"alive": True,
                                                                   "gone": False})

    assert body["metadata"]["ownerReferences"] == [owners[0]]
    assert notes[:2] == ["dropped ownerReference to CronJob old (no longer exists)",
                         "dropped ownerReference to Workflow argo (not checked)"]


def test_a_replicaset_loses_its_ownerless_since_so_it_is_not_deleted_again_at_once():
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "orphan", "annotations": {"kubekeeper/ownerless-since": "x",
                                                         "keep": "me"}},
          "spec": {"replicas": 0}}
    body, notes = recreatable("replicaset", rs, {})
    assert body["metadata"]["annotations"] == {"keep": "me"} and notes == []


def test_the_plan_refuses_redacted_manifests_and_pods_and_keeps_the_latest_deletion():
    redacted = job_manifest("secret-job")
    redacted["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": "redacted:sha256:0123456789ab"}]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    older = entry(job_manifest(team="old"), deleted=WHEN.replace(hour=0))
    entries = [older, entry(job_manifest()), entry(redacted, name="secret-job"),
               entry(pod, kind="pod", name="p"), entry(None, name="lost")]

    result = plan(entries, {})

    [create] = result.creates
    assert create.name == "migrate" and "team" not in json.loads(create.sealed)["spec"]
    assert create.reason.startswith(f"restore from 2026-12-02T01:13:23.000Z: deleted by run {RUN}; "
                                    "created suspended (spec.suspend: true)")
    refused = {o.action.name: (str(o.result), o.error) for o in result.refused}
    assert refused["secret-job"][0] == "failed"
    assert f"kubekeeper restore --from-bin --run {RUN}" in refused["secret-job"][1]
    assert refused["p"][0] == "skipped" and "without running again" in refused["p"][1]
    assert refused["lost"][0] == "failed" and "no manifest" in refused["lost"][1]


def test_selection_by_run_kind_namespace_name_and_time():
    selection = Selection(run=RUN, kind="Job", namespace="batch", name="migrate", since=WHEN)
    assert selection.admits("job", "batch", "migrate", RUN, WHEN)
    assert not selection.admits("job", "batch", "migrate", "other-run", WHEN)
    assert not selection.admits("replicaset", "batch", "migrate", RUN, WHEN)
    assert not selection.admits("job", "batch", "migrate", RUN, WHEN.replace(hour=0))


def bin_secret(manifests: dict[str, dict], chunk: int = 0) -> dict:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": f"kubekeeper-bin-{RUN.lower()}-jobs-{chunk}",
                         "namespace": "kubekeeper-system",
                         "creationTimestamp": "2026-12-02T01:13:24Z",
                         "labels": {"app.kubernetes.io/managed-by": "kubekeeper",
                                    "app.kubernetes.io/component": "recycle-bin",
                                    "kubekeeper/run": RUN},
                         "annotations": {"kubekeeper/chunk": str(chunk)}},
            "data": {key: base64.b64encode(json.dumps(m).encode()).decode()
                     for key, m in manifests.items()}}


POLICY = parse_policy("apiVersion: kubekeeper/v1\n")


def test_restore_dry_runs_then_creates_and_never_overwrites():
    existing = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "kept", "namespace": "batch"}}
    port = MemoryPort(bin_secret({"job.batch.migrate.u1": job_manifest(),
                                  "job.batch.kept.u2": job_manifest("kept")}), existing)
    out = io.StringIO()

    summary = run_restore(port, POLICY, RestoreOptions(Selection()), stream=out)

    lines = report_lines.parse(out.getvalue())
    by_name = {x["name"]: x for x in report_lines.outcomes(lines)}
    assert (by_name["migrate"]["result"], by_name["kept"]["result"]) == ("done", "skipped")
    assert by_name["kept"]["error"] == "already exists: not overwritten"
    assert [i["name"] for i in report_lines.intents(lines)] == ["migrate"]
    assert port.find("job", "batch", "migrate")["spec"]["suspend"] is True
    assert ("create", "job", "kept") not in port.writes
    assert port.counter.by_request["create jobs"] == 3
    assert summary["results"] == {"done": 1, "skipped": 1}


def test_an_object_planned_again_after_a_409_comes_back_as_it_was_deleted():
    """The bin holds the listed version (chunk 0) and, written in the same second, the
    version deleted after the 409 (chunk 1); the report has two intents for the op."""
    listed, deleted = job_manifest(), job_manifest()
    deleted["metadata"]["labels"]["touched"] = "yes"
    port = MemoryPort(bin_secret({"job.batch.migrate.u1": listed}),
                      bin_secret({"job.batch.migrate.u1": deleted}, chunk=1))
    out = io.StringIO()
    reporter = Reporter("cluster", "jobs", False, stream=out)
    action = Action(kind="job", name="migrate", namespace="batch", verb=Verb.DELETE,
                    rule="completedJobs.succeededTTL", why="old", id="u1",
                    details={"manifest": listed})
    op = reporter.intent(action)
    again = Action(**{**vars(action), "details": {"manifest": deleted, "replanned": True}})
    reporter.action(Outcome(again, Result.DONE), op=reporter.intent(again, op=op))

    [from_the_bin] = plan(from_bin(port, "kubekeeper-system", Selection()), {}).creates
    [from_the_report] = plan(from_report(io.StringIO(out.getvalue()), Selection())[0],
                             {}).creates
    for create in (from_the_bin, from_the_report):
        assert json.loads(create.sealed)["metadata"]["labels"] == {"team": "data",
                                                                   "touched": "yes"}


def test_a_dry_run_restore_creates_nothing():
    port = MemoryPort(bin_secret({"job.batch.migrate.u1": job_manifest()}))
    out = io.StringIO()
    run_restore(port, POLICY, RestoreOptions(Selection(), dry_run=True), stream=out)
    [line] = report_lines.parse(out.getvalue())[:-1]
    assert line["result"] == "planned" and port.writes == []


def test_docker_deletions_in_the_report_are_counted_not_restored():
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", False, node="n1", stream=out)
    image = Action(kind="image", name="old", verb=Verb.DELETE, rule="r", why="w")
    reporter.action(Outcome(image, Result.DONE), op=reporter.intent(image))

    entries, docker = from_report(io.StringIO(out.getvalue()), Selection())

    assert entries == [] and docker == {"image": 1}


def test_restore_never_uses_a_pods_service_account(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "admin.kubeconfig"))
    used = []
    monkeypatch.setattr(connection.kubernetes.config, "load_incluster_config",
                        lambda **_: used.append("in-cluster"))
    monkeypatch.setattr(connection.kubernetes.config, "load_kube_config",
                        lambda config_file, **_: used.append(config_file))

    connection.connect(None, None, POLICY.cluster, in_cluster=False)

    assert used == [str(tmp_path / "admin.kubeconfig")]


def test_an_unreadable_bin_ends_in_a_summary_that_says_why():
    port = MemoryPort()
    port.failures[("list", "secret", "")] = 403
    out = io.StringIO()
    summary = run_restore(port, POLICY, RestoreOptions(Selection()), stream=out)
    assert summary["error"].startswith("cannot read the recycle bin: forbidden")
    assert summary["errors"] == 1


def test_an_owner_counts_as_found_only_with_the_same_uid():
    owners = [{"kind": "CronJob", "name": "same", "uid": "uid-cronjob-batch-same"},
              {"kind": "CronJob", "name": "recreated", "uid": "old-uid"},
              {"kind": "CronJob", "name": "deleted", "uid": "u3"},
              {"kind": "Workflow", "name": "argo", "uid": "u4"}]
    port = MemoryPort(*({"kind": "CronJob", "metadata": {"name": n, "namespace": "batch"}}
                        for n in ("same", "recreated")))

    found = owners_found(port, [entry(job_manifest(owners=owners))])

    assert found == {"uid-cronjob-batch-same": True, "old-uid": False, "u3": False}


def test_report_lines_join_intent_and_outcome_and_survive_a_bad_time():
    out = io.StringIO()
    reporter = Reporter("cluster", "jobs", False, stream=out)
    action = Action(kind="job", name="migrate", namespace="batch", verb=Verb.DELETE,
                    rule="completedJobs.succeededTTL", why="old", id="u1",
                    details={"manifest": job_manifest()})
    reporter.action(Outcome(action, Result.DONE), op=reporter.intent(action))
    text = out.getvalue() + json.dumps({"event": "action", "agent": "cluster", "ts": "soon",
                                        "action": "delete", "result": "done", "kind": "job",
                                        "name": "x", "run": "r", "op": 1}) + "\n"

    entries, _ = from_report(io.StringIO(text), Selection())
    later, _ = from_report(io.StringIO(text), Selection(since=WHEN))

    assert [(e.name, e.manifest is not None, e.uid) for e in entries] == [
        ("migrate", True, "u1"), ("x", False, "")]
    assert [e.name for e in later] == ["migrate"]


def test_restore_without_a_policy_file_uses_the_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBEKEEPER_POLICY", raising=False)
    code = main(["restore", "--kubeconfig", str(tmp_path / "none")])
    assert code == 3
    assert "no policies.yaml: using the default policy" in capsys.readouterr().err
    assert main(["restore", "--policy", str(tmp_path / "p.yaml")]) == 2
