"""Why a cluster run stops starting work: SIGTERM, its deadline, or a lost API server.

One object carries the first reason, and every wait of the run (the QPS
throttle, a retry's backoff) waits on it, so a stop is never stuck behind a
sleep: SIGTERM with ``apiQPS: 0.001`` still ends in a summary at once.
"""

from __future__ import annotations

import threading


class Halt:
    """Set once with a reason; later reasons are ignored (the first cause is the story)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None
        self.unreachable = False
        """True when the reason is an API server that stopped answering."""
        self.failure = False
        """True when the run could not finish its work (a deadline, a lost server);
        False for a stop that was asked for (SIGTERM), which is a clean end."""

    def set(self, reason: str, *, failure: bool = True, unreachable: bool = False) -> None:
        with self._lock:
            if self.reason is None:
                self.reason, self.failure, self.unreachable = reason, failure, unreachable
                self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when the run was halted."""
        return self._event.wait(seconds)
