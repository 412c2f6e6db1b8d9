"""The requests task on the real node, measured by a real metrics-server, then by a real
Prometheus scraping the kubelet's ``/metrics/cadvisor``.

Two Deployments of known shapes run on the local node, each with one container ``app``:

- ``burn`` runs a busy loop a fifth of the time (SIGCONT, 20 ms, SIGSTOP, 80 ms): about
  200m of CPU. Its CPU limit (1 core) is above that, so its recommendation is not in
  conflict with it; a loop capped at 200m by its limit would be (its request would
  have to rise above the limit, which kubekeeper refuses, and nothing would be patched).
- ``hold`` writes 64 MiB into a memory-backed emptyDir (tmpfs pages count in the
  container's working set) and idles.

metrics-server scrapes the kubelet every 10 s; the requests task runs every 11 s with
a test policy: ``window: 1h``, ``minHistory: 60s``, the default p90 and 15 % margin, and
floors of 10m and 16Mi (the VPA's 250Mi floor would hide a 64 MiB shape).

Tolerances. CPU: the kernel's count in the pod's cgroup, read at every run, is the shape,
not the nominal 200m: the loop shares two cores with whatever else runs on the machine
and gets less than its fifth when they are busy (a mean of 136m at a load of 6), so of
200m the test asks only a mean of 50m..250m. The p90 kubekeeper saw must then lie between
90 % of that mean (a p90 sits above a mean) and the highest rate the kernel counted between
two runs, plus 15 % + 10m (metrics-server's 10 s windows do not line up with the runs',
and a histogram bucket reads up to 5 % + 10m high). Memory: the peak within 64..72 MiB (the
64 MiB, the shell, page tables). Each recommendation is that usage plus 15 %, rounded up (a
millicore, a MiB), or the floor.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, AppsV1Api
from kubernetes.config import new_client_from_config

from agents.cluster.records import REQUESTS_PATCHED
from agents.cluster.usage_sources import prometheus_queries, query_prometheus
from agents.units import parse_quantity
from scripts.localenv import cri_images
from scripts.localenv.metrics_server import MetricsServer
from scripts.localenv.node import Node
from scripts.localenv.prometheus import PrometheusServer
from tests.cluster_runs import Run, policy_for, run_task
from tests.polling import wait_for

MI = 2**20
SPACING = 11.0
"""Seconds between runs: one more than metrics-server's resolution, so each sample is new."""
_BUSY = ("while :; do :; done & busy=$!; trap 'kill -9 $busy; exit 0' TERM; "
         "while :; do kill -CONT $busy; usleep 20000; kill -STOP $busy; usleep 80000; done")
BURN = cri_images.image(["kubekeeper.test/usage-burn:1"], "usage burn", cmd=("sh", "-c", _BUSY))
HOLD = cri_images.image(["kubekeeper.test/usage-hold:1"], "usage hold", cmd=(
    "sh", "-c", f"head -c {64 * MI} /dev/zero > /ballast/fill && {cri_images.IDLE[2]}"))
WORKLOADS = ("burn", "hold")
RESOURCES = {"burn": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "1"}},
             "hold": {"requests": {"cpu": "100m", "memory": "16Mi"},
                      "limits": {"memory": "128Mi"}}}


@dataclass(frozen=True)
class Shapes:
    node: Node
    namespace: str
    metrics: MetricsServer
    client: ApiClient

    def kubectl(self, *args: str) -> str:
        return self.node.plane.run_kubectl(*args, "-n", self.namespace).stdout

    def pod(self, workload: str) -> dict:
        """The workload's one running pod that is not being deleted."""
        pods = json.loads(self.kubectl("get", "pods", "-l", f"app={workload}", "-o", "json"))
        [pod] = [p for p in pods["items"] if p["status"].get("phase") == "Running"
                 and not p["metadata"].get("deletionTimestamp")]
        return pod

    def template(self, workload: str) -> dict:
        return json.loads(self.kubectl("get", "deployment", workload, "-o", "json"))

    def cpu_seconds(self, workload: str) -> float:
        """The kernel's own count of the pod's CPU time: its cgroup's (v1, cgroupfs)."""
        uid = self.pod(workload)["metadata"]["uid"]
        usage = Path(f"/sys/fs/cgroup/cpuacct/kubepods/burstable/pod{uid}/cpuacct.usage")
        return int(usage.read_text()) / 1e9


