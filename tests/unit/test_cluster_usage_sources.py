"""Usage sources and the record: recorded metrics.k8s.io and Prometheus answers on the wire,
the ConfigMap record on the in-memory port, the run's note when there is no source."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from agents.cluster import records, usage, usage_store
from agents.cluster.inventory import Inventory
from agents.cluster.owners import owners
from agents.cluster.resources import RESOURCES
from agents.cluster.tasks import run_tasks
from agents.cluster.usage_observe import observe
from agents.cluster.usage_sources import (
    evidence_from_answers,
    pod_metrics,
    prometheus_evidence,
    prometheus_queries,
)
from agents.policy import Recommend
from agents.policy_loader import parse_policy
from tests import report_lines
from tests.memory_port import MemoryPort
from tests.unit.test_cluster_api import api_for, server  # noqa: F401 (fixture)

RECORDED = Path(__file__).parent / "recorded"
NOW = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def owned(kind: str, name: str, owner: str | None, ns: str = "apps") -> dict:
    meta: dict = {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "1"}
    if owner:
        owner_kind, owner_name = owner.split("/")
        meta["ownerReferences"] = [{"kind": owner_kind, "name": owner_name,
                                    "uid": f"uid-{owner_name}", "controller": True}]
    return {"kind": kind, "metadata": meta, "spec": {"template": {"spec": {"containers": []}}},
            "status": {"phase": "Running"}}


OBJECTS = [owned("ReplicaSet", "web-7d9c8b", "Deployment/web"),
           owned("Pod", "web-7d9c8b-q2x4k", "ReplicaSet/web-7d9c8b"),
           owned("Pod", "web-7d9c8b-zz9p1", "ReplicaSet/web-7d9c8b"),
           owned("Job", "nightly-29000000", "CronJob/nightly"),
           owned("Pod", "nightly-29000000-8fj2p", "Job/nightly-29000000"),
           owned("Pod", "solo", None)]


def inventory() -> Inventory:
    by_kind: dict[str, list] = {}
    for raw in OBJECTS:
        kind = raw["kind"].lower()
        by_kind.setdefault(kind, []).append(records.PARSERS[kind](raw))
    return Inventory(**{k: tuple(v) for k, v in by_kind.items()})


def test_pods_belong_to_their_top_level_owner():
    assert owners(inventory()) == {
        ("apps", "web-7d9c8b-q2x4k"): ("deployment", "web"),
        ("apps", "web-7d9c8b-zz9p1"): ("deployment", "web"),
        ("apps", "nightly-29000000-8fj2p"): ("cronjob", "nightly"),
        ("apps", "solo"): ("pod", "solo")}


def test_pod_metrics_are_read_cluster_wide_page_by_page(server):  # noqa: F811
    server.script = [(200, {}, recorded("podmetrics-page-1.json")),
                     (200, {}, recorded("podmetrics-page-2.json"))]
    api = api_for(server, [])
    samples = list(pod_metrics(api, 1))
    assert [(s.namespace, s.pod, s.container) for s in samples] == [
        ("apps", "web-7d9c8b-q2x4k", "app"), ("apps", "web-7d9c8b-q2x4k", "sidecar"),
        ("apps", "nightly-29000000-8fj2p", "task"), ("kube-system", "coredns-5d78c9869d-abcde",
                                                     "coredns")]
    assert abs(samples[0].cores - 0.20137752) < 1e-9 and samples[0].memory == 64 * 2**20
    first, second = (urlparse(path) for _, path, _, _ in server.seen)
    assert first.path == second.path == "/apis/metrics.k8s.io/v1beta1/pods"
    assert parse_qs(second.query)["continue"] == [
        recorded("podmetrics-page-1.json")["metadata"]["continue"]]
    assert api.counter.by_request == {"list pods.metrics.k8s.io": 2}


def test_prometheus_is_asked_over_the_window_and_the_hungriest_replica_decides(server):  # noqa: F811
    names = ("cpu", "memory", "samples", "history")
    server.script = [(200, {}, recorded(f"prometheus-{n}.json")) for n in names]
    url = f"http://127.0.0.1:{server.server_port}"
    evidence = prometheus_evidence(url, Recommend(), NOW.timestamp(), owners(inventory()))
    [(key, found)] = evidence.items()
    assert key == ("apps", "deployment", "web", "app")
    assert (found.cpu, found.memory, found.samples) == (0.2081, 81788928, 25200)
    assert found.history.total_seconds() == 604500 and found.source == "prometheus"
    sent = [parse_qs(urlparse(path).query) for _, path, _, _ in server.seen]
    assert [q["query"][0] for q in sent] == list(prometheus_queries(Recommend()).values())
    assert sent[0]["query"][0] == (
        'quantile_over_time(0.9, rate(container_cpu_usage_seconds_total{container!="",'
        'container!="POD"}[5m])[8d:5m])')
    assert sent[0]["time"] == [f"{NOW.timestamp():.3f}"]


def test_a_prometheus_error_answer_is_no_evidence():
    bad = {"status": "success", "data": {"result": [
        {"metric": {"namespace": "apps", "pod": "solo", "container": "c"}, "value": [0, "NaN"]}]}}
    assert evidence_from_answers({"cpu": bad}, owners(inventory())) == {}


def cluster_policy(prometheus: str = ""):
    return parse_policy(f"""\
