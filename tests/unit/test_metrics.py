"""The metrics mapping: every family is derived from the report's own lines."""

from __future__ import annotations

import hashlib
import io
import json
import re
import urllib.request
from datetime import UTC, datetime

import pytest
import yaml
from prometheus_client import CollectorRegistry

from agents.actions import Action, Outcome, Result, Verb, refused
from agents.cli import main
from agents.metrics import Metrics, policy_hash, run_outcome
from agents.node import health
from agents.policy import Policy
from agents.policy_loader import PolicyInvalid, load_policy, parse_policy
from agents.report import Reporter
from scripts import prometheusrule
from tests.report_metrics import action_counts, reclaimed, samples


def image(name: str, size: int = 100) -> Action:
    return Action("image", name, Verb.DELETE, "images.unused", "unused for 9d > 7d",
                  id=f"sha256:{name}", bytes=size)


def disk(capacity: int, available: int) -> Action:
    return Action("disk", "/var/lib/docker", Verb.REPORT, "images.diskPressure", "ok",
                  details={"path": "/var/lib/docker", "capacity": capacity,
                           "available": available})


def run(metrics: Metrics, outcomes: list[Outcome], task: str = "cleanup",
        **summary) -> list[dict]:
    out = io.StringIO()
    reporter = Reporter("node", task, dry_run=False, node="n1", stream=out, observer=metrics)
    for outcome in outcomes:
        op = reporter.intent(outcome.action) if outcome.action.mutates else None
        reporter.action(outcome, op=op)
    reporter.summary(**summary)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def fresh() -> tuple[Metrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return Metrics(registry), registry


def text(metrics: Metrics) -> str:
    return metrics.exposition().decode()


def test_action_counters_and_reclaimed_bytes_equal_the_report_lines():
    metrics, _ = fresh()
    lines = run(metrics, [Outcome(image("a", 10), Result.DONE),
                          Outcome(image("b", 20), Result.DONE),
                          Outcome(image("c", 40), Result.FAILED, error="x"),
                          Outcome(image("d", 80), Result.SKIPPED, error="in use"),
                          Outcome(disk(1000, 250), Result.DONE)])
    lines += run(metrics, [Outcome(image("e", 5), Result.DONE)])
    exposed = text(metrics)
    assert samples(exposed, "kubekeeper_actions_total", ("agent", "task", "kind", "action",
                                                         "result")) == action_counts(lines)
    assert samples(exposed, "kubekeeper_reclaimed_bytes_total", ("kind",)) == reclaimed(lines)
    assert reclaimed(lines) == {("image",): 35.0}
    assert action_counts(lines)[("node", "cleanup", "image", "delete", "done")] == 3


def test_no_label_carries_an_object_name_or_id():
    metrics, _ = fresh()
    run(metrics, [Outcome(image("secret-name"), Result.DONE)])
    assert "secret-name" not in text(metrics)


def test_planned_bytes_of_a_dry_run_are_not_reclaimed():
    metrics, _ = fresh()
    run(metrics, [Outcome(image("a", 10), Result.PLANNED)])
    assert samples(text(metrics), "kubekeeper_reclaimed_bytes_total") == {}


def test_disk_line_sets_usage_ratio_and_capacity():
    metrics, _ = fresh()
    run(metrics, [Outcome(disk(1000, 250), Result.DONE)])
    exposed = text(metrics)
    assert samples(exposed, "kubekeeper_disk_usage_ratio", ("path",)) == {
        ("/var/lib/docker",): 0.75}
    assert samples(exposed, "kubekeeper_disk_capacity_bytes", ("path",)) == {
        ("/var/lib/docker",): 1000.0}


def test_summary_sets_duration_heartbeat_and_outcome():
    metrics, _ = fresh()
    lines = run(metrics, [Outcome(image("a"), Result.DONE)])
    ended = datetime.fromisoformat(lines[-1]["ts"].replace("Z", "+00:00")).timestamp()
    exposed = text(metrics)
    labels = ("agent", "task", "outcome")
    assert samples(exposed, "kubekeeper_last_run_timestamp_seconds", labels) == {
        ("node", "cleanup", "success"): ended}
    assert samples(exposed, "kubekeeper_last_success_timestamp_seconds", ("task",)) == {
        ("cleanup",): ended}
    assert samples(exposed, "kubekeeper_run_duration_seconds_count", ("task",)) == {
        ("cleanup",): 1.0}


def test_a_run_refused_by_the_cap_counts_an_abort_and_is_no_success():
    metrics, _ = fresh()
    why = "plan has 2 destructive actions, more than maxDeletionsPerRun=1"
    run(metrics, [refused(image("a"), why), refused(image("b"), why)], aborted=why)
    exposed = text(metrics)
    assert samples(exposed, "kubekeeper_deletion_cap_aborts_total", ("agent", "task")) == {
        ("node", "cleanup"): 1.0}
    assert samples(exposed, "kubekeeper_last_success_timestamp_seconds") == {}
    assert set(samples(exposed, "kubekeeper_last_run_timestamp_seconds", ("outcome",))) == {
        ("aborted",)}


def test_outcome_of_a_summary():
    assert run_outcome({"results": {"done": 3}}) == "success"
    assert run_outcome({"results": {"done": 3, "failed": 1}}) == "partial"
    assert run_outcome({"results": {}, "aborted": "cap"}) == "aborted"
    assert run_outcome({"results": {"failed": 1}, "error": "inventory failed"}) == "error"


def test_a_partial_run_is_a_success_heartbeat_and_an_unreachable_one_is_not():
    metrics, _ = fresh()
    run(metrics, [Outcome(image("a"), Result.FAILED, error="x")])
    metrics.unreachable("node", "logs", datetime(2026, 12, 2, tzinfo=UTC))
    exposed = text(metrics)
    assert set(samples(exposed, "kubekeeper_last_run_timestamp_seconds",
                       ("task", "outcome"))) == {("cleanup", "partial"), ("logs", "error")}
    assert set(samples(exposed, "kubekeeper_last_success_timestamp_seconds", ("task",))) == {
        ("cleanup",)}


def test_policy_info_names_the_policy_in_force_only():
    metrics, _ = fresh()
    first, second = Policy(), Policy(dryRun=False)
    metrics.policy(first)
    metrics.policy(second)
    info = samples(text(metrics), "kubekeeper_policy_info", ("hash",))
    assert info == {(policy_hash(second),): 1.0}
    assert policy_hash(first) != policy_hash(second) and len(policy_hash(first)) == 12
    high = second.node.images.diskPressure.highPercent
    assert samples(text(metrics), "kubekeeper_disk_high_ratio") == {(): high / 100}


def test_reloads_start_at_zero_and_count_by_result():
    metrics, _ = fresh()
    metrics.watch_reloads()
    assert "kubekeeper_policy_reloads_total{result=\"rejected\"} 0.0" in text(metrics)
    metrics.reload(accepted=False)
    metrics.reload(accepted=True)
    metrics.reload(accepted=True)
    assert samples(text(metrics), "kubekeeper_policy_reloads_total", ("result",)) == {
        ("accepted",): 2.0, ("rejected",): 1.0}


def test_a_failed_push_is_logged_and_returns_false():
    metrics, _ = fresh()
    assert metrics.push("http://127.0.0.1:9", "jobs") is False


def test_each_process_has_its_own_registry():
    one, _ = fresh()
    two, _ = fresh()
    run(one, [Outcome(image("a"), Result.DONE)])
    assert samples(text(two), "kubekeeper_actions_total") == {}


def test_pushgateway_setting_is_off_by_default_and_must_be_an_http_url():
    assert Policy().cluster.metrics.pushgateway is None
    good = parse_policy("apiVersion: kubekeeper/v1\ncluster:\n  metrics:\n"
                        "    pushgateway: https://pushgateway.monitoring:9091\n")
    assert good.cluster.metrics.pushgateway == "https://pushgateway.monitoring:9091"
    for bad in ("ftp://host", "pushgateway:9091", "http://", "9091"):
        with pytest.raises(PolicyInvalid, match=r"4:18: cluster.metrics.pushgateway: .* is "
                                                r"not an http\(s\) URL"):
            parse_policy(f"apiVersion: kubekeeper/v1\ncluster:\n  metrics:\n"
                         f"    pushgateway: \"{bad}\"\n")


def test_health_server_serves_metrics_in_the_prometheus_text_format():
    metrics, _ = fresh()
    run(metrics, [Outcome(image("a"), Result.DONE)])
    server = health.serve(0, health.Health(datetime.now(UTC)), metrics=metrics.exposition)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = answer.read().decode()
            assert answer.headers["Content-Type"].startswith("text/plain; version=")
    finally:
        server.shutdown()
    assert samples(body, "kubekeeper_actions_total", ("result",)) == {("done",): 1.0}


def test_a_run_with_failed_actions_sets_the_last_failure_time_even_with_an_error():
    metrics, _ = fresh()
    run(metrics, [Outcome(image("a"), Result.DONE)])
    assert samples(text(metrics), "kubekeeper_last_failure_timestamp_seconds") == {}
    lines = run(metrics, [Outcome(image("b"), Result.FAILED, error="x")], error="Docker lost")
    ended = datetime.fromisoformat(lines[-1]["ts"].replace("Z", "+00:00")).timestamp()
    assert samples(text(metrics), "kubekeeper_last_failure_timestamp_seconds", ("task",)) == {
        ("cleanup",): ended}


def test_the_alerts_read_only_families_that_exist_and_prometheusrule_is_up_to_date():
    source = (prometheusrule.MONITORING.parent / "agents" / "metrics.py").read_text()
    rules = yaml.safe_load((prometheusrule.MONITORING / "alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {n for e in exprs for n in re.findall(r"\bkubekeeper_[a-z_]+", e)}
    assert names
    for name in names:
        assert f'"{name.removesuffix("_total")}"' in source, name
    generated = (prometheusrule.MONITORING / "prometheusrule.yaml").read_text()
    assert generated == prometheusrule.text(), (
        "run: python -m scripts.prometheusrule > monitoring/prometheusrule.yaml")


def test_policy_hash_is_the_sha256_of_policy_show(capsys):
    capsys.readouterr()
    assert main(["policy", "show", "--policy", "policies.yaml"]) == 0
    shown = capsys.readouterr().out
    assert hashlib.sha256(shown.encode()).hexdigest()[:12] == policy_hash(
        load_policy("policies.yaml"))
