"""Metrics against the real services: they equal the report, line for line.

The node daemon runs against the private Docker engine and is scraped on its
``/metrics``; a cluster run against the local control plane pushes to the
private Pushgateway, whose own ``/metrics`` (what Prometheus would scrape) is
read back. Both are parsed with prometheus_client's text parser.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime
from pathlib import Path

from agents.cli import main
from agents.metrics import policy_hash
from agents.policy_loader import load_policy
from scripts.localenv import testimages as ti
from scripts.localenv.kube_jobs import finish_job, job
from scripts.localenv.prometheus import Pushgateway
from tests import report_lines
from tests.cluster_runs import ago
from tests.integration.test_node_daemon import ConfigMapDir, free_port, healthz, is_summary
from tests.node_runs import AgentProcess, policy_text
from tests.polling import wait_for
from tests.report_metrics import ACTION_LABELS, action_counts, reclaimed, samples

ACTIONS = "kubekeeper_actions_total"
RECLAIMED = "kubekeeper_reclaimed_bytes_total"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return answer.read().decode()


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_node_daemon_metrics_equal_its_report(docker_client, clean_docker, tmp_path):
    base = ti.base_image(docker_client).id
    ti.many_containers(docker_client, base, 6, "victim")
    docker_client.containers.create(base, ["true"], name="backup-1", network_mode="none")
    docker_client.volumes.create("orphan")
    config = ConfigMapDir(tmp_path / "config")
    config.root.mkdir()
    text = policy_text().replace("diskPressure: {enabled: false}",
                                 "diskPressure: {highPercent: 99, lowPercent: 98}")
    config.publish(text)
    health_port, metrics_port = free_port(), free_port()
    agent = AgentProcess("--policy", str(config.path), "--docker-host", clean_docker.base_url,
                         "--job", "cleanup", "--health-port", str(health_port),
                         "--metrics-port", str(metrics_port))
    try:
        lines = list(agent.lines_until(is_summary))
        summary = lines[-1]
        exposed = scrape(metrics_port)
        assert scrape(health_port) and healthz(metrics_port) == (200, "ok\n")
        _equal_to_the_report(exposed, lines, summary)
        assert samples(exposed, "kubekeeper_policy_info", ("hash",)) == {
            (policy_hash(load_policy(config.path)),): 1.0}
        assert samples(exposed, "kubekeeper_schedule_interval_seconds", ("task",)) == {
            ("cleanup",): 3600.0}
        assert samples(exposed, "process_start_time_seconds")

        config.publish("apiVersion: kubekeeper/v1\ndryRun: maybe\n")
        wait_for(lambda: samples(scrape(metrics_port), "kubekeeper_policy_reloads_total",
                                 ("result",)) == {("rejected",): 1.0},
                 what="the rejected reload to be counted")
        config.publish(text.replace("parallelism: 4", "parallelism: 2"))
        wait_for(lambda: samples(scrape(metrics_port), "kubekeeper_policy_reloads_total",
                                 ("result",)) == {("rejected",): 1.0, ("accepted",): 1.0},
                 what="the accepted reload to be counted")
        assert samples(scrape(metrics_port), "kubekeeper_policy_info", ("hash",)) == {
            (policy_hash(load_policy(config.path)),): 1.0}
    finally:
        assert agent.stop() == 0


def _equal_to_the_report(exposed: str, lines: list[dict], summary: dict) -> None:
    outcomes = report_lines.outcomes(lines)
    counted = action_counts(outcomes)
    assert samples(exposed, ACTIONS, ACTION_LABELS) == counted
    assert sum(counted.values()) == summary["actions"] > 6
    assert counted[("node", "cleanup", "container", "delete", "done")] == 6
    freed = reclaimed(outcomes)
    assert samples(exposed, RECLAIMED, ("kind",)) == freed
    assert sum(freed.values()) == summary["bytes_reclaimed"]
    assert samples(exposed, "kubekeeper_last_run_timestamp_seconds", ("task", "outcome")) == {
        ("cleanup", "success"): epoch(summary["ts"])}
    took = summary["duration_s"]
    assert samples(exposed, "kubekeeper_run_duration_seconds_sum", ("task",)) == (
        {("cleanup",): took} if took else {})
    assert samples(exposed, "kubekeeper_run_duration_seconds_count", ("task",)) == {
        ("cleanup",): 1.0}
    [disk] = [line for line in outcomes if line["kind"] == "disk"]
    assert samples(exposed, "kubekeeper_disk_capacity_bytes", ("path",)) == {
        (disk["path"],): float(disk["capacity"])}
    assert samples(exposed, "kubekeeper_disk_usage_ratio", ("path",)) == {
        (disk["path"],): (disk["capacity"] - disk["available"]) / disk["capacity"]}
    assert "victim" not in exposed and "orphan" not in exposed


def finished_jobs(kube_api, namespace: str, count: int) -> None:
    from kubernetes.client import BatchV1Api

    batch = BatchV1Api(kube_api)
    for i in range(count):
        batch.create_namespaced_job(namespace, job(f"done-{i}"))
        when = ago(days=3)
        finish_job(batch, namespace, f"done-{i}", succeeded=True, started=when, finished=when)


def cluster_run(capsys, control_plane, policy: Path, task: str
                ) -> tuple[int, list[dict], str]:
    """``kubekeeper cluster run TASK`` in-process: the exit code, report lines and stderr."""
    capsys.readouterr()
    code = main(["cluster", "run", task, "--policy", str(policy), "--log-format", "json",
                 "--kubeconfig", str(control_plane.kubeconfig)])
    captured = capsys.readouterr()
    return code, report_lines.parse(captured.out), captured.err


def cluster_policy(tmp_path: Path, namespace: str, pushgateway: str, cap: int = 500) -> Path:
    path = tmp_path / f"policy-{cap}.yaml"
    path.write_text(f"""\
