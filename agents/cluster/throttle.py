"""Pacing of API requests: the client-side QPS limit and the retry backoff.

Both are plain objects with an injectable clock and sleep, so their arithmetic
is unit-tested without a server and without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

MAX_ATTEMPTS = 6
_BASE_DELAY_S = 0.25
_MAX_DELAY_S = 30.0
_RETRIED = frozenset({0, 429, 500, 502, 503, 504})


class TokenBucket:
    """Blocks callers so that requests start at no more than ``qps`` per second.

    Each call reserves the next free slot under the lock and sleeps outside it,
    so concurrent callers are spaced evenly instead of waking up together. A
    ``qps`` of 0 means no limit. ``burst`` is how many requests may start at
    once after an idle spell (1: never faster than the configured rate).
    """

    def __init__(self, qps: float, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self._qps, self._burst = qps, max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self._burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Wait for one request slot; returns the seconds waited."""
        if self._qps <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self._qps if self._tokens < 0 else 0.0
        if wait:
            self._sleep(wait)
        return wait


def retry_delay(status: int, headers: Mapping[str, str] | None, attempt: int) -> float | None:
    """Seconds to wait before retrying a failed request, or None to give up.

    Only throttling (429), server errors (5xx) and lost connections (status 0)
    are retried. The server's ``Retry-After`` wins over the exponential
    backoff, because API Priority and Fairness knows better when it has room.
    ``attempt`` counts from 0 for the first request.
    """
    if status not in _RETRIED or attempt + 1 >= MAX_ATTEMPTS:
        return None
    backoff = min(_MAX_DELAY_S, _BASE_DELAY_S * 2 ** attempt)
    advised = _retry_after(headers)
    return min(_MAX_DELAY_S, advised) if advised is not None else backoff


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None
