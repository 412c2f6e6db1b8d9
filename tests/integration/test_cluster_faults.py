"""Faults on the real control plane: the API server lost mid-run, a run past its
deadline, SIGTERM during a throttle wait, and a namespace opted out mid-run.
Each run ends in bounded time with a complete report."""

from __future__ import annotations

import base64
import copy
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import psutil
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api

from agents.cli import main
from agents.cluster.api import KubeApi
from tests import report_lines
from tests.cluster_runs import old_job, policy_for, run_task
from tests.polling import wait_for
from tests.tcp_proxy import TcpProxy

DELETE = "completedJobs: {action: delete}"


def old_jobs(client: ApiClient, namespace: str, count: int) -> list[str]:
    names = [f"old-{i:02d}" for i in range(count)]
    for name in names:
        old_job(client, namespace, name)
    return names


def job_names(client: ApiClient, namespace: str) -> set[str]:
    return {j.metadata.name for j in BatchV1Api(client).list_namespaced_job(namespace).items
            if not j.metadata.deletion_timestamp}


class CutAfter(KubeApi):
    """The real port through a proxy that is cut just before the ``deletes + 1``-th delete."""

    def __init__(self, client: ApiClient, proxy: TcpProxy, deletes: int, **options):
        super().__init__(client, **options)
        self._proxy, self._left = proxy, deletes

    def delete(self, resource, namespace, name, preconditions, dry_run=False):
        if self._left == 0:
            self._proxy.cut()
        self._left -= 1
        return super().delete(resource, namespace, name, preconditions, dry_run)


def through(client: ApiClient, proxy: TcpProxy) -> ApiClient:
    configuration = copy.copy(client.configuration)
    configuration.host = f"https://127.0.0.1:{proxy.port}"
    configuration.retries = False
    return ApiClient(configuration)


def test_losing_the_api_server_halts_the_run_and_names_it(kube_api, namespace):
    names = old_jobs(kube_api, namespace, 12)
    server = urlparse(kube_api.configuration.host)
    proxy = TcpProxy((server.hostname, server.port))
    client = through(kube_api, proxy)
    api = CutAfter(client, proxy, deletes=3, unreachable_after=2)
    rules = f"{DELETE}\nconcurrency: 1"

    run = run_task(client, policy_for(namespace, rules), "jobs", api=api)

    assert {line["name"] for line in run.lines} == set(names)
    results = [line["result"] for line in run.lines]
    assert results.count("done") == 3
    skipped = [line for line in run.lines if line["result"] == "skipped"]
    assert len(skipped) >= 8
    assert all(line["error"].startswith(
        f"not sent: the API server {client.configuration.host} has not answered for")
        or line["error"].startswith("not started: the API server") for line in skipped)
    assert run.summary["error"].startswith(f"halted: the API server {client.configuration.host}")
    assert api.halt.unreachable and api.counter.total < 25
    assert len(job_names(kube_api, namespace)) == 9


def policy_file(tmp_path: Path, namespace: str, cluster: dict) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubekeeper/v1", "dryRun": False,
        "cluster": {"namespaces": {"include": [namespace]},
                    "recycleBin": {"namespace": namespace},
                    "completedJobs": {"action": "delete"}, **cluster}}))
    return path


def proxied_kubeconfig(control_plane, proxy: TcpProxy, tmp_path: Path) -> Path:
    """The admin kubeconfig, pointed at the proxy (the server's certificate names 127.0.0.1)."""
    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def cut_when(proxy: TcpProxy, gone: Callable[[], bool]) -> threading.Thread:
    """Cut the proxy as soon as ``gone()`` (polled by the test's own, direct client)."""
    def watch() -> None:
        wait_for(gone, timeout=120, interval=0.02, what="the run to delete its first Jobs")
        proxy.cut()
    thread = threading.Thread(target=watch, daemon=True, name="cut-the-proxy")
    thread.start()
    return thread


