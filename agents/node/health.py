"""``/healthz`` for the DaemonSet's liveness probe, and ``/metrics`` beside it.

Healthy means every job has completed a run (reached Docker, planned, acted or
reported) within twice its schedule interval, counted from the daemon's start
until the first run, and Docker has not been unreachable for that long.
Failed actions do not make the agent unhealthy: a restart would not fix them,
and the report already shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loguru import logger
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from agents.units import format_age, format_duration


class Health:
    """What the daemon records and the probe reads; safe across threads."""

    def __init__(self, started: datetime):
        self._started = started
        self._lock = threading.Lock()
        self._intervals: dict[str, timedelta] = {}
        self._last_success: dict[str, datetime] = {}
        self._unreachable_since: datetime | None = None

    def expect(self, job: str, interval: timedelta) -> None:
        with self._lock:
            self._intervals[job] = interval

    def succeeded(self, job: str, at: datetime) -> None:
        with self._lock:
            self._last_success[job] = at
            self._unreachable_since = None

    def unreachable(self, at: datetime) -> None:
        with self._lock:
            self._unreachable_since = self._unreachable_since or at

    def problem(self, now: datetime) -> str | None:
        """Why the agent is unhealthy, or None."""
        with self._lock:
            if self._unreachable_since and self._intervals:
                limit = 2 * min(self._intervals.values())
                if now - self._unreachable_since > limit:
                    return (f"Docker unreachable for {format_age(now - self._unreachable_since)}"
                            f", more than {format_duration(limit)}")
            for job, interval in sorted(self._intervals.items()):
                since = self._last_success.get(job, self._started)
                if now - since > 2 * interval:
                    what = "successful run" if job in self._last_success else "run since start"
                    return (f"no {what} of {job} for {format_age(now - since)}, more than "
                            f"twice its interval of {format_duration(interval)}")
        return None


def serve(port: int, health: Health,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC),
          metrics: Callable[[], bytes] | None = None) -> ThreadingHTTPServer:
    """Start answering ``GET /healthz`` (and ``/metrics``, given ``metrics``) on ``port``
    in a background thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and metrics is not None:
                self._answer(200, metrics(), CONTENT_TYPE_PLAIN_0_0_4)
                return
            if path != "/healthz":
                self._answer(404, "not found\n")
                return
            problem = health.problem(clock())
            self._answer(503 if problem else 200, f"{problem or 'ok'}\n")

        def _answer(self, status: int, body: str | bytes,
                    content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            logger.bind(kind="http", name="healthz", id=self.client_address[0]).debug(
                "{}", format % args)

    server = ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