apiVersion: kubekeeper/v1
dryRun: false
maxDeletionsPerRun: {cap}
cluster:
  apiQPS: 0
  namespaces: {json.dumps({"include": [namespace], "exclude": []})}
  recycleBin: {{namespace: {namespace}}}
  completedJobs: {{action: delete}}
  metrics: {{pushgateway: "{pushgateway}"}}
""")
    return path


def test_cluster_runs_push_their_report_to_the_pushgateway_grouped_by_task(
        kube_api, namespace, control_plane, pushgateway: Pushgateway, capsys, tmp_path):
    finished_jobs(kube_api, namespace, 4)
    refused = cluster_policy(tmp_path, namespace, pushgateway.url, cap=1)
    code, aborted_lines, stderr = cluster_run(capsys, control_plane, refused, "jobs")
    assert code == 1 and aborted_lines[-1]["aborted"]
    jobs = {"job": "kubekeeper", "cronjob": "kubekeeper-jobs"}
    pushed = pushgateway.metrics()
    assert samples(pushed, ACTIONS, ACTION_LABELS, jobs) == action_counts(
        report_lines.outcomes(aborted_lines)), stderr + pushed
    assert samples(pushed, "kubekeeper_deletion_cap_aborts_total", ("task",), jobs) == {
        ("jobs",): 1.0}

    policy = cluster_policy(tmp_path, namespace, pushgateway.url)
    code, lines, _ = cluster_run(capsys, control_plane, policy, "jobs")
    assert code == 0, lines[-1]
    _, requests_lines, _ = cluster_run(capsys, control_plane, policy, "requests")
    pushed = pushgateway.metrics()
    outcomes = report_lines.outcomes(lines)
    assert samples(pushed, ACTIONS, ACTION_LABELS, jobs) == action_counts(outcomes)
    assert action_counts(outcomes)[("cluster", "jobs", "job", "delete", "done")] == 4
    assert samples(pushed, "kubekeeper_deletion_cap_aborts_total", (), jobs) == {}
    assert samples(pushed, "kubekeeper_last_run_timestamp_seconds", ("task", "outcome"),
                   jobs) == {("jobs", "success"): epoch(lines[-1]["ts"])}
    assert samples(pushed, "kubekeeper_policy_info", ("hash",), jobs) == {
        (policy_hash(load_policy(policy)),): 1.0}
    requests = {"job": "kubekeeper", "cronjob": "kubekeeper-requests"}
    assert samples(pushed, ACTIONS, ACTION_LABELS, requests) == action_counts(
        report_lines.outcomes(requests_lines))
    assert samples(pushed, "kubekeeper_last_run_timestamp_seconds", ("task",), requests) == {
        ("requests",): epoch(requests_lines[-1]["ts"])}
    assert namespace not in pushed and "done-0" not in pushed


def test_a_push_that_fails_is_logged_and_the_run_still_succeeds(
        kube_api, namespace, control_plane, capsys, tmp_path):
    finished_jobs(kube_api, namespace, 1)
    policy = cluster_policy(tmp_path, namespace, f"http://127.0.0.1:{free_port()}")
    code, lines, stderr = cluster_run(capsys, control_plane, policy, "jobs")
    assert code == 0 and lines[-1]["errors"] == 0
    assert action_counts(lines)[("cluster", "jobs", "job", "delete", "done")] == 1
    assert "metrics push failed" in stderr
