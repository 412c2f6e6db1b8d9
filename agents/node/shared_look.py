"""One look at the runtime shared by the removals that ask for it at the same time.

Before each image removal the CRI port lists the runtime's containers, so that
an image put in use since planning is kept.  With many removals in flight (as
containerd wants: its removals share one garbage collection when they overlap)
that is one ``ListContainers`` per image, most of them answering the same
question a few milliseconds apart.  ``SharedLook`` keeps the guarantee and
drops the repeats: every caller gets the answer of a fetch that *started after
it asked*, so its answer is as fresh as a fetch of its own would be, but the
callers that arrive while a fetch is under way wait for the next one, which
then serves them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedLook(Generic[T]):
    """``get()`` is ``fetch()`` started no earlier than the call, shared among the callers."""

    def __init__(self, fetch: Callable[[], T]):
        self._fetch = fetch
        self._changed = threading.Condition()
        self._started = 0
        """Fetches started so far; the n-th started after every call that saw n - 1."""
        self._finished = 0
        """The number of the last fetch that finished (its answer is ``_answer``)."""
        self._running = False
        self._answer: tuple[T | None, BaseException | None] = (None, None)

    def get(self) -> T:
        """The answer of the first fetch to start after this call (or a later one).

        A failed fetch fails every caller it served with the same exception.
        """
        with self._changed:
            wanted = self._started + 1
            while self._finished < wanted and self._running:
                self._changed.wait()
            if self._finished >= wanted:
                return _unpacked(self._answer)
            self._running = True
            self._started += 1
            number = self._started
        answer = _attempt(self._fetch)
        with self._changed:
            self._running = False
            self._finished, self._answer = number, answer
            self._changed.notify_all()
        return _unpacked(answer)


def _attempt(fetch: Callable[[], T]) -> tuple[T | None, BaseException | None]:
    try:
        return fetch(), None
    except Exception as exc:  # handed to every caller this fetch serves
        return None, exc


def _unpacked(answer: tuple[T | None, BaseException | None]) -> T:
    value, error = answer
    if error is not None:
        raise error
    return value  # type: ignore[return-value]
