"""Durations, quantities, percentages and globs as admins write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agents import checks, units


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0), ("90s", 90), ("30m", 1800), ("36h", 129600), ("7d", 604800), ("2w", 1209600),
    ("1h30m", 5400),
])
def test_durations(text, seconds):
    assert units.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["7", 7, "7 days", "1.5h", "h", "", "-1d", "1d ", None, True])
def test_bad_durations_are_rejected_with_a_hint(text):
    with pytest.raises(ValueError, match=r"is not a duration \(write e.g. 7d, 36h, 90m\)"):
        units.parse_duration(text)


@pytest.mark.parametrize(("text", "value"), [
    ("100Mi", 100 * 2**20), ("1G", 10**9), ("500m", Decimal("0.5")), ("1e3", 1000),
    ("1.5Gi", int(1.5 * 2**30)), (1024, 1024), ("128k", 128000),
])
def test_quantities(text, value):
    assert units.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["10Q", "abc", "", "1..2Mi", True, 1.5])
def test_bad_quantities(text):
    with pytest.raises(ValueError, match="is not a quantity"):
        units.parse_quantity(text)


def test_sizes_round_up_and_reject_negatives():
    assert units.parse_size("1500m") == 2
    with pytest.raises(ValueError, match="negative"):
        units.parse_size("-1Mi")


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (85, 85.0), ("80%", 80.0), (99.5, 99.5)])
def test_percentages(value, expected):
    assert units.parse_percent(value) == expected


@pytest.mark.parametrize("value", [-1, 101, "lots", None, True])
def test_bad_percentages(value):
    with pytest.raises(ValueError, match="is not a percentage"):
        units.parse_percent(value)


def test_globs():
    assert units.check_glob("batch-[a-z]*") == "batch-[a-z]*"
    with pytest.raises(ValueError, match="never closed"):
        units.check_glob("batch-[a-z")
    with pytest.raises(ValueError, match="is not a glob"):
        units.check_glob("")


def test_formatting_round_trips():
    for text in ("0s", "90s", "30m", "36h", "7d", "1d12h"):
        parsed = units.parse_duration(text)
        assert units.parse_duration(units.format_duration(parsed)) == parsed
    assert units.format_duration(timedelta(hours=36)) == "1d12h"
    assert units.format_age(timedelta(days=9, hours=5)) == "9d"
    assert units.format_bytes(1536 * 2**20) == "1.5Gi"


@pytest.mark.parametrize(("expr", "weekday"), [
    ("0 3 * * 0", 6), ("0 3 * * 7", 6), ("0 3 * * sun", 6), ("0 3 * * 1", 0), ("0 3 * * 5-7", 4),
])
def test_cron_weekdays_count_from_sunday_as_crontab_does(expr, weekday):
    """APScheduler 3 alone would run ``* * * * 0`` on Mondays."""
    start = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    fire = checks.cron_trigger(expr, timezone=UTC).get_next_fire_time(None, start)
    assert fire.weekday() == weekday


def test_cron_weekday_lists_ranges_and_steps():
    start = datetime(2026, 11, 22, 12, tzinfo=UTC)  # a Sunday afternoon
    trigger = checks.cron_trigger("0 0 * * 1-5/2,0", timezone=UTC)
    fires, fire = [], None
    for _ in range(4):
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1) if fire else start)
        fires.append(fire.strftime("%a"))
    assert fires == ["Mon", "Wed", "Fri", "Sun"]
    with pytest.raises(ValueError, match="not a day of the week"):
        checks.cron_trigger("0 0 * * 8")
