"""Waiting for controllers and daemons in integration tests, without fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    Fails with `what` and the last value seen, so a test that times out says
    what it was waiting for and how far things got.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}"
            )
        time.sleep(interval)
