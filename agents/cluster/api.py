"""The port to the Kubernetes API: the few calls the cluster tasks make.

``KubeApi`` is the one real implementation. It sends raw JSON through the
client's ``ApiClient`` (no model objects: a page of 500 Jobs is parsed once
with ``json.loads`` and reduced to compact records by the inventory), counts
every HTTP request it sends, paces them with the ``cluster.apiQPS`` token
bucket and retries 429, 5xx and lost connections with backoff that honours
``Retry-After``. A create is retried only when it is known not to have
happened (429, or no connection made), or when it names its object: then a
409 on the retry is read back, and an object that holds what was sent is the
create done. Any other failure becomes an ``ApiError`` naming the verb,
the resource and the namespace, which is what an admin needs to fix RBAC.

Every wait (throttle, backoff) is a wait on the run's ``Halt``, and a server
that has not answered for ``unreachable_after`` seconds halts the run (a
circuit breaker): the remaining requests are not sent, so losing the API
server costs minutes, not a retry ladder per remaining object.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from loguru import logger

from agents.cluster.halt import Halt
from agents.cluster.resources import Resource
from agents.cluster.throttle import TokenBucket, retry_delay

_TIMEOUT = (10, 120)
_MAX_EXPIRED = 3
_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
_UNAVAILABLE = frozenset({0, 500, 502, 503, 504})
"""Answers that mean the server is not serving (a 4xx is an answer)."""
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class ApiError(Exception):
    """A request that failed for good; ``status`` 0 means no HTTP answer at all."""

    def __init__(self, status: int, message: str, verb: str, resource: Resource,
                 namespace: str | None, reply: Mapping[str, Any] | None = None,
                 retried: bool = False, sent: bool = True):
        self.status, self.message, self.verb = status, message, verb
        self.resource, self.namespace = resource, namespace
        self.reply = reply or {}
        """The API server's Status object, when it sent one."""
        self.retried = retried
        """True when this answer came to a retry: an earlier attempt may have happened."""
        self.sent = sent
        """False when the run halted before this request was ever sent."""
        where = f"in namespace {namespace}" if namespace else "cluster-wide"
        what = "forbidden: cannot" if status == 403 else f"{status or 'no answer'}: could not"
        super().__init__(f"{what} {verb} {resource.label} {where}: {message}")


class ClusterPort(Protocol):
    """What the inventory and the executor need from the API server."""

    @property
    def server(self) -> str: ...

    @property
    def halt(self) -> Halt:
        """The run's stop signal, which the port also sets when the server is lost."""
        ...

    def list_all(self, resource: Resource, field_selector: str | None = None,
                 page_size: int = 500, namespace: str | None = None,
                 label_selector: str | None = None) -> Iterator[dict]: ...

    def get(self, resource: Resource, namespace: str, name: str) -> dict: ...

    def create(self, resource: Resource, namespace: str, body: dict,
               dry_run: bool = False) -> dict: ...

    def patch(self, resource: Resource, namespace: str, name: str, body: dict,
              patch_type: str = "merge", dry_run: bool = False) -> dict: ...

    def delete(self, resource: Resource, namespace: str, name: str,
               preconditions: Mapping[str, str], dry_run: bool = False) -> dict: ...