@dataclass(frozen=True)
class Converged:
    runs: list[Run]
    burn_rates: list[float]
    """What the kernel counted ``burn`` using between one run and the next, in cores."""

    def kernel(self) -> tuple[Decimal, Decimal]:
        """The mean and the highest of those rates, in millicores."""
        rates = [Decimal(r * 1000) for r in self.burn_rates]
        return sum(rates) / len(rates), max(rates)


def policy(namespace: str, action: str, min_cpu: str = "10m", prometheus: str = "",
           min_history: str = "60s"):
    return policy_for(namespace, f"""
resourceRequests:
  action: {action}
  usage: {{namespace: {namespace}, prometheus: {{url: "{prometheus}"}}}}
  recommend: {{window: 1h, halfLife: 1h, minHistory: {min_history}, minCpu: {min_cpu},
              minMemory: 16Mi, minInterval: 1h}}
""")


def deployment(name: str, image: cri_images.ArchiveImage, ballast: bool) -> dict:
    container = {"name": "app", "image": image.tags[0], "imagePullPolicy": "Never",
                 "resources": RESOURCES[name]}
    spec: dict = {"terminationGracePeriodSeconds": 2, "containers": [container]}
    if ballast:
        container["volumeMounts"] = [{"name": "ballast", "mountPath": "/ballast"}]
        spec["volumes"] = [{"name": "ballast", "emptyDir": {"medium": "Memory"}}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


@pytest.fixture(scope="module")
def shapes(kube_node: Node, metrics_api: MetricsServer,
           prometheus_server: PrometheusServer) -> Iterator[Shapes]:
    """Both workloads running, and both pods in the metrics API (two scrapes in).
    Prometheus scrapes the kubelet from before they start, so that by its test it holds
    their whole lives."""
    namespace = f"kk-usage-{uuid.uuid4().hex[:6]}"
    cri_images.import_images(kube_node.runtime, [BURN, HOLD])
    kube_node.plane.run_kubectl("create", "namespace", namespace)
    client = new_client_from_config(config_file=str(kube_node.plane.kubeconfig))
    found = Shapes(kube_node, namespace, metrics_api, client)
    wait_for(lambda: found.kubectl("get", "serviceaccount", "default", "-o", "name"),
             what="the default ServiceAccount")
    found.node.plane.run_kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [deployment("burn", BURN, False),
                                                       deployment("hold", HOLD, True)]}))
    wait_for(lambda: {p["metadata"]["labels"]["app"] for p in metrics_api.pods(namespace)}
             == set(WORKLOADS), timeout=180, what="PodMetrics of both workloads' pods")
    yield found
    kube_node.plane.run_kubectl("delete", "namespace", namespace, "--wait=false")
    client.close()


def test_the_metrics_api_answers_kubectl_top(shapes: Shapes):
    top = shapes.kubectl("top", "pods", "--no-headers").split("\n")
    assert sorted(line.split()[0].split("-")[0] for line in top if line) == ["burn", "hold"]
    node = shapes.node.plane.run_kubectl("top", "node", shapes.node.name, "--no-headers")
    assert node.stdout.split()[0] == shapes.node.name


@pytest.fixture(scope="module")
def converged(shapes: Shapes) -> Converged:
    """Report runs every SPACING seconds until both workloads have recommendations,
    then two more: the last three are the converged ones. The kernel's count of
    ``burn``'s CPU is read at every run."""
    runs: list[Run] = []
    counted = [(time.monotonic(), shapes.cpu_seconds("burn"))]
    while len(runs) < 20:
        runs.append(run_task(shapes.client, policy(shapes.namespace, "report"),
                             "requests"))
        counted.append((time.monotonic(), shapes.cpu_seconds("burn")))
        done = [r for r in runs if all(_recommendation(r, w) for w in WORKLOADS)]
        if len(done) == 3:
            rates = [(c2 - c1) / (t2 - t1) for (t1, c1), (t2, c2) in itertools.pairwise(counted)]
            return Converged(runs, rates)
        time.sleep(SPACING)
    pytest.fail(f"no recommendations after {len(runs)} runs: {runs[-1].text}")


def _recommendation(run: Run, workload: str) -> dict | None:
    lines = [x for x in run.lines if (x["kind"], x["name"]) == ("deployment", workload)]
    return lines[0].get("recommendations", {}).get("app") if lines else None