def test_the_api_server_lost_mid_run_ends_the_cli_run_with_exit_3_after_unreachable_after(
        kube_api, namespace, control_plane, tmp_path, capsys):
    """Through the CLI and the policy file, as a CronJob runs it: ``unreachableAfter: 2s``
    (the default is 2m) bounds the run, the summary names the endpoint, the exit code is 3."""
    names = old_jobs(kube_api, namespace, 12)
    server = urlparse(kube_api.configuration.host)
    proxy = TcpProxy((server.hostname, server.port))
    kubeconfig = proxied_kubeconfig(control_plane, proxy, tmp_path)
    path = policy_file(tmp_path, namespace, {"apiQPS": 5, "concurrency": 1,
                                             "unreachableAfter": "2s"})
    watcher = cut_when(proxy, lambda: len(job_names(kube_api, namespace)) <= 9)

    code = main(["cluster", "run", "jobs", "--policy", str(path), "--kubeconfig",
                 str(kubeconfig), "--log-format", "json"])

    watcher.join(timeout=5)
    lines = report_lines.parse(capsys.readouterr().out)
    summary, outcomes = lines[-1], report_lines.outcomes(lines)
    endpoint = f"https://127.0.0.1:{proxy.port}"
    assert code == 3
    assert summary["event"] == "run.summary"
    assert summary["error"].startswith(f"halted: the API server {endpoint} has not answered for")
    assert "(cluster.unreachableAfter: 2s)" in summary["error"]
    assert {line["name"] for line in outcomes} == set(names)
    done, failed, skipped = ({line["name"] for line in outcomes if line["result"] == result}
                             for result in ("done", "failed", "skipped"))
    assert len(done) >= 3 and skipped and len(failed) <= 1  # a DELETE in flight at the cut
    assert all(f"the API server {endpoint} has not answered" in line["error"]
               for line in outcomes if line["result"] != "done")
    left = job_names(kube_api, namespace)
    assert set(names) - done - failed <= left <= set(names) - done


def test_a_run_past_its_deadline_skips_the_rest_and_says_so(kube_api, namespace, control_plane,
                                                            tmp_path, capsys):
    names = old_jobs(kube_api, namespace, 10)
    path = policy_file(tmp_path, namespace, {"apiQPS": 4, "concurrency": 1})

    code = main(["cluster", "run", "jobs", "--policy", str(path), "--kubeconfig",
                 str(control_plane.kubeconfig), "--log-format", "json", "--deadline", "2s"])

    lines = report_lines.parse(capsys.readouterr().out)
    summary, outcomes = lines[-1], report_lines.outcomes(lines)
    assert code == 1
    assert summary["error"] == "halted: the run's deadline (2s) passed"
    assert {line["name"] for line in outcomes} == set(names)
    skipped = [line for line in outcomes if line["result"] == "skipped"]
    assert skipped and all("the run's deadline (2s) passed" in line["error"] for line in skipped)
    assert len(job_names(kube_api, namespace)) == len(skipped)


def binned(client: ApiClient, namespace: str) -> dict[str, dict]:
    """Every manifest kept in the recycle bin Secrets in ``namespace``, by its
    ``<secret>/<key>`` (the key names the object: ``job.<namespace>.<name>.<uid prefix>``)."""
    secrets = CoreV1Api(client).list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/component=recycle-bin").items
    return {f"{secret.metadata.name}/{key}": json.loads(base64.b64decode(text))
            for secret in secrets for key, text in (secret.data or {}).items()}


def lines_until_killed(process: subprocess.Popen, done: int, timeout: float) -> list[dict]:
    """The report lines read until ``done`` deletions were done, then SIGKILL; and the
    lines it had already flushed to the pipe."""
    lines: list[dict] = []
    enough = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            lines.append(json.loads(text))
            if sum(x["event"] == "action" and x["result"] == "done" for x in lines) >= done:
                enough.set()
        enough.set()
    reader = threading.Thread(target=read, daemon=True, name="report-reader")
    reader.start()
    enough.wait(timeout)
    process.kill()
    process.wait(30)
    reader.join(10)
    return lines


