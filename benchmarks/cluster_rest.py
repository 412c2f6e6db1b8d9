"""Raw JSON calls to the API server for the benchmark's own work: seeding and the baseline.

Unlike ``agents.cluster.api.KubeApi`` nothing here is paced or counted: seeding
is not measured, and the baseline is meant to be the plainest client on the
same transport (``agents.cluster.api.call_json``: the kubernetes package's
``ApiClient`` over urllib3, raw JSON in and out; 429/5xx retried), so the
comparison measures kubekeeper's own overhead and nothing else.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kubernetes.config
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException

from agents.cluster.api import call_json

_RETRIED = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 8
T = TypeVar("T")


class Rest:
    """One connection pool to the API server; thread-safe like the ``ApiClient`` under it."""

    def __init__(self, kubeconfig: str, context: str | None = None, pool: int = 16):
        configuration = Configuration()
        kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                           client_configuration=configuration)
        configuration.retries = False
        configuration.connection_pool_maxsize = pool
        self._client = ApiClient(configuration)

    def call(self, method: str, path: str, body: Any = None,
             query: list[tuple[str, Any]] | None = None) -> dict:
        """The decoded answer; PATCH bodies are JSON merge patches. Raises ``ApiException``
        for an answer that is not retried (or after the last retry)."""
        headers = {"Accept": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        attempt = 0
        while True:
            try:
                return self._once(method, path, body, query or [], headers)
            except ApiException as exc:
                if exc.status not in _RETRIED or attempt + 1 >= _ATTEMPTS:
                    raise
            except urllib3.exceptions.HTTPError:
                if attempt + 1 >= _ATTEMPTS:
                    raise
            time.sleep(0.1 * 2 ** attempt)
            attempt += 1

    def items(self, path: str, field_selector: str | None = None,
              label_selector: str | None = None, limit: int = 500,
              pages: Counter[str] | None = None) -> Iterator[dict]:
        """Every object of a collection, page by page (counted in ``pages["pages"]``)."""
        token = None
        while True:
            query: list[tuple[str, Any]] = [("limit", limit)]
            query += [("continue", token)] if token else []
            query += [("fieldSelector", field_selector)] if field_selector else []
            query += [("labelSelector", label_selector)] if label_selector else []
            page = self.call("GET", path, query=query)
            if pages is not None:
                pages["pages"] += 1
            yield from page.get("items") or ()
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def count(self, path: str, field_selector: str | None = None) -> int:
        """How many objects a collection holds: one request when the server says
        ``remainingItemCount`` (no selector), else a full paginated walk."""
        if field_selector is None:
            page = self.call("GET", path, query=[("limit", 1)])
            meta = page.get("metadata") or {}
            if "remainingItemCount" in meta or not meta.get("continue"):
                return len(page.get("items") or ()) + int(meta.get("remainingItemCount", 0))
        return sum(1 for _ in self.items(path, field_selector))

    def close(self) -> None:
        self._client.close()

    def _once(self, method: str, path: str, body: Any, query: list, headers: dict) -> dict:
        return call_json(self._client, method, path, query, headers, body)


def in_parallel(work: Callable[[T], Any], items: Iterable[T], workers: int) -> int:
    """Run ``work`` on every item on ``workers`` threads; the first error propagates.
    Returns how many items were done."""
    done = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="bench") as pool:
        for _ in pool.map(work, items):
            done += 1
    return done
