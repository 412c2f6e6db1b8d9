"""What the issue asks of the rendered DaemonSet and CronJobs, field by field.

Admission (Pod Security) and RBAC are proven against the API server elsewhere;
these checks catch the settings no server rejects when they are missing.
"""

from __future__ import annotations

import pytest

from agents.units import parse_duration
from scripts.localenv.controlplane import ControlPlane
from tests import installation
from tests.installation import TASKS, find


@pytest.fixture(scope="module")
def docs(control_plane: ControlPlane) -> list[dict]:
    return installation.rendered(control_plane)


def _hardened(container: dict) -> None:
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert {"name": "KUBEKEEPER_POLICY", "value": "/etc/kubekeeper/policies.yaml"} \
        in container["env"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/kubekeeper"] == {"name": "policy", "mountPath": "/etc/kubekeeper",
                                         "readOnly": True}
    assert "--log-format=json" in container["args"]


def test_daemonset_runs_the_node_daemon_on_every_node(docs: list[dict]) -> None:
    spec = find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    _hardened(container)
    assert container["args"][:2] == ["node", "run"] and "--once" not in container["args"]
    assert "--host-root=/host" in container["args"]
    assert "--runtime=auto" in container["args"]
    assert "--state-dir=/var/lib/kubekeeper" in container["args"]
    assert "--deadline=20m" in container["args"]
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsUser"] == 0
    assert spec["automountServiceAccountToken"] is False

    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "DOCKER_HOST" not in env  # Docker is found under --host-root like every runtime

    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == "/healthz"
    assert f"--health-port={ports[probe['port']]}" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert ports["metrics"] != ports["health"]
    annotations = find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations == {"prometheus.io/scrape": "true",
                           "prometheus.io/port": str(ports["metrics"]),
                           "prometheus.io/path": "/metrics"}


def test_daemonset_mounts_every_runtime_read_only_and_keeps_its_record_on_the_node(
    docs: list[dict],
) -> None:
    spec = find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]["spec"]
    host = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    expected = {
        "run": ("/run", "/host/run", True),
        "var-lib": ("/var/lib", "/host/var/lib", True),
        "var-log": ("/var/log", "/host/var/log", True),
        "docker-config": ("/etc/docker", "/host/etc/docker", True),
        "state": ("/var/lib/kubekeeper", "/var/lib/kubekeeper", False),
    }
    assert set(host) == set(expected)
    for name, (host_path, mount_path, read_only) in expected.items():
        assert host[name]["path"] == host_path
        assert mounts[name]["mountPath"] == mount_path
        assert mounts[name].get("readOnly", False) is read_only
    # The pod starts on a node of any runtime and creates no socket path on the host:
    # the runtime directories are mounted whole, and each exists on every Linux node.
    assert host["run"]["type"] == host["var-lib"]["type"] == "Directory"
    assert not [v for v in host.values() if v.get("type") in ("Socket", "File")]
    runtime_paths = [v["path"] for v in host.values() if v["path"].startswith(("/run", "/var/run"))]
    assert runtime_paths == ["/run"]


@pytest.mark.parametrize("task", TASKS)
def test_cronjob_runs_its_task_once_as_non_root(docs: list[dict], task: str) -> None:
    cron = find(docs, "CronJob", f"kubekeeper-{task}")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] > 0
    assert 1 <= cron["successfulJobsHistoryLimit"] <= 3
    assert 1 <= cron["failedJobsHistoryLimit"] <= 3
    job = cron["jobTemplate"]["spec"]
    for field in ("ttlSecondsAfterFinished", "backoffLimit", "activeDeadlineSeconds"):
        assert isinstance(job[field], int), field
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == f"kubekeeper-{task}"
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    container = pod["containers"][0]
    _hardened(container)
    assert container["args"][:3] == ["cluster", "run", task]
    [deadline] = [a.removeprefix("--deadline=") for a in container["args"]
                  if a.startswith("--deadline=")]
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert parse_duration(deadline).total_seconds() + grace < job["activeDeadlineSeconds"], (
        "the run must end, summary written, before Kubernetes kills it")
