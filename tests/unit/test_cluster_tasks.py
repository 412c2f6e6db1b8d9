"""A whole cluster run against the in-memory port: executor rules, report lines, summary."""

from __future__ import annotations

import gc
import io
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agents.cluster.planning import deletion
from agents.cluster.tasks import TASKS, run_tasks
from agents.errors import Unreachable
from agents.policy_loader import parse_policy
from agents.report import rfc3339
from tests import report_lines
from tests.memory_port import MemoryPort

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def policy(dry_run: bool = False, extra: str = ""):
    return parse_policy(f"""\
apiVersion: kubekeeper/v1
dryRun: {str(dry_run).lower()}
cluster:
  apiQPS: 0
  pageSize: 2
  completedJobs: {{action: delete}}
  revisionHistory: {{action: patch}}
{extra}""")


def namespace(name: str, ignored: bool = False) -> dict:
    annotations = {"kubekeeper/ignore": "true"} if ignored else {}
    return {"kind": "Namespace", "metadata": {"name": name, "annotations": annotations}}


def job(name: str, ns: str = "apps", days: int = 3) -> dict:
    done = rfc3339(NOW - timedelta(days=days))
    return {"kind": "Job", "apiVersion": "batch/v1",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"spec": {"containers": [
                {"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}},
            "status": {"completionTime": done, "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": done}]}}


def deployment(name: str) -> dict:
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": "apps"},
            "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}


def cluster(*objects: dict) -> MemoryPort:
    return MemoryPort(namespace("apps"), namespace("kube-system"), *objects)


def run(port: MemoryPort, task: str = "jobs", **kwargs) -> tuple[list[dict], dict]:
    stream = io.StringIO()
    summary = run_tasks(port, kwargs.pop("rules", None) or policy(**kwargs), task,
                        stream=stream, now=NOW)
    lines = report_lines.parse(stream.getvalue())
    assert lines[-1] == json.loads(json.dumps(summary, default=str))
    return report_lines.outcomes(lines), summary


def test_real_run_deletes_reports_the_manifest_and_records_an_event():
    port = cluster(job("old"), job("fresh", days=0))
    [line], summary = run(port)
    assert (line["kind"], line["name"], line["action"], line["result"]) == (
        "job", "old", "delete", "done")
    assert line["task"] == "jobs"
    assert line["reason"] == "completedJobs.succeededTTL: Complete 3d ago > 1d"
    assert line["manifest"]["metadata"]["name"] == "old"
    assert port.find("job", "apps", "old") is None and port.find("job", "apps", "fresh")
    [event] = [o for (kind, _, _), o in port.objects.items() if kind == "event"]
    assert event["reason"] == "KubekeeperDeleted"
    assert "completedJobs.succeededTTL" in event["message"]
    assert event["involvedObject"]["uid"] == line["id"]
    assert summary["results"] == {"done": 1} and summary["errors"] == 0


def test_dry_run_sends_every_mutation_as_a_dry_run():
    """The fake applies only writes sent without dryRun; the API server's own verdicts are
    proven against the real one (test_cluster_safety)."""
    port = cluster(job("old"), deployment("web"))
    lines, _ = run(port, "all", dry_run=True)
    assert port.writes == []
    assert {(line["task"], line["kind"], line["result"]) for line in lines} == {
        ("jobs", "job", "planned"), ("revisions", "deployment", "planned"),
        ("requests", "deployment", "done")}
    assert all(line["dry_run"] for line in lines)
    assert port.counter.by_request["delete jobs"] == 1


def test_dry_run_plans_what_a_real_run_does():
    def plan_of(dry_run: bool) -> set:
        lines, _ = run(cluster(job("a"), job("b"), deployment("web")), "all", dry_run=dry_run)
        return {(line["kind"], line["name"], line["action"], line["reason"]) for line in lines}
    assert plan_of(True) == plan_of(False)


def test_forbidden_fails_one_action_and_the_run_goes_on():
    port = cluster(job("a"), job("b"))
    port.failures[("delete", "job", "a")] = 403
    lines, summary = run(port)
    by_name = {line["name"]: line for line in lines}
    assert by_name["a"]["result"] == "failed"
    assert by_name["a"]["error"].startswith("forbidden: cannot delete jobs")
    assert by_name["b"]["result"] == "done" and port.find("job", "apps", "b") is None
    assert summary["errors"] == 1


def test_a_failed_event_never_fails_the_run():
    port = cluster(job("a"))
    port.failures[("create", "event", "*")] = 500
    [line], summary = run(port)
    assert line["result"] == "done" and summary["errors"] == 0
    assert port.counter.by_request["create events"] == 1


def test_the_cap_refuses_the_whole_plan():
    port = cluster(job("a"), job("b"), job("c"))
    lines, summary = run(port, rules=replace(policy(), maxDeletionsPerRun=2))
    assert {line["result"] for line in lines} == {"skipped"}
    assert summary["aborted"].startswith("plan has 3 destructive actions")
    assert len(port.objects) == 5 and port.writes == []


def test_all_writes_one_summary_whose_counts_equal_the_lines():
    port = cluster(job("a"), job("b"), deployment("web"))
    lines, summary = run(port, "all")
    assert summary["task"] == "all" and summary["actions"] == len(lines)
    counted = {}
    for line in lines:
        counted.setdefault(line["kind"], {}).setdefault(line["result"], 0)
        counted[line["kind"]][line["result"]] += 1
    assert summary["counts"] == counted
    assert {line["task"] for line in lines} == {"jobs", "revisions", "requests"}


def test_a_kind_that_cannot_be_listed_fails_only_the_tasks_needing_it():
    port = cluster(job("a"), deployment("web"))
    port.failures[("list", "pod", "")] = 403
    lines, summary = run(port, "all")
    assert {line["task"] for line in lines} == {"jobs", "revisions"}
    assert summary["error"].startswith("requests: cannot plan: forbidden: cannot list pods "
                                       "cluster-wide")


class _PodsListedLast(MemoryPort):
    """Lists pods only once a LimitRange was created (or 5 s passed), and says which."""

    def __init__(self, *objects: dict):
        super().__init__(*objects)
        self.created = threading.Event()
        self.pods_waited_for_a_create: bool | None = None

    def create(self, resource, namespace, body, dry_run=False):
        created = super().create(resource, namespace, body, dry_run)
        self.created.set()
        return created

    def list_all(self, resource, field_selector=None, page_size=500, **scope):
        if resource.kind == "pod":
            self.pods_waited_for_a_create = self.created.wait(timeout=5)
        return super().list_all(resource, field_selector, page_size, **scope)


LIMITRANGES = "  resourceRequests: {action: limitrange}\n"


def test_the_cap_judges_every_plan_whatever_its_task_is_meant_to_do(monkeypatch):
    """A deletion in the plan of ``requests`` (which never deletes) still meets the cap."""
    port = _PodsListedLast(namespace("apps"), deployment("web"), job("old"))

    def findings_that_delete(inventory, policies, now):
        [record] = inventory.job
        return [deletion(record.meta, "test.rule", "a planner gone wrong", "{}")]
    requests = TASKS["requests"]
    wrong = replace(requests.stages[1], plan=findings_that_delete)
    monkeypatch.setitem(TASKS, "requests", replace(requests, stages=(requests.stages[0], wrong)))

    lines, summary = run(port, "requests", extra=LIMITRANGES,
                         rules=replace(policy(extra=LIMITRANGES), maxDeletionsPerRun=0))

    assert summary["aborted"].startswith("plan has 1 destructive actions")
    assert {line["result"] for line in lines if line["action"] != "report"} == {"skipped"}
    assert port.writes == [] and port.find("job", "apps", "old")


def test_a_run_that_can_delete_plans_everything_before_acting():
    port = _PodsListedLast(namespace("apps"), deployment("web"), job("old"))
    lines, _ = run(port, "all", extra=LIMITRANGES)
    assert port.pods_waited_for_a_create is False
    assert ("limitrange", "done") in [(line["kind"], line["result"]) for line in lines]


def test_requests_keeps_writing_limitranges_when_the_workloads_cannot_be_listed():
    port = cluster(deployment("web"))
    port.failures[("list", "pod", "")] = 403
    lines, summary = run(port, "requests", extra=LIMITRANGES)
    assert [(line["kind"], line["result"]) for line in lines] == [("limitrange", "done")]
    assert summary["error"].startswith("requests: cannot plan: forbidden: cannot list pods")


class _GcWatch(MemoryPort):
    """Notes whether the cyclic collector was on when each list started."""

    def __init__(self, *objects: dict):
        super().__init__(*objects)
        self.collector_on: list[bool] = []

    def list_all(self, resource, field_selector=None, page_size=500, **scope):
        if resource.kind not in ("secret", "configmap"):  # bins, usage: small, namespaced
            self.collector_on.append(gc.isenabled())
        return super().list_all(resource, field_selector, page_size, **scope)


def test_the_collector_is_paused_while_listing_and_on_again_after():
    port = _GcWatch(namespace("apps"), job("a"), deployment("web"))
    run(port, "all")
    assert port.collector_on and not any(port.collector_on[1:])  # [0]: namespaces
    assert gc.isenabled()


def test_lists_are_paginated_and_every_request_is_counted():
    port = cluster(*(job(f"j{i}", days=0) for i in range(5)))
    run(port)
    assert port.counter.by_request == {"list namespaces": 1, "list jobs": 3,
                                       "list cronjobs": 1, "list secrets": 1}


def test_no_answer_at_all_means_unreachable():
    port = cluster()
    port.failures[("list", "namespace", "")] = 0
    with pytest.raises(Unreachable):
        run(port)


def test_plan_on_a_terminal_prints_the_table_and_the_summary():
    stream = io.StringIO()
    run_tasks(cluster(job("old")), policy(), "jobs", plan_only=True, fmt="text",
              stream=stream, now=NOW)
    table, _, summary = stream.getvalue().partition("\n== ")
    assert table.splitlines()[0].split() == ["ACTION", "KIND", "NAME", "BYTES", "REASON"]
    assert "delete  job   apps/old" in table
    assert summary.startswith("cluster jobs summary (dry-run, run ")
    assert "): 1 planned" in summary


def test_excluded_and_ignored_namespaces_are_untouched():
    port = MemoryPort(namespace("apps"), namespace("quiet", ignored=True),
                      namespace("kube-system"), job("a", "quiet"), job("b", "kube-system"))
    lines, _ = run(port)
    assert lines == [] and port.writes == []


def test_sigterm_before_acting_skips_every_mutation_and_still_writes_the_summary():
    port = cluster(job("a"))
    port.halt.set("stopped (SIGTERM)", failure=False)
    stream = io.StringIO()
    summary = run_tasks(port, policy(), "jobs", stream=stream, now=NOW)
    [line] = report_lines.outcomes(report_lines.parse(stream.getvalue()))
    assert (line["action"], line["result"]) == ("delete", "skipped")
    assert "SIGTERM" in line["error"]
    assert port.find("job", "apps", "a") and port.writes == []
    assert summary["results"] == {"skipped": 1} and summary["error"] is None


class Pipe(io.StringIO):
    """Like stdout on a pipe: no ``tell``."""

    def tell(self) -> int:
        raise io.UnsupportedOperation("not seekable")


def test_json_lines_go_to_a_stream_that_cannot_seek():
    stream = Pipe()
    run_tasks(cluster(job("old")), policy(), "jobs", stream=stream, now=NOW)
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == [
        "action.intent", "action", "run.summary"]


def test_a_plan_that_cannot_start_still_prints_its_summary_on_a_terminal():
    port = cluster()
    port.failures[("list", "namespace", "")] = 401
    stream = io.StringIO()
    summary = run_tasks(port, policy(), "all", plan_only=True, fmt="text", stream=stream)
    assert summary["error"].startswith("401: could not list namespaces cluster-wide")
    assert "ERROR: 401" in stream.getvalue()


class Recorder(MemoryPort):
    """At each DELETE sent, notes what the report and the bin already hold about the
    object; a name in ``touch`` is relabelled just after its first DELETE is noted (a
    concurrent change: that DELETE gets a 409 and the Job is planned again)."""

    def __init__(self, stream: io.StringIO, touch: set[str], *objects: dict):
        super().__init__(*objects)
        self.stream, self.touch = stream, touch
        self.seen: list[tuple[str, dict, dict | None, dict | None]] = []

    def delete(self, resource, namespace, name, preconditions, dry_run=False):
        if resource.kind == "job":
            now = self.find("job", namespace, name)["metadata"].get("labels") or {}
            self.seen.append((name, now, self._intent_labels(name), self._binned_labels(name)))
            if name in self.touch:
                self.touch.discard(name)
                self.add(_merged_labels(self.find("job", namespace, name), {"touched": "yes"}))
        return super().delete(resource, namespace, name, preconditions, dry_run)

    def _intent_labels(self, name: str) -> dict | None:
        lines = report_lines.intents(report_lines.parse(self.stream.getvalue()))
        mine = [line for line in lines if line["name"] == name]
        return mine[-1]["manifest"]["metadata"].get("labels") or {} if mine else None

    def _binned_labels(self, name: str) -> dict | None:
        """The object's manifest in the highest-numbered bin chunk holding it."""
        bins = sorted((int(o["metadata"]["annotations"]["kubekeeper/chunk"]), o)
                      for (kind, _, _), o in self.objects.items() if kind == "secret")
        kept = [json.loads(text) for _, o in bins for key, text in o["stringData"].items()
                if key.startswith(f"job.apps.{name}.")]
        return kept[-1]["metadata"].get("labels") or {} if kept else None


def _merged_labels(obj: dict, labels: dict) -> dict:
    meta = obj["metadata"]
    return {**obj, "metadata": {**meta, "labels": {**meta.get("labels", {}), **labels}}}


def test_every_delete_is_sent_after_its_manifest_is_in_the_bin_and_its_intent_line():
    """Also when a 409 made the run plan the object again: the version then deleted is
    the one the bin and the last intent line hold, or ``restore`` brings back an older one."""
    stream = io.StringIO()
    port = Recorder(stream, {"b"}, namespace("apps"), namespace("kube-system"),
                    job("a"), job("b"), job("c"))
    run_tasks(port, policy(), "jobs", stream=stream, now=NOW)
    lines = report_lines.parse(stream.getvalue())
    assert sorted(name for name, *_ in port.seen) == ["a", "b", "b", "c"]
    for name, now, intent, binned in port.seen:
        assert intent == now and binned == now, f"DELETE of {name} sent before its record"
    assert [now for name, now, *_ in port.seen if name == "b"] == [{}, {"touched": "yes"}]
    [b] = [line for line in report_lines.outcomes(lines) if line["name"] == "b"]
    assert (b["result"], b["replanned"]) == ("done", True)
    assert all(port.find("job", "apps", n) is None for n in "abc")
