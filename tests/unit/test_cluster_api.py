"""KubeApi through the real kubernetes ApiClient, against a scripted loopback HTTP server.

The server answers from a script of (status, headers, body) so pagination,
retries, Retry-After and error messages are checked on the wire, fast and
without a control plane.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes.client import ApiClient, Configuration

from agents.cluster.api import ApiError, KubeApi
from agents.cluster.halt import Halt
from agents.cluster.resources import RESOURCES


class Scripted(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict, dict]] = []
        self.seen: list[tuple[str, str, dict | None, str]] = []


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.seen.append((self.command, self.path, body,
                                 self.headers.get("Content-Type", "")))
        status, headers, reply = self.server.script.pop(0)
        data = json.dumps(reply).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    httpd = Scripted()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


class Sleepless(Halt):
    """Records each wait instead of waiting; never halted unless told."""

    def __init__(self, slept: list[float]):
        super().__init__()
        self.slept = slept

    def wait(self, seconds: float) -> bool:
        self.slept.append(seconds)
        return self.is_set()


def api_for(server: Scripted, slept: list[float], **options) -> KubeApi:
    configuration = Configuration(host=f"http://127.0.0.1:{server.server_port}")
    configuration.retries = False
    return KubeApi(ApiClient(configuration), qps=0, halt=Sleepless(slept), **options)


def status(code: int, message: str) -> dict:
    return {"kind": "Status", "status": "Failure", "message": message, "code": code}


def test_lists_follow_continue_tokens_one_request_per_page(server):
    server.script = [
        (200, {}, {"metadata": {"continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}),
        (200, {}, {"metadata": {}, "items": [{"metadata": {"name": "b"}}]}),
    ]
    api = api_for(server, [])
    names = [o["metadata"]["name"] for o in api.list_all(RESOURCES["job"], "x=y", 1)]
    assert names == ["a", "b"]
    assert [path for _, path, _, _ in server.seen] == [
        "/apis/batch/v1/jobs?limit=1&fieldSelector=x%3Dy",
        "/apis/batch/v1/jobs?limit=1&continue=t1&fieldSelector=x%3Dy"]
    assert api.counter.by_request == {"list jobs": 2} and api.counter.total == 2


def test_the_next_page_is_requested_while_this_one_is_read(server):
    server.script = [
        (200, {}, {"metadata": {"continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}),
        (200, {}, {"metadata": {}, "items": [{"metadata": {"name": "b"}}]}),
    ]
    pages = api_for(server, []).list_all(RESOURCES["job"], None, 1)
    assert next(pages)["metadata"]["name"] == "a"
    deadline = time.monotonic() + 5
    while len(server.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server.seen) == 2
    assert [o["metadata"]["name"] for o in pages] == ["b"]


def expired(token: str | None) -> dict:
    """The 410 the API server sends for a compacted continue token (with its successor)."""
    reply = status(410, "The provided continue parameter is too old to display a "
                        "consistent list result.")
    return {**reply, "reason": "Expired", "metadata": {"continue": token} if token else {}}


def test_an_expired_continue_token_goes_on_with_the_one_the_server_sends(server):
    server.script = [
        (200, {}, {"metadata": {"continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}),
        (410, {}, expired("t1-newer")),
        (200, {}, {"metadata": {}, "items": [{"metadata": {"name": "b"}}]}),
    ]
    api = api_for(server, [])
    names = [o["metadata"]["name"] for o in api.list_all(RESOURCES["job"], None, 1)]
    assert names == ["a", "b"]
    assert [path for _, path, _, _ in server.seen][1:] == [
        "/apis/batch/v1/jobs?limit=1&continue=t1",
        "/apis/batch/v1/jobs?limit=1&continue=t1-newer"]


def test_an_expired_token_without_a_successor_fails_the_list(server):
    server.script = [
        (200, {}, {"metadata": {"continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}),
        (410, {}, expired(None)),
    ]
    with pytest.raises(ApiError) as caught:
        list(api_for(server, []).list_all(RESOURCES["job"], None, 1))
    assert caught.value.status == 410 and "too old" in caught.value.message


def test_throttling_is_retried_after_the_advised_delay_and_counted(server):
    server.script = [(429, {"Retry-After": "2"}, status(429, "slow down")),
                     (503, {}, status(503, "busy")),
                     (200, {}, {"metadata": {"name": "web"}})]
    slept: list[float] = []
    api = api_for(server, slept)
    api.patch(RESOURCES["deployment"], "apps", "web", {"spec": {"x": 1}}, "strategic", True)
    assert slept == [2.0, 0.5]
    assert api.counter.by_request == {"patch deployments": 3} and api.counter.retries == 2
    method, path, body, content_type = server.seen[-1]
    assert (method, path) == ("PATCH", "/apis/apps/v1/namespaces/apps/deployments/web?dryRun=All")
    assert body == {"spec": {"x": 1}}
    assert content_type == "application/strategic-merge-patch+json"


def test_forbidden_names_verb_resource_and_namespace(server):
    server.script = [(403, {}, status(403, 'jobs.batch "a" is forbidden: User "x" cannot'))]
    with pytest.raises(ApiError) as caught:
        api_for(server, []).delete(RESOURCES["job"], "apps", "a", {"uid": "u1"})
    assert caught.value.status == 403
    assert str(caught.value).startswith("forbidden: cannot delete jobs in namespace apps: ")
    _, _, body, _ = server.seen[0]
    assert body == {"propagationPolicy": "Background", "preconditions": {"uid": "u1"}}


def test_a_dry_run_delete_says_so_in_its_body_where_the_server_reads_it(server):
    server.script = [(200, {}, {"kind": "Status"})]
    api_for(server, []).delete(RESOURCES["job"], "apps", "a", {"uid": "u1"}, dry_run=True)
    _, path, body, _ = server.seen[0]
    assert body["dryRun"] == ["All"] and path == "/apis/batch/v1/namespaces/apps/jobs/a"


def test_a_server_that_never_answers_is_status_zero_after_retries(server):
    port = server.server_port
    server.shutdown()
    server.server_close()
    slept: list[float] = []
    api = KubeApi(ApiClient(_unretried(f"http://127.0.0.1:{port}")), halt=Sleepless(slept))
    with pytest.raises(ApiError) as caught:
        api.get(RESOURCES["pod"], "apps", "p")
    assert caught.value.status == 0 and len(slept) == api.counter.retries == 5


def _unretried(host: str) -> Configuration:
    configuration = Configuration(host=host)
    configuration.retries = False
    return configuration


def test_a_server_gone_for_longer_than_the_limit_halts_the_run(server):
    """The circuit breaker: the first request retries until the limit, the next is not sent."""
    port = server.server_port
    server.shutdown()
    server.server_close()
    clock = iter(range(0, 1000, 10))
    api = KubeApi(ApiClient(_unretried(f"http://127.0.0.1:{port}")), unreachable_after=25,
                  halt=Sleepless([]), clock=lambda: next(clock))
    with pytest.raises(ApiError) as first:
        api.delete(RESOURCES["job"], "apps", "a", {"uid": "u1"})
    assert first.value.sent and api.counter.total == 4  # down at 0, 10, 20, 30 s: halted
    assert api.halt.unreachable and f"127.0.0.1:{port} has not answered for 30s" in (
        api.halt.reason)
    with pytest.raises(ApiError) as second:
        api.delete(RESOURCES["job"], "apps", "b", {"uid": "u2"})
    assert not second.value.sent and api.counter.total == 4
    assert second.value.message.startswith("not sent: the API server")


def test_an_answer_resets_the_breaker(server):
    server.script = [(503, {}, status(503, "busy")), (200, {}, {}), (503, {}, status(503, "x")),
                     (200, {}, {})]
    clock = iter(range(0, 1000, 20))
    api = api_for(server, [], unreachable_after=30, clock=lambda: next(clock))
    api.get(RESOURCES["pod"], "apps", "p")
    api.get(RESOURCES["pod"], "apps", "p")
    assert not api.halt.is_set() and api.counter.total == 4


def test_a_halt_interrupts_the_throttle_at_once(server):
    halt = Halt()
    configuration = _unretried(f"http://127.0.0.1:{server.server_port}")
    server.script = [(200, {}, {})]
    api = KubeApi(ApiClient(configuration), qps=0.001, halt=halt)
    api.get(RESOURCES["pod"], "apps", "p")  # the first token is free; the next waits 1000 s
    threading.Timer(0.2, halt.set, ("stopped (SIGTERM)",)).start()
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        api.get(RESOURCES["pod"], "apps", "p")
    assert time.monotonic() - started < 5
    assert not caught.value.sent and caught.value.message == "not sent: stopped (SIGTERM)"


def test_a_halt_during_a_retrys_backoff_says_what_the_last_attempt_got(server):
    server.script = [(503, {"Retry-After": "30"}, status(503, "busy"))]
    halt = Halt()
    api = KubeApi(ApiClient(_unretried(f"http://127.0.0.1:{server.server_port}")), halt=halt)
    threading.Timer(0.2, halt.set, ("stopped (SIGTERM)",)).start()
    with pytest.raises(ApiError) as caught:
        api.delete(RESOURCES["job"], "apps", "a", {"uid": "u1"})
    assert caught.value.sent and api.counter.total == 1
    assert caught.value.message == "not retried: stopped (SIGTERM); attempt 1 got 503 busy"
