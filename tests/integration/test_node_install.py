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

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

from scripts.localenv import cri_images, kubekeeper_pods
from scripts.localenv.kubekeeper_image import IMPORTED
from tests import report_lines
from tests.installation import NODE_NAMESPACE, REPO, SYSTEM_NAMESPACE, TASKS, rendered
from tests.integration.conftest import Installed
from tests.polling import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def applied(installed: Installed) -> Iterator[Installed]:
    """The node overlay applied and SEEDED made."""
    installed.node.plane.run_kubectl("apply", "-k", str(installed.node_overlay()))
    _seed(installed)
    yield installed
    installed.node.plane.run_kubectl("delete", "namespace", SEEDED_NAMESPACE, "--wait=false")


SEEDED_NAMESPACE = "kk-seeded"
WEB = cri_images.image(["kubekeeper.test/web:1"], "web", cmd=cri_images.IDLE)
SEED = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {SEEDED_NAMESPACE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {SEEDED_NAMESPACE}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
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
# ReplicaSet line is named by its owner: the oldest 4 of 7 old ones go with maxLimit 3.
REVISIONS = 8
EXPECTED = {
    "requests": [("cronjob", "greedy"), ("deployment", "web")],
    "revisions": [("deployment", "web"), *[("replicaset", "deployment/web")] * 4],
    "jobs": [("cronjob", "greedy")],
}


def _seed(installed: Installed) -> None:
    """A Deployment without requests, its pod really running, with 8 revisions (default
    history 10) rolled out; a CronJob without requests keeping 10 successful and 5 failed
    Jobs."""
    kubectl = installed.node.plane.run_kubectl
    cri_images.import_images(installed.node.runtime, [WEB])
    kubectl("apply", "-f", "-", input=SEED)
    for revision in range(2, REVISIONS + 1):
        wait_for(lambda r=revision: replicasets(installed) == r - 1,
                 what=f"the ReplicaSet of revision {revision - 1}")
        kubectl("set", "env", "-n", SEEDED_NAMESPACE, "deployment/web", f"REVISION={revision}")
    rolled = kubectl("rollout", "status", "-n", SEEDED_NAMESPACE, "deployment/web",
                     "--timeout=120s", check=False)
    assert rolled.returncode == 0, rolled.stderr + installed.node.log_tails(10)
    assert replicasets(installed) == REVISIONS


def replicasets(installed: Installed) -> int:
    return len(installed.node.plane.run_kubectl(
        "get", "rs", "-n", SEEDED_NAMESPACE, "-o", "name").stdout.split())


def test_the_overlay_changes_only_the_image_and_its_pull_policy(applied: Installed):
    assert IMPORTED in applied.node.runtime.ctr("images", "ls", "-q").split()
    base = rendered(applied.node.plane, REPO)
    ours = rendered(applied.node.plane, applied.image_overlay)
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
def test_each_cronjob_runs_as_a_restricted_pod_and_reports(applied: Installed, task: str):
    kubectl = applied.node.plane.run_kubectl
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
        + applied.node.log_tails(10))
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


def real_policy() -> str:
    """The shipped policy with the dry run off and every cluster task's action on."""
    policy = (REPO / "policies.yaml").read_text()
    for shipped, changed in (("dryRun: true", "dryRun: false"),
                             ("action: report            # report | patch (patching the limit",
                              "action: patch             # report | patch (patching the limit"),
                             ("action: report            # report | delete",
                              "action: delete            # report | delete")):
        assert shipped in policy
        policy = policy.replace(shipped, changed, 1)
    return policy


def test_with_the_dry_run_off_the_cronjob_pods_change_the_cluster(applied: Installed):
    """From inside their pods: the revisions task patches the limit and the Deployment
    controller prunes to it; the jobs task patches the CronJob's history limits."""
    kubectl = applied.node.plane.run_kubectl
    overlay = applied.node_overlay({SYSTEM_NAMESPACE: real_policy()}, "cluster-real")
    kubectl("apply", "-k", str(overlay))
    for run in kubekeeper_pods.run_cronjobs(applied.node.plane, ("revisions", "jobs"), "real"):
        assert run.completed, run.problem + applied.node.log_tails(10)
        summary = run.lines[-1]
        assert (summary["dry_run"], summary["errors"]) == (False, 0), summary
    assert seeded(applied, "deployment/web", "{.spec.revisionHistoryLimit}") == "3"
    wait_for(lambda: replicasets(applied) == 4,
             what="the Deployment controller pruning to the current and 3 old ReplicaSets")
    assert seeded(applied, "cronjob/greedy", "{.spec.successfulJobsHistoryLimit}/"
                  "{.spec.failedJobsHistoryLimit}") == "3/3"


def seeded(applied: Installed, what: str, jsonpath: str) -> str:
    return applied.node.plane.run_kubectl("get", "-n", SEEDED_NAMESPACE, what,
                                          "-o", f"jsonpath={jsonpath}").stdout


def test_kubekeeper_report_reads_the_pods_logs_as_kubectl_prints_them(applied: Installed):
    """The README's on-call command, on real pods: ``kubectl logs --prefix`` of every
    kubekeeper pod (the DaemonSet's and the CronJobs' Jobs) piped into ``kubekeeper report``
    gives the same counts as the lines themselves."""
    plane = applied.node.plane
    kubekeeper_pods.run_cronjobs(plane, ("jobs",), "for-report")
    # The agent's first run starts after the policy's jitter (up to 60 s): wait for it, or
    # the DaemonSet's pod may have nothing to report yet.
    kubekeeper_pods.wait_for_run(plane, kubekeeper_pods.agent_pod(plane))
    logs = "".join(plane.run_kubectl(
        "logs", "-n", namespace, "-l", "app.kubernetes.io/name=kubekeeper", "--prefix",
        "--all-containers", "--tail=-1").stdout for namespace in (NODE_NAMESPACE,
                                                                  SYSTEM_NAMESPACE))
    lines = logs.splitlines()
    assert lines and all(line.startswith("[pod/") for line in lines), lines[:3]
    parsed = [json.loads(line.split("] ", 1)[1]) for line in lines
              if line.split("] ", 1)[1].startswith("{")]
    outcomes = [x for x in parsed if x["event"] == "action"]
    summaries = [x for x in parsed if x["event"] == "run.summary"]
    assert {x["agent"] for x in summaries} == {"node", "cluster"}, summaries

    read = subprocess.run([sys.executable, "-m", "agents", "report", "-", "-o", "json"],
                          input=logs, capture_output=True, text=True, cwd=REPO, check=False)

    assert read.returncode == 0, read.stderr
    digest = json.loads(read.stdout)
    assert digest["input"]["lines"] == len(lines)
    assert (digest["input"]["torn"], digest["input"]["foreign"]) == (0, len(lines) - len(parsed))
    assert digest["runs"]["runs"] == len(summaries)
    assert digest["results"] == dict(Counter(x["result"] for x in outcomes))
    assert digest["unfinished"] == []
