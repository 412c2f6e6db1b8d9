"""The QPS limiter and the retry backoff, on a fake clock."""

from __future__ import annotations

import pytest

from agents.cluster.throttle import MAX_ATTEMPTS, TokenBucket, retry_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_start_no_faster_than_the_configured_rate():
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock, sleep=clock.sleep)
    for _ in range(41):
        bucket.take()
    assert clock.now - 100.0 == pytest.approx(40 / 20)
    assert max(clock.slept) == pytest.approx(1 / 20)


def test_an_idle_spell_does_not_allow_more_than_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 60
    waits = [bucket.take() for _ in range(5)]
    assert waits[:3] == [0, 0, 0] and waits[3] == pytest.approx(0.1)


def test_zero_means_unlimited():
    clock = FakeClock()
    bucket = TokenBucket(0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        bucket.take()
    assert clock.slept == []


def test_retry_after_wins_over_backoff():
    assert retry_delay(429, {"Retry-After": "3"}, 0) == 3.0
    assert retry_delay(503, {"retry-after": "1"}, 4) == 1.0


def test_backoff_doubles_then_gives_up():
    delays = [retry_delay(500, None, attempt) for attempt in range(MAX_ATTEMPTS)]
    assert delays[:3] == [0.25, 0.5, 1.0]
    assert delays[-1] is None and all(d is not None for d in delays[:-1])


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_client_errors_are_not_retried(status):
    assert retry_delay(status, {"Retry-After": "1"}, 0) is None


def test_an_http_date_retry_after_falls_back_to_backoff():
    assert retry_delay(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1) == 0.5
