"""SharedLook: every caller gets a fetch that started after it asked; callers share fetches."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agents.node.shared_look import SharedLook
from tests.polling import wait_for


class Counting:
    """A fetch that answers its own number and, while ``hold`` is clear, waits."""

    def __init__(self) -> None:
        self.started = 0
        self.hold = threading.Event()
        self.hold.set()
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.started += 1
            number = self.started
        self.hold.wait(10)
        return number


def test_calls_one_after_the_other_each_get_a_fetch_of_their_own():
    fetch = Counting()
    look = SharedLook(fetch)
    assert [look.get() for _ in range(3)] == [1, 2, 3]


def test_callers_arriving_during_a_fetch_share_the_next_one_not_the_one_under_way():
    fetch = Counting()
    look = SharedLook(fetch)
    fetch.hold.clear()
    with ThreadPoolExecutor(max_workers=6) as pool:
        first = pool.submit(look.get)
        wait_for(lambda: fetch.started == 1, "the first fetch to start", timeout=5,
                 interval=0.01)
        late = [pool.submit(look.get) for _ in range(5)]
        # All five waiting on the look (CPython's Condition keeps its waiters in _waiters):
        wait_for(lambda: len(look._changed._waiters) == 5, "five callers waiting",
                 timeout=5, interval=0.01)
        fetch.hold.set()
        answers = [f.result(timeout=10) for f in late]
    assert first.result() == 1
    assert answers == [2] * 5  # started after all five asked: one fetch for them all
    assert fetch.started == 2


def test_a_failed_fetch_fails_every_caller_it_served_and_the_next_call_fetches_again():
    calls = []

    def fetch() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("runtime down")
        return len(calls)

    look = SharedLook(fetch)
    with pytest.raises(ConnectionError, match="runtime down"):
        look.get()
    assert look.get() == 2
