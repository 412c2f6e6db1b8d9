"""Usage against the real control plane: no metrics API, the ConfigMap record, the patches.

This control plane has no metrics-server (that needs the real node), so the
metrics API answers 404 here: the "no source" path is the real one. Where a
test needs measured usage, ``observe`` is replaced by a stand-in returning a
known record: everything after it (planning, the API server's verdict on the
patch, what ends up in the object) is real.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes.client import AppsV1Api, CoreV1Api

from agents.cluster import tasks, usage, usage_store
from agents.cluster.api import ApiError, KubeApi
from agents.cluster.recommend import Measured
from agents.cluster.records import REQUESTS_PATCHED
from agents.cluster.resources import RESOURCES
from agents.cluster.usage import ContainerUsage
from agents.cluster.usage_observe import Observation
from tests.cluster_runs import container, policy_for, run_task
from tests.integration.test_cluster_requests import deployment

MI = 2**20


def usage_policy(namespace: str, requests: str = ""):
    return policy_for(namespace, f"resourceRequests: {{usage: {{namespace: {namespace}}}"
                                 f"{', ' + requests if requests else ''}}}")


def configmaps(kube_api, namespace: str) -> list:
    return CoreV1Api(kube_api).list_namespaced_config_map(
        namespace, label_selector=usage_store.SELECTOR).items


def test_without_a_metrics_api_the_first_line_says_so_and_the_run_is_as_before(
        kube_api, namespace):
    deployment(kube_api, namespace, "web", container("app", {"cpu": "10m"}), replicas=0)
    run = run_task(kube_api, usage_policy(namespace), "requests")
    [note] = run.notes
    assert run.first == note
    assert (note["rule"], note["source"]) == ("resourceRequests.usage", "metrics.k8s.io")
    assert note["message"].startswith(
        "no usage source: the metrics API (metrics.k8s.io) is not served (404)")
    [web] = run.lines
    assert web["reason"] == "resourceRequests.require: container app lacks requests.memory"
    assert run.summary["error"] is None
    assert run.api.counter.by_request["list pods.metrics.k8s.io"] == 1
    assert configmaps(kube_api, namespace) == []


def entry(cores: float, memory_mi: float, now: int, hours: int = 48) -> ContainerUsage:
    record = ContainerUsage.started(now - hours * 3600)
    for when in range(now - hours * 3600, now + 1, 600):
        record = record.add(cores, memory_mi * MI, when, 86400, 8 * 86400)
    return record


def test_the_record_is_sharded_paged_and_never_overwrites_a_newer_shard(
        kube_api, namespace, monkeypatch):
    monkeypatch.setattr(usage_store, "SHARD_BYTES", 4000)
    now = int(datetime.now(UTC).timestamp())
    entries = {(namespace, "deployment", f"w{i}", "app"): entry(0.2, 64, now, 2)
               for i in range(100)}
    api = KubeApi(kube_api)
    loaded = usage_store.load(api, namespace, 1)
    assert usage_store.save(api, namespace, entries, loaded) == []
    stored = configmaps(kube_api, namespace)
    assert len(stored) >= 2 and len(stored) & (len(stored) - 1) == 0  # a power of two
    assert all(len(cm.data[usage_store.DATA_KEY]) <= 4000 for cm in stored)
    assert {cm.metadata.annotations[usage_store.SHARDS] for cm in stored} == {str(len(stored))}

    api = KubeApi(kube_api)
    again = usage_store.load(api, namespace, 1)
    assert usage.dumps(again.entries) == usage.dumps(entries)
    assert api.counter.by_request["list configmaps"] >= len(stored)  # one shard per page
    newer = {k: e.add(0.3, 70 * MI, now + 600, 86400, 8 * 86400) for k, e in entries.items()}
    assert usage_store.save(api, namespace, newer, again) == []  # another run, say
    stale = usage_store.save(api, namespace, again.entries, again)
    assert len(stale) == len(stored) and all("changed since it was read" in s for s in stale)


def stand_in(monkeypatch, entries: dict) -> None:
    """The metrics source, until the real node has a metrics-server: a known record."""
    monkeypatch.setattr(tasks.usage_observe, "observe", lambda *args, **kwargs: Observation(
        Measured("metrics.k8s.io", entries)))


def test_patch_writes_only_the_recommended_requests_once_per_interval(
        kube_api, namespace, monkeypatch):
    apps = AppsV1Api(kube_api)
    sized = {"cpu": "100m", "memory": "512Mi"}
    deployment(kube_api, namespace, "web", container("app", sized), replicas=0)
    limited = {**container("app", sized), "resources": {"requests": sized,
                                                       "limits": {"cpu": "200m"}}}
    deployment(kube_api, namespace, "capped", limited, replicas=0)
    before = {d: apps.read_namespaced_deployment(d, namespace).spec.template.to_dict()
              for d in ("web", "capped")}
    now = int(datetime.now(UTC).timestamp())
    stand_in(monkeypatch, {(namespace, "deployment", d, "app"): entry(0.2, 300, now)
                           for d in ("web", "capped")})

    run = run_task(kube_api, usage_policy(namespace, "action: patch"), "requests")

    web = run.line("deployment", "web")
    assert (web["action"], web["result"], web["reason"].split(":")[0]) == (
        "patch", "done", "resourceRequests.recommend")
    assert web["recommendations"]["app"]["cpu"]["samples"] == 289
    after = apps.read_namespaced_deployment("web", namespace)
    template = after.spec.template.to_dict()
    assert template["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "249m", "memory": "345Mi"}, "limits": None, "claims": None}
    template["spec"]["containers"][0]["resources"] = before["web"]["spec"]["containers"][0][
        "resources"]
    assert template == before["web"]
    assert REQUESTS_PATCHED in after.metadata.annotations
    capped = run.line("deployment", "capped")
    assert (capped["action"], capped["result"]) == ("report", "done")
    assert "limits.cpu 200m of container app is below the recommended request 249m" in capped[
        "reason"]
    assert apps.read_namespaced_deployment("capped", namespace).spec.template.to_dict() == \
        before["capped"]

    stand_in(monkeypatch, {(namespace, "deployment", "web", "app"): entry(0.5, 300, now)})
    held = run_task(kube_api, usage_policy(namespace, "action: patch"), "requests")
    line = held.line("deployment", "web")
    assert (line["action"], line["result"]) == ("report", "done")
    assert "not patched: requests last patched" in line["reason"]


def test_the_resize_request_reaches_the_pods_resize_subresource(kube_api, namespace):
    """No kubelet here, so the pod is never running: this proves the request path (URL,
    patch type, body) against the real API server; the resize itself waits for the node."""
    core = CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "solo"}, "spec": {
        "containers": [container("app", {"cpu": "100m", "memory": "64Mi"})]}})
    api = KubeApi(kube_api)
    body = {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "150m"}}}]}}
    try:
        api.patch(RESOURCES["pod/resize"], namespace, "solo", body, "strategic")
    except ApiError as err:
        pytest.fail(f"the API server refused the resize: {err}")
    pod = core.read_namespaced_pod("solo", namespace)
    assert pod.spec.containers[0].resources.requests == {"cpu": "150m", "memory": "64Mi"}
    assert api.counter.by_request == {"patch pods/resize": 1}
