"""kubekeeper installed on the local node and run as pods, as a cluster runs it.

The image is built on the private engine (as tests/integration/test_install_image.py
builds it), saved, and imported into the node's containerd; the repository's
kustomization is applied through an overlay that changes only the image reference
and the pull policy. Each CronJob is then run once as a real pod with
`kubectl create job --from=cronjob/...`, in kubekeeper-system (Pod Security
`restricted`, enforced), reaching the API server through its in-cluster
configuration: the `kubernetes` Service, which kube-proxy maps to the API server on
the node's bridge. Its report is read back with `kubectl logs`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from docker.errors import BuildError

from scripts.localenv import baseimage
from scripts.localenv.dockerd import DockerEngine
from scripts.localenv.node import Node
from tests import report_lines
from tests.installation import REPO, SYSTEM_NAMESPACE, TASKS
from tests.polling import wait_for

pytestmark = pytest.mark.slow

TAG = "kubekeeper:test"
IMPORTED = f"docker.io/library/{TAG}"  # what `ctr images import` names a `docker save` tag
OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: kubekeeper
    newName: docker.io/library/kubekeeper
    newTag: test
patches:
  - target: {{kind: CronJob}}
    patch: |-
      - op: replace
        path: /spec/jobTemplate/spec/template/spec/containers/0/imagePullPolicy
        value: Never
  - target: {{kind: DaemonSet}}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: Never
"""


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("overlay")
    (directory / "kustomization.yaml").write_text(
        OVERLAY.format(base=os.path.relpath(REPO, directory)))
    return directory


@pytest.fixture(scope="module")
def installed(kube_node: Node, docker_engine: DockerEngine, overlay: Path) -> Iterator[Node]:
    """The node with the kubekeeper image imported, the overlay applied and SEEDED made."""
    _import_image(kube_node, docker_engine)
    kube_node.plane.run_kubectl("apply", "-k", str(overlay))
    _seed(kube_node)
    yield kube_node
    kube_node.plane.run_kubectl("delete", "namespace", SEEDED_NAMESPACE, "--wait=false")
    kube_node.plane.run_kubectl("delete", "-k", str(overlay), "--ignore-not-found",
                                "--wait=false")


SEEDED_NAMESPACE = "kk-seeded"
SEED = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {SEEDED_NAMESPACE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {SEEDED_NAMESPACE}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: app, image: kubekeeper.test/web:1, imagePullPolicy: Never}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: greedy, namespace: {SEEDED_NAMESPACE}}}
spec:
  schedule: "0 0 1 1 *"
  suspend: true
  successfulJobsHistoryLimit: 10
  failedJobsHistoryLimit: 5
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: task, image: kubekeeper.test/web:1, imagePullPolicy: Never}}]
"""
# What the shipped policy (dry run, action report) says of the seed, task by task; a
# ReplicaSet line is named by its owner: the oldest 2 of 6 go with maxLimit 3.
EXPECTED = {
    "requests": [("cronjob", "greedy"), ("deployment", "web")],
    "revisions": [("deployment", "web"), ("replicaset", "deployment/web"),
                  ("replicaset", "deployment/web")],
    "jobs": [("cronjob", "greedy")],
}


def _seed(node: Node) -> None:
    """A Deployment without requests and with 6 revisions (default history 10), and a
    CronJob without requests keeping 10 successful and 5 failed Jobs."""
    kubectl = node.plane.run_kubectl
    kubectl("apply", "-f", "-", input=SEED)
    for revision in range(2, 7):
        kubectl("set", "env", "-n", SEEDED_NAMESPACE, "deployment/web", f"REVISION={revision}")
        wait_for(lambda r=revision: len(kubectl("get", "rs", "-n", SEEDED_NAMESPACE, "-o",
                                                "name").stdout.split()) == r,
                 what=f"ReplicaSet of revision {revision}")


def _import_image(node: Node, engine: DockerEngine) -> None:
    client = engine.client(timeout=900)
    try:
        baseimage.ensure_image(client)
        started = time.monotonic()
        try:
            client.images.build(path=str(REPO), tag=TAG, network_mode="host", rm=True,
                                forcerm=True, buildargs={"BASE_IMAGE": baseimage.BASE_TAG})
        except BuildError as err:
            pytest.fail(f"the image did not build: {err}", pytrace=False)
        archive = node.runtime.state_dir / "kubekeeper-image.tar"
        with open(archive, "wb") as out:
            for chunk in client.images.get(TAG).save(named=True):
                out.write(chunk)
        node.runtime.ctr("images", "import", "--platform", "linux/amd64", str(archive),
                         timeout=600)
        archive.unlink()
        print(f"\n{TAG}: built, saved and imported in {time.monotonic() - started:.0f}s")
    finally:
        client.close()


def rendered(node: Node, directory: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(
        node.plane.run_kubectl("kustomize", str(directory)).stdout) if doc]


def test_the_overlay_changes_only_the_image_and_its_pull_policy(installed: Node, overlay: Path):
    assert IMPORTED in installed.runtime.ctr("images", "ls", "-q").split()
    base = rendered(installed, REPO)
    ours = rendered(installed, overlay)
    changed = 0
    for doc in ours:
        for spec in _pod_specs(doc):
            for container in spec["containers"]:
                assert (container["image"], container["imagePullPolicy"]) == (IMPORTED, "Never")
                container["image"], container["imagePullPolicy"] = "kubekeeper:0.1.0", None
                changed += 1
    for doc in base:
        for spec in _pod_specs(doc):
            for container in spec["containers"]:
                container["imagePullPolicy"] = None
    assert changed == 4  # the DaemonSet and three CronJobs
    assert ours == base


def _pod_specs(doc: dict) -> list[dict]:
    if doc["kind"] == "DaemonSet":
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


@pytest.mark.parametrize("task", TASKS)
def test_each_cronjob_runs_as_a_restricted_pod_and_reports(installed: Node, task: str):
    kubectl = installed.plane.run_kubectl
    job = f"{task}-by-hand"
    created = kubectl("create", "job", f"--from=cronjob/kubekeeper-{task}", job,
                      "-n", SYSTEM_NAMESPACE)
    assert "Warning" not in created.stderr  # Pod Security would warn before rejecting

    waited = kubectl("wait", "-n", SYSTEM_NAMESPACE, f"job/{job}", "--for=condition=Complete",
                     "--timeout=120s", check=False)

    logs = kubectl("logs", "-n", SYSTEM_NAMESPACE, f"job/{job}", check=False)
    assert waited.returncode == 0, (
        f"job {job} did not complete: {waited.stderr}\nlogs:\n{logs.stdout}{logs.stderr}\n"
        + kubectl("describe", "pods", "-n", SYSTEM_NAMESPACE, "-l", f"job-name={job}").stdout
        + installed.log_tails(10))
    lines = report_lines.parse(logs.stdout)
    summary = lines[-1]
    assert (summary["event"], summary["task"], summary["errors"]) == ("run.summary", task, 0)
    seeded = sorted((x["kind"], x.get("owner") or x["name"])
                    for x in report_lines.outcomes(lines)
                    if x.get("namespace") == SEEDED_NAMESPACE)
    assert seeded == EXPECTED[task]
    assert {x["action"] for x in report_lines.outcomes(lines)} <= {"report"}  # dryRun: true
    [_one_pod] = kubectl("get", "pods", "-n", SYSTEM_NAMESPACE, "-l", f"job-name={job}",
                         "-o", "name").stdout.split()
