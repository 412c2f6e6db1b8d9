"""The usage record and the recommendation: arithmetic, bounds, serialisation (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cluster import usage
from agents.cluster.recommend import Evidence, differs, evidence_of, recommend
from agents.cluster.usage import ContainerUsage, Histogram, bucket_end, bucket_of
from agents.policy import Recommend
from agents.units import parse_quantity

HOUR, DAY = 3600, 86400
HALF_LIFE, WINDOW = DAY, 8 * DAY
T0 = 1_780_000_000
RULES = Recommend()
KEY = ("apps", "deployment", "web", "app")


def history(samples: list[tuple[float, float]], every: int = 600, start: int = T0
            ) -> ContainerUsage:
    record = ContainerUsage.started(start)
    for i, (cores, memory) in enumerate(samples):
        record = record.add(cores, memory, start + i * every, HALF_LIFE, WINDOW)
    return record


def test_a_bucket_holds_its_value_and_ends_at_most_five_percent_and_10m_above_it():
    for cores in (0.0, 0.004, 0.2, 1.0, 3.7, 999.0):
        index = bucket_of(cores)
        assert cores <= bucket_end(index) <= cores * 1.05 + 0.01 + 1e-12
        assert index == 0 or bucket_end(index - 1) <= cores


def test_a_steady_200m_container_gets_about_230m_and_its_peak_plus_the_margin():
    record = history([(0.2, 64 * 2**20)] * 200)
    wanted = recommend(evidence_of(record, RULES, T0 + 200 * 600, "metrics.k8s.io"),
                       replace(RULES, minMemory="10Mi"))
    assert 230 <= wanted.millicores <= 0.2 * 1.05 * 1.15 * 1000 + 12
    assert wanted.quantities()["memory"] == "74Mi"
    assert wanted.evidence.samples == 200


def test_the_percentile_follows_recent_usage_as_old_samples_decay():
    old = history([(1.0, 1e8)] * 144)
    later = old
    for i in range(144):
        later = later.add(0.1, 1e8, T0 + 3 * DAY + i * 600, HALF_LIFE, WINDOW)
    assert old.cpu.percentile(0.9) > 0.95
    assert later.cpu.percentile(0.85) < 0.12


def test_no_recommendation_before_min_history_and_the_line_says_how_much_there_is():
    record = history([(0.2, 1e8)] * 19)
    evidence = evidence_of(record, RULES, T0 + 3 * HOUR, "metrics.k8s.io")
    assert recommend(evidence, RULES) is None
    from agents.cluster.recommend import short_of_history
    assert short_of_history(evidence, RULES) == "3h of usage history (19 samples), 1d needed"


def test_memory_days_older_than_the_window_are_forgotten():
    record = history([(0.1, 5e9)]).add(0.1, 1e8, T0 + 9 * DAY, HALF_LIFE, WINDOW)
    assert record.peak(T0 + 9 * DAY, WINDOW) == 1e8
    assert record.first == T0 + 9 * DAY - WINDOW


def test_workloads_gone_longer_than_the_window_drop_out_of_the_record():
    entries = {KEY: history([(0.1, 1e8)]), (*KEY[:3], "gone"): history([(0.1, 1e8)],
                                                                        start=T0 - 9 * DAY)}
    assert list(usage.pruned(entries, T0 + 1, WINDOW)) == [KEY]


def test_the_request_must_differ_by_more_than_min_change():
    assert not differs("100m", parse_quantity("0.119"), 20)
    assert differs("100m", parse_quantity("0.121"), 20)
    assert differs(None, parse_quantity("1"), 20)
    assert differs("nonsense", parse_quantity("1"), 20)


def test_an_entry_that_does_not_parse_is_dropped_not_fatal():
    good = usage.dumps({KEY: history([(0.1, 1e8)])})
    data = json.loads(good)
    data["e"]["apps/deployment/bad/x"] = {"c": "?"}
    assert list(usage.loads(json.dumps(data))) == [KEY]
    assert usage.loads('{"v": 99}') == {}


def test_a_week_of_varied_usage_stays_small():
    import random
    rng = random.Random(1)
    record = history([(rng.lognormvariate(-1, 1.5), rng.uniform(1e7, 1e9)) for _ in range(1008)])
    text = usage.dumps({KEY: record})
    assert len(record.cpu.compact()["b"]) <= usage.MAX_BUCKETS
    assert len(text) < 2000


cores = st.floats(min_value=0, max_value=2000, allow_nan=False)
memory = st.floats(min_value=0, max_value=2**42, allow_nan=False)
samples = st.lists(st.tuples(cores, memory), min_size=1, max_size=60)
quantities = st.tuples(st.integers(1, 4000), st.integers(1, 4000)).map(sorted)


@st.composite
def rules(draw):
    cpu_floor, cpu_ceiling = draw(quantities)
    mem_floor, mem_ceiling = draw(quantities)
    return replace(RULES, minCpu=f"{cpu_floor}m", maxCpu=f"{cpu_ceiling}m",
                   minMemory=f"{mem_floor}Mi", maxMemory=f"{mem_ceiling}Mi",
                   margin=draw(st.floats(0, 100)), cpuPercentile=draw(st.floats(1, 100)),
                   minHistory=timedelta(0))


@settings(max_examples=200, deadline=None)
@given(samples, rules(), st.integers(60, 7200))
def test_recommendations_stay_within_bounds_and_memory_covers_the_peak(seen, policy, every):
    record = history(seen, every)
    evidence = evidence_of(record, policy, record.last, "test")
    wanted = recommend(evidence, policy)
    peak = max(m for _, m in seen)
    assert parse_quantity(policy.minCpu) * 1000 <= wanted.millicores
    assert wanted.millicores <= parse_quantity(policy.maxCpu) * 1000
    assert wanted.memory >= peak
    assert wanted.memory >= parse_quantity(policy.minMemory)
    assert wanted.memory <= max(parse_quantity(policy.maxMemory), peak + 1)


@settings(max_examples=200, deadline=None)
@given(samples, st.integers(60, 40 * DAY))
def test_the_record_is_stable_under_reserialisation(seen, every):
    entries = {KEY: history(seen, every)}
    once = usage.dumps(entries)
    reloaded = usage.loads(once)
    assert usage.dumps(reloaded) == once
    now = reloaded[KEY].last
    again = usage.loads(usage.dumps(reloaded))
    assert (recommend(evidence_of(again[KEY], RULES, now, "t"), RULES)
            == recommend(evidence_of(reloaded[KEY], RULES, now, "t"), RULES))


@settings(max_examples=100, deadline=None)
@given(samples)
def test_a_percentile_never_falls_below_the_smallest_sample_nor_above_the_largest_bucket(seen):
    hist = Histogram(T0)
    for i, (c, _) in enumerate(seen):
        hist = hist.add(c, T0 + i * 60, HALF_LIFE)
    p = hist.percentile(0.9)
    assert min(min(c for c, _ in seen), usage.MAX_CORES * 0.99) <= p
    assert p <= bucket_end(bucket_of(max(c for c, _ in seen)))


def test_evidence_from_any_source_gives_the_same_recommendation():
    evidence = Evidence(0.5, 3 * 2**30, 500, timedelta(days=2), "prometheus")
    wanted = recommend(evidence, RULES)
    assert wanted.quantities() == {"cpu": "575m", "memory": "3533Mi"}


def test_a_half_life_of_0s_or_a_window_of_years_is_a_policy_error():
    import pytest

    from agents.policy_loader import PolicyInvalid, parse_policy
    for bad in ("halfLife: 0s", "window: 3650d"):
        with pytest.raises(PolicyInvalid, match=bad.split(":")[0]):
            parse_policy("apiVersion: kubekeeper/v1\ncluster:\n  resourceRequests:\n"
                         f"    recommend: {{{bad}}}\n")
