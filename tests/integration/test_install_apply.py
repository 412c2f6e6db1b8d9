"""`kubectl apply -k .` on the local control plane: server-side dry-run, then for real.

Also checks what the Pod Security labels do with the pods the manifests make:
the CronJobs' pods are admitted under `restricted`, the DaemonSet's pod is not,
and not even under `baseline`, which is why it has a namespace of its own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest

from scripts.localenv.controlplane import ControlPlane
from tests import installation
from tests.installation import NODE_NAMESPACE, REPO, SYSTEM_NAMESPACE, TASKS, find
from tests.polling import wait_for


@pytest.fixture(scope="module")
def uninstalled(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane without kubekeeper, before and after this module's tests."""
    installation.uninstall(control_plane)
    yield control_plane
    installation.uninstall(control_plane)


def _applied_lines(plane: ControlPlane, *flags: str) -> list[str]:
    return plane.run_kubectl("apply", "-k", str(REPO), *flags).stdout.splitlines()


def test_dry_run_then_real_apply_installs_every_object(uninstalled: ControlPlane) -> None:
    plane = uninstalled
    docs = installation.rendered(plane)
    # A server-side dry-run cannot create namespaces, so objects in them would be
    # NotFound on a fresh cluster: the namespaces go first, as the README says.
    plane.run_kubectl("apply", "-f", str(REPO / "daemonsets" / "namespace.yaml"),
                      "-f", str(REPO / "cronjobs" / "namespace.yaml"))

    dry = _applied_lines(plane, "--dry-run=server")
    assert len(dry) == len(docs)
    assert all(line.endswith("(server dry run)") for line in dry), dry
    left = plane.run_kubectl("get", "daemonsets,cronjobs,serviceaccounts,configmaps",
                             "--all-namespaces", "-o", "name").stdout
    assert "kubekeeper" not in left

    real = _applied_lines(plane)
    assert len(real) == len(docs)
    names = plane.run_kubectl("get", "-k", str(REPO), "-o", "name").stdout.split()
    assert len(names) == len(docs)
    assert "daemonset.apps/kubekeeper-node" in names
    assert {f"cronjob.batch/kubekeeper-{task}" for task in TASKS} <= set(names)

    again = _applied_lines(plane, "--dry-run=server")
    assert all(line.endswith("unchanged (server dry run)") for line in again), again


@pytest.fixture(scope="module")
def installed(uninstalled: ControlPlane) -> Iterator[list[dict]]:
    yield from installation.install(uninstalled)


def test_namespaces_carry_their_pod_security_levels(
    installed: list[dict], control_plane: ControlPlane
) -> None:
    def labels(name: str) -> dict[str, str]:
        out = control_plane.run_kubectl("get", "namespace", name, "-o", "json").stdout
        return json.loads(out)["metadata"]["labels"]

    system, node = labels(SYSTEM_NAMESPACE), labels(NODE_NAMESPACE)
    assert system["pod-security.kubernetes.io/enforce"] == "restricted"
    assert system["pod-security.kubernetes.io/warn"] == "restricted"
    assert node["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("task", TASKS)
def test_cronjob_pods_are_admitted_under_restricted(
    installed: list[dict], control_plane: ControlPlane, task: str
) -> None:
    """A Job made from the CronJob gets its pod: the `restricted` namespace admitted it."""
    job = f"admission-{task}"
    control_plane.run_kubectl("create", "job", job, f"--from=cronjob/kubekeeper-{task}",
                              "-n", SYSTEM_NAMESPACE)

    def pods() -> list[dict]:
        out = control_plane.run_kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-l",
                                        f"job-name={job}", "-o", "json").stdout
        return json.loads(out)["items"]

    pod = wait_for(pods, what=f"the pod of Job {job}")[0]
    assert pod["spec"]["serviceAccountName"] == f"kubekeeper-{task}"
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532


def _probe_pod(template: dict) -> dict:
    """A bare pod from a pod template, without its ServiceAccount (it lives elsewhere)."""
    spec = copy.deepcopy(template["spec"])
    spec.pop("serviceAccountName", None)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "psa-probe", "labels": template["metadata"]["labels"]},
            "spec": spec}


def _dry_create(plane: ControlPlane, namespace: str, body: dict) -> tuple[int, str]:
    result = plane.run_kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-",
                               input=json.dumps(body), check=False)
    return result.returncode, result.stderr


def test_daemonset_pod_needs_the_privileged_namespace(
    installed: list[dict], control_plane: ControlPlane, namespace: str
) -> None:
    template = find(installed, "DaemonSet", "kubekeeper-node")["spec"]["template"]
    pod = _probe_pod(template)

    assert _dry_create(control_plane, NODE_NAMESPACE, pod) == (0, "")

    code, error = _dry_create(control_plane, SYSTEM_NAMESPACE, pod)
    assert code != 0
    assert 'violates PodSecurity "restricted:latest"' in error
    assert "hostPath" in error and "runAsUser=0" in error

    control_plane.run_kubectl("label", "namespace", namespace,
                              "pod-security.kubernetes.io/enforce=baseline")
    code, error = _dry_create(control_plane, namespace, pod)
    assert code != 0
    assert 'violates PodSecurity "baseline:latest": hostPath volumes' in error


def test_the_policy_configmap_is_the_root_policies_file_in_both_namespaces(
    installed: list[dict], control_plane: ControlPlane
) -> None:
    policy_text = (REPO / "policies.yaml").read_text()
    workloads = [find(installed, "DaemonSet", "kubekeeper-node")["spec"]["template"]]
    workloads += [find(installed, "CronJob", f"kubekeeper-{task}")["spec"]["jobTemplate"]
                  ["spec"]["template"] for task in TASKS]
    for template, namespace in zip(workloads, [NODE_NAMESPACE] + [SYSTEM_NAMESPACE] * 3,
                                   strict=True):
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == "policy")
        name = volume["configMap"]["name"]
        assert name.startswith("kubekeeper-policy-")
        out = control_plane.run_kubectl("get", "configmap", name, "-n", namespace,
                                        "-o", "json").stdout
        assert json.loads(out)["data"] == {"policies.yaml": policy_text}
