"""monitoring/: the alert rules pass promtool, each alert fires when it should, and the
kustomize component renders a scrape target that finds the node agent's metrics port."""

from __future__ import annotations

import os
import subprocess

import yaml

from scripts import prometheusrule
from scripts.localenv import controlplane, prometheus
from tests.installation import REPO, find

MONITORING = REPO / "monitoring"
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{repo}]
components: [{repo}/monitoring]
"""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(prometheus.promtool()), *args], cwd=MONITORING,
                          capture_output=True, text=True, check=False)


def test_the_rules_pass_promtool_check():
    result = promtool("check", "rules", "alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_each_alert_fires_on_its_series_and_not_on_the_others():
    result = promtool("test", "rules", "alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {t["alertname"] for case in yaml.safe_load(
        (MONITORING / "alerts_test.yaml").read_text())["tests"]
        for t in case["alert_rule_test"]}
    alerts = {r["alert"] for g in yaml.safe_load((MONITORING / "alerts.yaml").read_text())[
        "groups"] for r in g["rules"]}
    assert tested == alerts


def test_the_component_adds_a_servicemonitor_that_finds_the_metrics_port(tmp_path):
    # kustomize takes only relative paths to other kustomizations.
    repo = os.path.relpath(REPO, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(OVERLAY.format(repo=repo))
    kubectl = controlplane.binaries_dir() / "kubectl"
    output = subprocess.run([str(kubectl), "kustomize", str(tmp_path)], capture_output=True,
                            text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(output) if d]
    daemonset = find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]
    service = find(docs, "Service", "kubekeeper-node-metrics", "kubekeeper-node")
    monitor = find(docs, "ServiceMonitor", "kubekeeper-node", "kubekeeper-node")
    rule = find(docs, "PrometheusRule", "kubekeeper", "kubekeeper-node")
    pod_labels = daemonset["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    ports = {p["name"] for p in daemonset["spec"]["containers"][0]["ports"]}
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in ports and port["name"] == monitor["spec"]["endpoints"][0]["port"]
    assert rule["spec"]["groups"] == prometheusrule.rule()["spec"]["groups"]


def test_the_base_kustomization_stays_without_the_operator_kinds():
    kubectl = controlplane.binaries_dir() / "kubectl"
    output = subprocess.run([str(kubectl), "kustomize", str(REPO)], capture_output=True,
                            text=True, check=True).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(output) if d}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