def _millicores(text: str) -> Decimal:
    return parse_quantity(text) * 1000


def _mebibytes(text: str) -> Decimal:
    return parse_quantity(text) / MI


def test_report_runs_converge_on_the_workloads_shapes(shapes: Shapes, converged: Converged):
    runs, (mean, high) = converged.runs, converged.kernel()
    assert 50 <= mean <= 250, mean  # it burns, and never much past its fifth of a core
    early = [r for r in runs if not _recommendation(r, "burn")]
    assert len(early) >= 5  # 60s of history at 11s apart: no recommendation on less
    for run in early[1:]:  # but a line that says how much history there is
        said = run.line("deployment", "burn")
        assert said["reason"].startswith("resourceRequests.recommend: container app: no "
                                         "recommendation yet: "), said
        assert said["history"]["app"].endswith(" needed"), said
    assert all(r.summary["error"] is None and not r.notes for r in runs)
    for run in runs[-3:]:
        burn, hold = (_recommendation(run, w) for w in WORKLOADS)
        assert set(burn) == set(hold) == {"cpu", "memory"}, run.text
        cpu = _millicores(burn["cpu"]["usage"])
        assert mean * Decimal("0.9") <= cpu <= high * Decimal("1.15") + 10, (
            converged.burn_rates, burn)
        assert abs(_millicores(burn["cpu"]["recommended"]) - cpu * Decimal("1.15")) <= 2, burn
        peak = _mebibytes(hold["memory"]["usage"])
        assert 64 <= peak <= 72, hold
        memory = _mebibytes(hold["memory"]["recommended"])
        assert (peak - 1) * Decimal("1.15") <= memory <= peak * Decimal("1.15") + 1, hold
        assert burn["memory"]["recommended"] == "16Mi"  # the floor: a shell holds ~1 MiB
        assert _millicores(hold["cpu"]["recommended"]) <= 25, hold  # idle: the first bucket
        for shown in (burn["cpu"], hold["memory"]):
            assert (shown["source"], shown["window"], shown["samples"]) == (
                "metrics.k8s.io", "1h", runs.index(run) + 1), shown
    last = runs[-1].line("deployment", "burn")
    assert (last["action"], last["result"]) == ("report", "done")
    assert last["reason"].startswith("resourceRequests.recommend: container app: cpu 50m → ")
    record = shapes.kubectl("get", "configmap", "-l", "kubekeeper/usage-record=v1", "-o", "name")
    assert record.split() == ["configmap/kubekeeper-usage-0"]


def _kubelet_verdict(shapes: Shapes, workload: str, wanted: dict) -> tuple | None:
    """('applied',) once the kubelet reports the requests as running; ('refused', reason,
    message) when it keeps the resize pending; None while it works on it."""
    pod = shapes.pod(workload)
    conditions = {c["type"]: c for c in pod["status"].get("conditions") or ()}
    pending = conditions.get("PodResizePending", {})
    if pending.get("status") == "True":
        return "refused", pending.get("reason"), pending.get("message")
    if conditions.get("PodResizeInProgress", {}).get("status") == "True":
        return None
    running = (pod["status"]["containerStatuses"][0].get("resources") or {}).get("requests", {})
    same = all(parse_quantity(running.get(k, "0")) == parse_quantity(v)
               for k, v in wanted.items())
    return ("applied",) if same else None


def test_resize_changes_the_running_pods_requests_without_a_restart(
        shapes: Shapes, converged: Converged):
    before = {w: shapes.pod(w) for w in WORKLOADS}
    templates = {w: shapes.template(w)["spec"]["template"] for w in WORKLOADS}
    run = run_task(shapes.client, policy(shapes.namespace, "resize"), "requests")
    for workload in WORKLOADS:
        owner = run.line("deployment", workload)
        assert owner["action"] == "report" and "the pod template is left as it is" in owner[
            "reason"]
        name = before[workload]["metadata"]["name"]
        resized = run.line("pod", name)
        assert (resized["action"], resized["result"]) == ("patch", "done"), resized
        wanted = {k: v["recommended"] for k, v in _recommendation(run, workload).items()}
        verdict = wait_for(lambda w=workload, r=wanted: _kubelet_verdict(shapes, w, r),
                           timeout=60, what=f"the kubelet's verdict on {name}'s resize")
        assert verdict == ("applied",), verdict
        after = shapes.pod(workload)
        assert after["metadata"]["uid"] == before[workload]["metadata"]["uid"]
        [status] = after["status"]["containerStatuses"]
        [earlier] = before[workload]["status"]["containerStatuses"]
        assert (status["containerID"], status["restartCount"]) == (earlier["containerID"], 0)
        assert after["spec"]["containers"][0]["resources"]["limits"] == RESOURCES[workload][
            "limits"]
        assert shapes.template(workload)["spec"]["template"] == templates[workload]