def test_sigkill_mid_run_leaves_an_intent_line_and_a_bin_entry_for_every_deleted_job(
        kube_api, namespace, control_plane, tmp_path):
    """A real ``kubekeeper cluster run jobs`` killed after 10 deletions: each Job gone has
    its intent line, with its manifest and where the complete one is, and that entry."""
    names = old_jobs(kube_api, namespace, 60)
    uids = {j.metadata.uid: j.metadata.name
            for j in BatchV1Api(kube_api).list_namespaced_job(namespace).items}
    path = policy_file(tmp_path, namespace, {"apiQPS": 20, "concurrency": 4})
    process = subprocess.Popen(
        [sys.executable, "-m", "agents", "cluster", "run", "jobs", "--policy", str(path),
         "--kubeconfig", str(control_plane.kubeconfig), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    lines = lines_until_killed(process, done=10, timeout=120)

    assert not report_lines.summaries(lines), "the run finished before it was killed"
    gone = {uid for uid, name in uids.items() if name not in job_names(kube_api, namespace)}
    assert len(gone) >= 10 and len(gone) < len(names)
    intents = {x["id"]: x for x in report_lines.intents(lines) if x["kind"] == "job"}
    assert gone <= set(intents), "a Job was deleted without its intent line"
    assert {intents[uid]["manifest"]["metadata"]["name"] for uid in gone} == {
        uids[uid] for uid in gone}
    kept = binned(kube_api, namespace)
    for uid in gone:
        where = intents[uid]["recycle_bin"].removeprefix(f"{namespace}/")
        assert where.endswith(f".{uids[uid]}.{uid[:8]}") and where in kept, (
            f"{uids[uid]} was deleted without its manifest in the bin")
        assert kept[where]["metadata"]["name"] == uids[uid]


def test_sigterm_during_a_throttle_wait_ends_the_run_with_a_summary(kube_api, namespace,
                                                                    control_plane, tmp_path):
    old_jobs(kube_api, namespace, 2)
    path = policy_file(tmp_path, namespace, {"apiQPS": 0.001})
    process = subprocess.Popen(
        [sys.executable, "-m", "agents", "cluster", "run", "jobs", "--policy", str(path),
         "--kubeconfig", str(control_plane.kubeconfig), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: connected(process.pid, urlparse(kube_api.configuration.host).port),
             timeout=120, what="the run to reach the API server")
    time.sleep(1)  # the namespace list went out; the next request waits 1000 s for a token
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("still running 20 s after SIGTERM") from None
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "run.summary", err
    assert "not sent: stopped (SIGTERM)" in summary["error"]
    assert job_names(kube_api, namespace) == {"old-00", "old-01"}


def connected(pid: int, port: int | None) -> bool:
    """True once the process holds a connection to the API server's port."""
    return any(c.raddr and c.raddr.port == port
               for c in psutil.Process(pid).net_connections(kind="tcp"))


class OptOutAfter(KubeApi):
    """The real port; the namespace is annotated kubekeeper/ignore after ``deletes`` deletes."""

    def __init__(self, client: ApiClient, namespace: str, deletes: int, qps: float):
        super().__init__(client, qps=qps)
        self._namespace, self._left = namespace, deletes
        self.opted_out_at: float | None = None

    def delete(self, resource, namespace, name, preconditions, dry_run=False):
        answer = super().delete(resource, namespace, name, preconditions, dry_run)
        self._left -= 1
        if self._left == 0:
            CoreV1Api(self.client).patch_namespace(self._namespace, {"metadata": {
                "annotations": {"kubekeeper/ignore": "true"}}})
            self.opted_out_at = time.monotonic()
        return answer


def test_a_namespace_opted_out_mid_run_is_left_alone_from_then_on(kube_api, namespace):
    names = old_jobs(kube_api, namespace, 30)
    api = OptOutAfter(kube_api, namespace, deletes=3, qps=5)
    rules = f"{DELETE}\nconcurrency: 1"

    run = run_task(kube_api, policy_for(namespace, rules), "jobs", api=api)

    assert {line["name"] for line in run.lines} == set(names)
    skipped = [line for line in run.lines if line["result"] == "skipped"]
    assert skipped and {line["error"] for line in skipped} == {
        f"namespace {namespace} opted out (kubekeeper/ignore) during the run"}
    done = [line for line in run.lines if line["result"] == "done"]
    assert len(done) <= 3 + 2 * 5 + 1  # the 2 s window at 5 requests/s, and one in flight
    assert job_names(kube_api, namespace) == {line["name"] for line in skipped}
