"""The Helm chart: the kustomization's objects, installed, upgraded and removed by a real helm.

helm is built from the Go module proxy (tests/helm/build) and runs against the local
control plane, so the API server itself validates what the chart renders.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.localenv.controlplane import ControlPlane
from tests import helm_chart, installation
from tests.helm_chart import CHART, HELM_LABELS, RELEASE, run_helm, template

_HASHED_POLICY = re.compile(r"^kubekeeper-policy-[a-z0-9]{10}$")


def comparable(doc: Any) -> Any:
    """An object as both installs should render it: without Helm's labels, the policy
    ConfigMap's hash suffix and the chart's policy checksum; the policy file parsed."""
    if isinstance(doc, list):
        return [comparable(item) for item in doc]
    if isinstance(doc, str):
        return "kubekeeper-policy" if _HASHED_POLICY.match(doc) else doc
    if not isinstance(doc, dict):
        return doc
    out = {key: comparable(value) for key, value in doc.items()}
    if isinstance(out.get("labels"), dict):
        out["labels"] = {k: v for k, v in out["labels"].items() if k not in HELM_LABELS}
    if isinstance(out.get("annotations"), dict):
        out["annotations"].pop("checksum/policy", None)
        if not out["annotations"]:
            out.pop("annotations")
    if out.get("kind") == "ConfigMap":
        out["data"] = {name: yaml.safe_load(text) for name, text in out["data"].items()}
    return out


def by_identity(docs: list[dict]) -> dict[tuple[str, str, str], dict]:
    found = {}
    for doc in map(comparable, docs):
        meta = doc["metadata"]
        found[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return found


def test_helm_lint_strict_passes():
    result = run_helm(None, "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


def test_the_defaults_render_the_kustomization_object_by_object(control_plane: ControlPlane):
    chart, kustomize = by_identity(template()), by_identity(installation.rendered(control_plane))
    assert sorted(chart) == sorted(kustomize)
    for identity, expected in kustomize.items():
        assert chart[identity] == expected, identity


def test_the_default_policy_is_the_shipped_file():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["policy"] == yaml.safe_load((installation.REPO / "policies.yaml").read_text())


def test_the_defaults_pass_the_api_servers_validation(control_plane: ControlPlane):
    docs = template()
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    rest = [d for d in docs if d["kind"] != "Namespace"]
    # A dry run cannot create the namespaces the other objects need: create those for real.
    control_plane.run_kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": namespaces}))
    try:
        result = control_plane.run_kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": rest}), check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("(server dry run)") == len(rest)
    finally:
        control_plane.run_kubectl("delete", "namespace", "kubekeeper-node", "kubekeeper-system",
                                  "--wait=true", "--timeout=180s")


def _json(plane: ControlPlane, *args: str) -> dict:
    return json.loads(plane.run_kubectl("get", *args, "-o", "json").stdout)


def _leftovers(plane: ControlPlane) -> list[str]:
    """Every object of kubekeeper's still in the cluster."""
    names = plane.run_kubectl("get", "namespaces,clusterroles,clusterrolebindings", "-o", "name",
                              "-l", "app.kubernetes.io/part-of=kubekeeper").stdout.split()
    gone = plane.run_kubectl("get", "namespace", "kubekeeper-node", "kubekeeper-system",
                             "-o", "name", check=False).stdout.split()
    return names + gone


def test_install_upgrade_with_a_new_policy_and_uninstall(control_plane: ControlPlane):
    run_helm(control_plane, "install", RELEASE, str(CHART))
    try:
        before = _json(control_plane, "daemonset", "kubekeeper-node", "-n", "kubekeeper-node")
        assert len(_json(control_plane, "cronjobs", "-n", "kubekeeper-system")["items"]) == 3
        run_helm(control_plane, "upgrade", RELEASE, str(CHART), "--set", "policy.dryRun=false")
        config = _json(control_plane, "configmap", "kubekeeper-policy", "-n", "kubekeeper-node")
        assert yaml.safe_load(config["data"]["policies.yaml"])["dryRun"] is False
        after = _json(control_plane, "daemonset", "kubekeeper-node", "-n", "kubekeeper-node")
        annotation = "checksum/policy"
        assert (after["spec"]["template"]["metadata"]["annotations"][annotation]
                != before["spec"]["template"]["metadata"]["annotations"][annotation])
        assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    finally:
        helm_chart.uninstall(control_plane)
    assert _leftovers(control_plane) == []


def test_a_bad_policy_is_refused_at_install_and_nothing_is_created(control_plane: ControlPlane):
    result = run_helm(control_plane, "install", RELEASE, str(CHART),
                      "--set", "policy.dryRun=maybe",
                      "--set", "policy.node.containers.olderThen=1h", check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert "/policy/dryRun" in result.stderr and "want boolean" in result.stderr, result.stderr
    assert "olderThen" in result.stderr, result.stderr
    assert run_helm(control_plane, "list", "-q").stdout.split() == []
    assert _leftovers(control_plane) == []


def test_helm_package_makes_the_archive(tmp_path: Path):
    run_helm(None, "package", str(CHART), "--destination", str(tmp_path))
    archive = tmp_path / "kubekeeper-0.1.0.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert {"kubekeeper/Chart.yaml", "kubekeeper/values.yaml",
            "kubekeeper/values.schema.json"} <= set(names)
    assert run_helm(None, "template", RELEASE, str(archive)).returncode == 0