def test_with_prometheus_the_evidence_is_its_answer_over_the_window(
        shapes: Shapes, prometheus_server: PrometheusServer):
    """The same shapes, from a real Prometheus scraping the kubelet's ``/metrics/cadvisor``
    every 5 s since before the pods started. Its CPU query steps on 5-minute marks
    (``rate(...[5m])[1h:5m]``), so it answers once a mark has passed with two scrapes before
    it: up to 5 minutes after the pods started. ``minHistory`` is 0s here: the history
    Prometheus reports is counted from those marks. What the run shows is what Prometheus
    answers to the same queries at the same ``now``, and Prometheus's count of ``burn``'s
    CPU is the kernel's count for that container."""
    rules = policy(shapes.namespace, "report", prometheus=prometheus_server.url,
                   min_history="0s")
    queries = prometheus_queries(rules.cluster.resourceRequests.recommend)

    def answered() -> tuple[Run, dict[str, dict]] | None:
        now = datetime.now(UTC)
        run = run_task(shapes.client, rules, "requests", now=now)
        burn, hold = (_recommendation(run, w) for w in WORKLOADS)
        if not (burn and "cpu" in burn and hold and "memory" in hold):
            return None
        return run, {name: _by_workload(query_prometheus(prometheus_server.url, promql,
                                                         now.timestamp()))
                     for name, promql in queries.items()}

    run, said = wait_for(answered, timeout=420, interval=15,
                         what="recommendations from Prometheus's answers for both workloads")
    burn, hold = (_recommendation(run, w) for w in WORKLOADS)
    assert {burn["cpu"]["source"], hold["memory"]["source"]} == {"prometheus"}
    assert burn["cpu"]["usage"] == f"{math.ceil(said['cpu']['burn'] * 1000)}m", (said, burn)
    assert 0 < _millicores(burn["cpu"]["usage"]) <= 250, burn  # a fifth of a core, at most
    assert hold["memory"]["usage"] == f"{math.ceil(said['memory']['hold'] / MI)}Mi", said
    assert 64 <= _mebibytes(hold["memory"]["usage"]) <= 72, hold
    assert burn["cpu"]["samples"] == int(said["samples"]["burn"]) >= 2, (said, burn)
    assert burn["memory"]["recommended"] == "16Mi"
    assert "list pods.metrics.k8s.io" not in run.api.counter.by_request  # no sampling
    assert not run.notes and run.summary["error"] is None
    _assert_counted_as_the_kernel_does(shapes, prometheus_server)


def _by_workload(body: dict) -> dict[str, float]:
    """A query's answer for container ``app``, by workload (its pods are named for it)."""
    return {series["metric"]["pod"].split("-")[0]: float(series["value"][1])
            for series in body["data"]["result"] if series["metric"]["container"] == "app"}


def _assert_counted_as_the_kernel_does(shapes: Shapes, server: PrometheusServer) -> None:
    """``burn``'s last scraped ``container_cpu_usage_seconds_total`` against its container
    cgroup's ``cpuacct.usage`` read after it: no more than the kernel counts, and short of
    it by less than a second (containerd counts whole seconds) plus what the 1-core limit
    allows since the sample was taken."""
    pod = shapes.pod("burn")
    selector = (f'container_cpu_usage_seconds_total{{namespace="{shapes.namespace}",'
                f'pod="{pod["metadata"]["name"]}",container="app"}}[30s]')
    [series] = query_prometheus(server.url, selector, time.time())["data"]["result"]
    taken, value = series["values"][-1]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    cgroup = Path("/sys/fs/cgroup/cpuacct/kubepods/burstable") / f"pod{pod['metadata']['uid']}"
    kernel, read = int((cgroup / container / "cpuacct.usage").read_text()) / 1e9, time.time()
    assert float(value) <= kernel < float(value) + 1 + (read - float(taken)) * 1.0, (
        value, taken, kernel, read)


