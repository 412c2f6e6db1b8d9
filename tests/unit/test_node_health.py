"""The health verdict and the schedule arithmetic it relies on, with ``now`` passed in."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from agents.checks import Trigger
from agents.node import health
from agents.node.daemon import interval_of, trigger_for

START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_healthy_until_a_job_misses_twice_its_interval():
    h = health.Health(START)
    h.expect("cleanup", 30 * MIN)
    h.expect("logs", 60 * MIN)
    assert h.problem(START + 59 * MIN) is None
    assert "no run since start of cleanup" in h.problem(START + 61 * MIN)
    h.succeeded("cleanup", START + 50 * MIN)
    assert h.problem(START + 100 * MIN) is None
    assert "no successful run of cleanup" in h.problem(START + 111 * MIN)


def test_docker_unreachable_for_twice_the_shortest_interval_is_unhealthy():
    h = health.Health(START)
    h.expect("cleanup", 30 * MIN)
    h.expect("logs", 120 * MIN)
    h.succeeded("cleanup", START)
    h.succeeded("logs", START)
    h.unreachable(START + MIN)
    h.unreachable(START + 30 * MIN)  # the first failure's time is kept
    assert h.problem(START + 60 * MIN) is None
    h.succeeded("cleanup", START + 50 * MIN)  # a success clears it
    h.unreachable(START + 55 * MIN)
    assert h.problem(START + 100 * MIN) is None
    assert "Docker unreachable for 1h" in h.problem(START + 116 * MIN)


def test_the_probe_answers_200_then_503():
    h = health.Health(START)
    h.expect("cleanup", 30 * MIN)
    clock = [START]
    server = health.serve(0, h, clock=lambda: clock[0])
    url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b"ok\n"
        clock[0] = START + 61 * MIN
        try:
            urllib.request.urlopen(url, timeout=5)
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as err:
            assert err.code == 503 and b"cleanup" in err.read()
    finally:
        server.shutdown()
        server.server_close()


def test_interval_of_cron_is_its_longest_gap_and_every_is_itself():
    assert interval_of(Trigger(cron="*/30 * * * *"), START) == 30 * MIN
    assert interval_of(Trigger(cron="0 3,4 * * *"), START) == timedelta(hours=23)
    assert interval_of(Trigger(every=timedelta(minutes=5)), START) == 5 * MIN


def test_triggers_fire_on_the_policy_schedule():
    cron = trigger_for(Trigger(cron="15 * * * *"))
    assert cron.get_next_fire_time(None, START) == START + 15 * MIN
    every = trigger_for(Trigger(every=timedelta(minutes=10)), jitter=timedelta(0))
    first = every.get_next_fire_time(None, START)
    assert every.get_next_fire_time(first, first) == first + 10 * MIN
