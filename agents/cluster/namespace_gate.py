"""The namespace opt-out, read again while a run mutates.

A run lists namespaces once, at its start, and a long run may still be
deleting minutes later. Preconditions guard each object, but an admin who
annotates a namespace ``kubekeeper/ignore: "true"`` mid-run means "stop here
now". So before a mutation in a namespace, its opt-out is read again when the
last reading (the run's own list, at first) is older than ``max_age``
seconds: at most one GET per namespace per ``max_age`` while the run works in
it, never one per object, and none at all in a run shorter than ``max_age``.
The window left is ``max_age`` plus the mutations already in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.records import namespace
from agents.cluster.resources import RESOURCES

RECHECK_AFTER_S = 2.0


class NamespaceGate:
    """Answers "may kubekeeper still change objects in this namespace?" from fresh reads."""

    def __init__(self, port: ClusterPort, listed: Iterable[str], listed_at: float,
                 max_age: float = RECHECK_AFTER_S, clock: Callable[[], float] = time.monotonic):
        """``listed``: the namespaces in scope, as the run read them at ``listed_at``."""
        self._port, self._max_age, self._clock = port, max_age, clock
        self._read: dict[str, tuple[float, str | None]] = {n: (listed_at, None) for n in listed}
        self._lock = threading.Lock()

    def closed(self, name: str) -> str | None:
        """Why the namespace no longer takes changes, or None when it still does.

        A namespace that cannot be read (404: deleted; a lost server) is left to
        the mutation itself, whose own answer then tells the truth.
        """
        with self._lock:
            read_at, why = self._read.get(name, (None, None))
            fresh = read_at is not None and self._clock() - read_at < self._max_age
            if not fresh:
                why = self._why(name)
                self._read[name] = (self._clock(), why)
        return why

    def _why(self, name: str) -> str | None:
        try:
            found = namespace(self._port.get(RESOURCES["namespace"], "", name))
        except ApiError:
            return None
        if found.ignored:
            return f"namespace {name} opted out (kubekeeper/ignore) during the run"
        return None