def test_a_resize_past_the_nodes_capacity_is_refused_and_reported_as_it_was(
        shapes: Shapes, converged: Converged):
    """A CPU floor of 64 cores on a two-core node: the API server itself refuses the
    resize (1.37 checks it against the node's allocatable); the line says so, failed."""
    name = shapes.pod("hold")["metadata"]["name"]
    run = run_task(shapes.client, policy(shapes.namespace, "resize", "64"), "requests")
    line = run.line("pod", name)
    assert (line["action"], line["result"]) == ("patch", "failed"), line
    assert "node didn't have enough allocatable resources: cpu, requested: 64000" in line[
        "error"], line
    assert shapes.pod("hold")["spec"]["containers"][0]["resources"]["requests"]["cpu"] != "64"


def test_a_resize_the_kubelet_defers_is_reported_as_the_kubelet_says(
        shapes: Shapes, converged: Converged):
    """A CPU floor of 1990m on a two-core node. ``burn``'s limit (1 core) is in the way, so
    its pod is kept. ``hold``'s resize fits the node's allocatable (2000m), so the API
    server accepts it, but not beside ``burn``'s request, so the kubelet defers it. The next
    run reports the condition as the kubelet wrote it and sends no resize again. Then the
    pods are replaced, so that the node has room again."""
    pods = {w: shapes.pod(w)["metadata"]["name"] for w in WORKLOADS}
    greedy = policy(shapes.namespace, "resize", "1990m")
    asked = run_task(shapes.client, greedy, "requests")
    kept, resized = (asked.line("pod", pods[w]) for w in WORKLOADS)
    assert (kept["action"], kept["result"]) == ("patch", "skipped"), kept
    assert kept["error"] == ("limits.cpu 1 of container app is below the recommended request "
                             "1990m (limits are never lowered)"), kept
    assert (resized["action"], resized["result"]) == ("patch", "done"), resized
    verdict = wait_for(lambda: _kubelet_verdict(shapes, "hold", {"cpu": "1990m"}), timeout=60,
                       what=f"the kubelet's verdict on {pods['hold']}'s resize")
    assert verdict[:2] == ("refused", "Deferred"), verdict
    told = run_task(shapes.client, greedy, "requests").line("pod", pods["hold"])
    assert (told["action"], told["result"]) == ("report", "done")
    assert told["reason"] == ("resourceRequests.recommend: the kubelet has not applied the "
                              f"resize: PodResizePending Deferred: {verdict[2]} "
                              "(owner deployment/hold)")
    shapes.kubectl("delete", "pods", "-l", "app in (burn,hold)", "--wait=true")
    wait_for(lambda: all(_running_pod(shapes, w) for w in WORKLOADS), timeout=120,
             what="both workloads' pods replaced and running")


def _running_pod(shapes: Shapes, workload: str) -> bool:
    try:
        shapes.pod(workload)
    except ValueError:
        return False
    return True


def test_patch_writes_only_the_requests_once_per_workload(shapes: Shapes, converged: Converged):
    apps = AppsV1Api(shapes.client)
    before = {w: apps.read_namespaced_deployment(w, shapes.namespace) for w in WORKLOADS}
    run = run_task(shapes.client, policy(shapes.namespace, "patch"), "requests")
    for workload in WORKLOADS:
        line = run.line("deployment", workload)
        assert (line["action"], line["result"]) == ("patch", "done"), line
        wanted = {k: v["recommended"] for k, v in line["recommendations"]["app"].items()}
        after = apps.read_namespaced_deployment(workload, shapes.namespace)
        template = after.spec.template.to_dict()
        resources = template["spec"]["containers"][0]["resources"]
        assert resources["requests"] == wanted
        assert resources["limits"] == RESOURCES[workload]["limits"]
        template["spec"]["containers"][0]["resources"] = before[workload].spec.template.to_dict(
        )["spec"]["containers"][0]["resources"]
        assert template == before[workload].spec.template.to_dict()
        assert REQUESTS_PATCHED in after.metadata.annotations
    again = run_task(shapes.client, policy(shapes.namespace, "patch"), "requests")
    assert not [x for x in again.lines if x["kind"] == "deployment" and x["action"] == "patch"]