class RequestCounter:
    """Every HTTP request sent, keyed ``"<verb> <resource>"`` (``list jobs``,
    ``delete jobs``, ``create events``); thread-safe.

    A list page, a dry-run and a retry are each one request. ``retries`` says
    how many of the counted requests were retries. Benchmarks read ``total``
    and ``by_request``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.retries = 0

    def add(self, request: str, retry: bool) -> None:
        with self._lock:
            self._counts[request] += 1
            self.retries += retry

    @property
    def by_request(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class KubeApi:
    """``ClusterPort`` over ``kubernetes.client.ApiClient``, paced and counted."""

    def __init__(self, client: ApiClient, qps: float = 0, unreachable_after: float = 120.0,
                 halt: Halt | None = None, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.counter = RequestCounter()
        self.halt = halt or Halt()
        self._bucket = TokenBucket(qps, sleep=self.halt.wait)
        self._unreachable_after, self._clock = unreachable_after, clock
        self._down_since: float | None = None
        self._down_lock = threading.Lock()

    @property
    def server(self) -> str:
        return self.client.configuration.host

    def list_all(self, resource: Resource, field_selector: str | None = None,
                 page_size: int = 500, namespace: str | None = None,
                 label_selector: str | None = None) -> Iterator[dict]:
        """Every object of the resource in the cluster (or ``namespace``), at most two
        pages in memory.

        The next page is requested as soon as a page arrives, so the server builds
        it while the caller works through this one.

        When a continue token has expired (410: etcd compacted the revision the
        list started at), the list goes on from the token the server sends with
        the 410: the rest comes from a newer snapshot, every object still once.
        That is safe here, since each mutation carries the resourceVersion it was
        planned on. Restarting instead could never finish on a big, busy cluster.
        """
        def fetch(token: str | None) -> Future[dict]:
            query = [("limit", page_size)] + ([("continue", token)] if token else [])
            if field_selector:
                query.append(("fieldSelector", field_selector))
            if label_selector:
                query.append(("labelSelector", label_selector))
            return fetcher.submit(self._send, "GET", resource, namespace,
                                  resource.path(namespace), query, verb="list")

        token, expired = None, 0
        with ThreadPoolExecutor(1, thread_name_prefix=f"list-{resource.plural}") as fetcher:
            pending = fetch(token)
            while True:
                try:
                    page = pending.result()
                except ApiError as err:
                    token, expired = _fresh_continue(err, token, expired), expired + 1
                    pending = fetch(token)
                    continue
                token = (page.get("metadata") or {}).get("continue")
                if token:
                    pending = fetch(token)
                yield from page.get("items") or ()
                if not token:
                    return

    def get(self, resource: Resource, namespace: str, name: str) -> dict:
        return self._send("GET", resource, namespace, resource.path(namespace, name))

    def create(self, resource: Resource, namespace: str, body: dict,
               dry_run: bool = False) -> dict:
        """Create once. A ``generateName`` create (an Event) is never retried after an
        answer was lost, since each retry would make another object."""
        name = (body.get("metadata") or {}).get("name")
        try:
            return self._send("POST", resource, namespace, resource.path(namespace),
                              _dry(dry_run), body, replayable=bool(name))
        except ApiError as err:
            if err.status != 409 or not err.retried or not name:
                raise
            existing = self.get(resource, namespace, name)
            if not holds(existing, {k: v for k, v in body.items() if k != "metadata"}
                         | {"metadata": {"labels": body["metadata"].get("labels") or {}}}):
                raise
            logger.bind(kind=resource.kind, name=name, id="").info(
                "create {}: an earlier attempt took effect; read back, it holds what was sent",
                name)
            return existing

    def patch(self, resource: Resource, namespace: str, name: str, body: dict,
              patch_type: str = "merge", dry_run: bool = False) -> dict:
        return self._send("PATCH", resource, namespace, resource.path(namespace, name),
                          _dry(dry_run), body, _CONTENT_TYPES[patch_type])

    def delete(self, resource: Resource, namespace: str, name: str,
               preconditions: Mapping[str, str], dry_run: bool = False) -> dict:
        """Delete in the background (dependents go too), only if uid/resourceVersion match.

        ``dryRun`` goes into the DeleteOptions body: the API server reads a
        DELETE's options from the body when there is one and ignores the query.
        """
        body = {"propagationPolicy": "Background", "preconditions": dict(preconditions),
                **({"dryRun": ["All"]} if dry_run else {})}
        return self._send("DELETE", resource, namespace, resource.path(namespace, name),
                          None, body)

    def _send(self, method: str, resource: Resource, namespace: str | None, path: str,
              query: list | None = None, body: Any = None, content_type: str | None = None,
              verb: str | None = None, replayable: bool = True) -> dict:
        """One request with its retries. Without ``replayable`` a request whose answer
        was lost (it may have happened) is not sent again."""
        verb = verb or _VERBS[method]
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        attempt, last = 0, ""
        while True:
            self._bucket.take()
            if self.halt.is_set():
                said = (f"not sent: {self.halt.reason}" if attempt == 0 else
                        f"not retried: {self.halt.reason}; attempt {attempt} got {last}")
                raise ApiError(0, said, verb, resource, namespace, retried=attempt > 0,
                               sent=attempt > 0)
            self.counter.add(f"{verb} {resource.label}", retry=attempt > 0)
            try:
                answer = self._once(method, path, query, headers, body)
                self._answered(True)
                return answer
            except ApiException as exc:
                status, answered, reply = exc.status, exc.headers, _status(exc)
                message = reply.get("message") or str(exc.reason or exc.body or "").strip()
                unsent = status == 429
            except urllib3.exceptions.HTTPError as exc:
                status, message, answered, reply = 0, f"{type(exc).__name__}: {exc}", None, {}
                unsent = _never_sent(exc)
            self._answered(status not in _UNAVAILABLE)
            delay = retry_delay(status, answered, attempt)
            if delay is None or not (replayable or unsent) or self.halt.is_set():
                raise ApiError(status, message, verb, resource, namespace, reply,
                               retried=attempt > 0)
            last = f"{status} {message}" if status else f"no answer ({message})"
            logger.bind(kind=resource.kind, name=path, id="").warning(
                "{} {} answered {}; retry {} in {:.2f}s", verb, path, status or message,
                attempt + 1, delay)
            self.halt.wait(delay)
            attempt += 1

    def _answered(self, healthy: bool) -> None:
        """Track how long the server has been down; past the limit, halt the run."""
        with self._down_lock:
            if healthy:
                self._down_since = None
                return
            now = self._clock()
            self._down_since = self._down_since if self._down_since is not None else now
            down_for = now - self._down_since
        if down_for >= self._unreachable_after:
            self.halt.set(f"the API server {self.server} has not answered for "
                          f"{down_for:.0f}s (cluster.unreachableAfter: "
                          f"{self._unreachable_after:.0f}s)", unreachable=True)

    def _once(self, method: str, path: str, query: list | None, headers: dict,
              body: Any) -> dict:
        return call_json(self.client, method, path, query, headers, body)


def call_json(client: ApiClient, method: str, path: str, query: list | None, headers: dict,
              body: Any) -> dict:
    """One HTTP exchange, raw JSON in and out: no model objects are built for the answer.

    Raises ``ApiException`` for an error status and urllib3 errors for a lost
    connection; retrying is the caller's decision.
    """
    response = client.call_api(
        path, method, query_params=query or [], header_params=dict(headers), body=body,
        auth_settings=["BearerToken"], _preload_content=False,
        _return_http_data_only=True, _request_timeout=_TIMEOUT)
    try:
        data = response.data
    finally:
        response.release_conn()
    return json.loads(data) if data else {}


def holds(obj: Any, wanted: Any) -> bool:
    """True when ``obj`` has every field of ``wanted`` with the same value (the server
    may have added defaults of its own)."""
    if isinstance(wanted, dict):
        return isinstance(obj, dict) and all(holds(obj.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(obj, list) and len(obj) == len(wanted)
                and all(holds(o, w) for o, w in zip(obj, wanted, strict=True)))
    return obj == wanted


def _never_sent(exc: urllib3.exceptions.HTTPError) -> bool:
    """True when the connection was never made, so the request cannot have happened."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    return isinstance(reason, (urllib3.exceptions.NewConnectionError,
                               urllib3.exceptions.ConnectTimeoutError))


def _dry(dry_run: bool) -> list[tuple[str, str]]:
    return [("dryRun", "All")] if dry_run else []


def _status(exc: ApiException) -> dict:
    """The Status object the API server sent with an error, or {}."""
    try:
        reply = json.loads(exc.body)
    except (TypeError, ValueError):
        return {}
    return reply if isinstance(reply, dict) else {}


def _fresh_continue(err: ApiError, token: str | None, expired: int) -> str:
    """The token to go on with after an expired one, or the error when there is none."""
    fresh = (err.reply.get("metadata") or {}).get("continue")
    if err.status != 410 or not token or not fresh or expired >= _MAX_EXPIRED:
        raise err
    logger.bind(kind=err.resource.kind, name="", id="").warning(
        "list {}: continue token expired (410); going on from a newer snapshot",
        err.resource.plural)
    return fresh