@pytest.mark.parametrize("values", [
    ["--set", "node.enabled=false"],
    ["--set", "cluster.tasks.revisions.enabled=false"],
])
def test_parts_can_be_left_out(values: list[str]):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in template(*values)}
    if "node.enabled=false" in values:
        assert ("DaemonSet", "kubekeeper-node") not in kinds
    else:
        assert ("CronJob", "kubekeeper-revisions") not in kinds
        assert ("Role", "kubekeeper-revisions-recycle-bin") not in kinds
    assert ("CronJob", "kubekeeper-jobs") in kinds


def test_the_metrics_objects_render_only_when_enabled():
    kinds = {d["kind"] for d in template()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    kinds = {d["kind"] for d in template("--set", "metrics.serviceMonitor.enabled=true",
                                         "--set", "metrics.prometheusRule.enabled=true")}
    assert {"ServiceMonitor", "PrometheusRule", "Service"} <= kinds


def test_the_values_reach_every_pod(tmp_path: Path):
    values = tmp_path / "my-values.yaml"
    values.write_text(yaml.safe_dump({
        "image": {"repository": "registry.example.com/kubekeeper", "tag": "9.9", "pullPolicy":
                  "Always"},
        "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": "system-node-critical",
        "podAnnotations": {"team": "infra"}, "extraArgs": ["--verbose"],
        "node": {"runtime": "cri:/run/x.sock", "nodeSelector": {"kubernetes.io/os": "linux"},
                 "tolerations": [], "resources": {"requests": {"cpu": "20m"}}},
        "cluster": {"tasks": {"jobs": {"schedule": "0 1 * * *",
                                       "resources": {"requests": {"memory": "1Gi"}}}}},
    }))
    docs = template("-f", str(values))
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] if d["kind"] == "DaemonSet"
            else d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("DaemonSet", "CronJob")}
    assert len(pods) == 4
    for spec in pods.values():
        [container] = spec["containers"]
        assert container["image"] == "registry.example.com/kubekeeper:9.9"
        assert container["imagePullPolicy"] == "Always"
        assert container["args"][-1] == "--verbose"
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["priorityClassName"] == "system-node-critical"
    node = pods["kubekeeper-node"]
    assert "--runtime=cri:/run/x.sock" in node["containers"][0]["args"]
    assert node["nodeSelector"] == {"kubernetes.io/os": "linux"} and "tolerations" not in node
    # Helm merges mappings into the defaults, key by key.
    assert node["containers"][0]["resources"] == {
        "requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert pods["kubekeeper-jobs"]["containers"][0]["resources"]["requests"] == {
        "cpu": "50m", "memory": "1Gi"}
    cronjob = next(d for d in docs if d["metadata"]["name"] == "kubekeeper-jobs"
                   and d["kind"] == "CronJob")
    assert cronjob["spec"]["schedule"] == "0 1 * * *"
    annotations = [d["spec"]["template"]["metadata"]["annotations"] if d["kind"] == "DaemonSet"
                   else d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
                   for d in docs if d["kind"] in ("DaemonSet", "CronJob")]
    assert all(a["team"] == "infra" for a in annotations)


def _corpus_verdicts(cases: list[Path], tmp_path: Path) -> dict[str, str]:
    """helm's verdict on each corpus policy given as the chart's ``policy`` value."""
    verdicts = {}
    for case in cases:
        values = tmp_path / f"{case.stem}.yaml"
        values.write_text(yaml.safe_dump({"policy": yaml.safe_load(case.read_text())}))
        result = run_helm(None, "template", RELEASE, str(CHART), "-f", str(values), check=False)
        verdicts[case.stem] = (
            "valid" if result.returncode == 0 else
            "schema" if "specifications of the schema" in result.stderr else
            "not JSON" if "converting YAML to JSON: json: unsupported value" in result.stderr
            else result.stderr.strip())
    return verdicts


def test_helm_and_the_unit_tests_validator_agree_on_the_corpus(tmp_path: Path):
    """helm's validator (Go, RE2 patterns) reads the schema as Python's jsonschema does."""
    from tests.unit.test_policy_schema import ONLY_POLICY_CHECK, REFUSED, VALID

    merged_away = {"missing_api_version", "empty"}  # the chart's default policy fills them in
    refused = [c for c in REFUSED if c.stem not in ONLY_POLICY_CHECK and c.stem not in merged_away]
    verdicts = _corpus_verdicts([*VALID, *refused], tmp_path)
    # .inf has no JSON form: helm refuses it before its schema is consulted.
    assert {stem: v for stem, v in verdicts.items() if v != "valid"} == {
        c.stem: "not JSON" if ".inf" in c.read_text() else "schema" for c in refused}