apiVersion: kubekeeper/v1
cluster:
  apiQPS: 0
  resourceRequests:
    usage: {{namespace: kubekeeper-system, prometheus: {{url: "{prometheus}"}}}}
""").cluster


def metrics_items() -> list[dict]:
    return recorded("podmetrics-page-1.json")["items"] + recorded("podmetrics-page-2.json")[
        "items"]


def test_without_a_metrics_api_the_run_says_so_and_keeps_no_record():
    port = MemoryPort(*OBJECTS)
    seen = observe(port, cluster_policy(), inventory(), NOW, keep_record=True)
    assert seen.measured.source is None and seen.problems == []
    [note] = seen.notes
    assert (note.source, note.rule) == ("metrics.k8s.io", "resourceRequests.usage")
    assert note.message.startswith("no usage source: the metrics API (metrics.k8s.io) is not "
                                   "served (404)")
    assert port.writes == []


def test_samples_go_into_the_record_and_the_next_run_adds_to_it():
    port = MemoryPort(*OBJECTS)
    port.metrics = metrics_items()
    first = observe(port, cluster_policy(), inventory(), NOW, keep_record=True)
    assert first.notes == [] and first.problems == []
    assert sorted(first.measured.entries) == [("apps", "cronjob", "nightly", "task"),
                                              ("apps", "deployment", "web", "app"),
                                              ("apps", "deployment", "web", "sidecar")]
    assert port.writes == [("create", "configmap", "kubekeeper-usage-0")]
    later = NOW.replace(hour=15)
    second = observe(port, cluster_policy(), inventory(), later, keep_record=True)
    entry = second.measured.entries[("apps", "deployment", "web", "app")]
    assert (entry.samples, entry.last - entry.first) == (2, 3600)
    stored = port.find("configmap", "kubekeeper-system", "kubekeeper-usage-0")
    assert stored["data"]["usage.json"] == usage.dumps(second.measured.entries)
    assert port.writes[-1] == ("patch", "configmap", "kubekeeper-usage-0")


def test_plan_reads_the_record_but_never_writes_it():
    port = MemoryPort(*OBJECTS)
    port.metrics = metrics_items()
    seen = observe(port, cluster_policy(), inventory(), NOW, keep_record=False)
    assert seen.measured.entries and port.writes == []


def test_the_record_shards_as_it_grows_and_no_shard_passes_the_bound(monkeypatch):
    monkeypatch.setattr(usage_store, "SHARD_BYTES", 4000)
    entry = usage.ContainerUsage.started(0).add(0.2, 1e8, 10, 86400, 8 * 86400)
    entries = {("apps", "deployment", f"w{i}", "app"): entry for i in range(60)}
    port = MemoryPort()
    loaded = usage_store.load(port, "kk", 500)
    assert usage_store.save(port, "kk", entries, loaded) == []
    shards = [o for (kind, _, _), o in port.objects.items() if kind == "configmap"]
    assert len(shards) in (2, 4, 8) and all(
        len(s["data"]["usage.json"]) <= 4000 for s in shards)
    again = usage_store.load(port, "kk", 500)
    assert usage.dumps(again.entries) == usage.dumps(entries) and again.shards == len(shards)
    assert port.counter.by_request["list configmaps"] == 1 + 1


def test_a_shard_another_run_changed_is_not_overwritten():
    port = MemoryPort()
    entries = {("apps", "deployment", "web", "app"): usage.ContainerUsage.started(0)}
    usage_store.save(port, "kk", entries, usage_store.load(port, "kk", 500))
    loaded = usage_store.load(port, "kk", 500)
    usage_store.save(port, "kk", entries, usage_store.load(port, "kk", 500))
    assert usage_store.save(port, "kk", entries, loaded) == [
        "usage record kk/kubekeeper-usage-0 not written: changed since it was read"]


def test_the_no_source_note_is_the_run_s_first_line():
    port = MemoryPort({"kind": "Namespace", "metadata": {"name": "apps"}}, *OBJECTS)
    stream = io.StringIO()
    run_tasks(port, parse_policy("apiVersion: kubekeeper/v1\ncluster: {apiQPS: 0}\n"),
              "all", stream=stream, now=NOW)
    lines = report_lines.parse(stream.getvalue())
    assert (lines[0]["event"], lines[0]["source"]) == ("run.note", "metrics.k8s.io")
    assert [line for line in lines if line["event"] == "run.note"] == lines[:1]
    assert lines[-1]["actions"] == len(report_lines.outcomes(lines))


def test_the_resize_subresource_path():
    path = RESOURCES["pod/resize"].path("apps", "web-1")
    assert path == "/api/v1/namespaces/apps/pods/web-1/resize"
    assert RESOURCES["pod/resize"].label == "pods/resize"



def test_a_prometheus_that_does_not_answer_is_said_on_the_first_line_and_nothing_else_is_read():
    port = MemoryPort(*OBJECTS)
    port.metrics = metrics_items()
    rules = cluster_policy("http://127.0.0.1:9")
    seen = observe(port, rules, inventory(), NOW, keep_record=True)
    [note] = seen.notes
    assert note.source == "prometheus" and note.message.startswith(
        "Prometheus at http://127.0.0.1:9 did not answer the usage queries")
    assert seen.measured.source is None and port.counter.total == 0


def test_a_note_on_a_terminal_is_one_escaped_line():
    from agents.report import Reporter
    stream = io.StringIO()
    Reporter("cluster", "requests", True, stream=stream, fmt="text").note(
        "resourceRequests.usage", "no usage source\x1b]0;x\x07")
    [line] = stream.getvalue().splitlines()
    assert line.endswith("NOTE     resourceRequests.usage: no usage source\\x1b]0;x\\x07")


def test_dry_runs_keep_the_record_and_cluster_plan_never_writes_it():
    policy = parse_policy("apiVersion: kubekeeper/v1\ndryRun: true\ncluster: {apiQPS: 0}\n")
    for plan_only, written in ((True, []), (False, [("create", "configmap",
                                                      "kubekeeper-usage-0")])):
        port = MemoryPort({"kind": "Namespace", "metadata": {"name": "apps"}}, *OBJECTS)
        port.metrics = metrics_items()
        run_tasks(port, policy, "requests", stream=io.StringIO(), now=NOW, plan_only=plan_only)
        assert port.writes == written
