"""Fuzz the policy loader: whatever the file holds, the outcome is a Policy or located errors.

Five generators: trees shaped like the policy (known keys, values of the
right type, or hostile ones),
arbitrary YAML trees, YAML-ish token soup (tags, anchors, flow brackets) and
raw bytes.  For each, the only allowed outcomes are a valid ``Policy``, which
``policy show`` can print and which reads back equal, or ``PolicyInvalid``
whose every problem is located; each within 1 CPU-second and 50 MB.
"""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.checks import Trigger
from agents.policy import OVERRIDABLE, ClusterPolicy, Policy, to_plain
from agents.policy_loader import PolicyInvalid, load_policy, parse_policy
from tests.unit.test_policy_corpus import PEAK_BYTES, assert_located, measured

SECONDS = 1.0
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE = st.sampled_from([
    "7d", "0s", "1h30m", "99999999999d", "\u0667d", "3650d", "3651d", "1e1000000", "1e5000",
    "100Mi", "7Ei", "8Ei", "-1", "85%", "1" * 400, "nan", ".inf", "0 0 30 2 *", "*/5 * * * *",
    "0 0 29 2 *", "*/0 * * * *", "0 3 * * 0", "batch-*", "repo[x", "*", "report", "delete",
    "truncate", "patch", "limitrange", "cpu", "memory", "kubekeeper/v1", "", "\x85", "\ufeff",
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**400), 10**400),
    st.floats(), st.text(max_size=20), HOSTILE)


def _leaf_names(cls: type) -> list[str]:
    names = []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        default = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(default):
            names.extend(_leaf_names(type(default)))
    return names


KEYS = st.one_of(st.sampled_from(sorted({*_leaf_names(Policy), "every", "namespaces"})),
                 st.text(max_size=10))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)


def shaped(cls: type, hostile: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings with the dataclass's own keys, each value well-typed (or hostile)."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        if not f.compare:
            continue
        default = f.default_factory() if callable(f.default_factory) else f.default
        if f.name == "overrides":
            optional[f.name] = st.lists(_override(hostile), max_size=3)
        elif dataclasses.is_dataclass(default) and "check" not in f.metadata:
            inner = shaped(type(default), hostile)
            optional[f.name] = st.one_of(inner, TREES) if hostile else inner
        else:
            good = typed(default, to_plain_value(f, default))
            optional[f.name] = st.one_of(good, good, SCALARS, TREES) if hostile else good
    return st.fixed_dictionaries({}, optional=optional)


DURATIONS = st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 4000), st.sampled_from("smhdw"))
TRIGGERS = st.one_of(st.sampled_from(["*/5 * * * *", "0 3 * * 0", "0 0 29 2 *", "0 0 30 2 *"]),
                     st.builds(lambda d: {"every": d}, DURATIONS))


def typed(default: Any, written: Any) -> st.SearchStrategy[Any]:
    """Values of the setting's own type, mostly in range, some just past it."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(0, 2000)
    if isinstance(default, float):
        return st.one_of(st.floats(0, 200), st.integers(0, 200))
    if isinstance(default, timedelta):
        return DURATIONS
    if isinstance(default, Trigger):
        return TRIGGERS
    if isinstance(default, tuple):
        return st.lists(st.sampled_from(["*", "batch-*", "cpu", "memory", "[ab]c"]), max_size=3)
    if hasattr(default, "items"):
        return st.dictionaries(st.sampled_from(["app", "team", "example.com/tier"]),
                               st.text(max_size=5), max_size=3)
    return st.one_of(st.just(written), HOSTILE)


def _override(hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    sections = {f.name: f for f in dataclasses.fields(ClusterPolicy) if f.name in OVERRIDABLE}
    globs = st.lists(st.sampled_from(["*", "batch-*", "team-[ab]"]), min_size=1, max_size=3)
    optional: dict[str, st.SearchStrategy[Any]] = {
        "namespaces": st.one_of(st.lists(HOSTILE, max_size=3), TREES) if hostile else globs}
    for name, f in sections.items():
        optional[name] = shaped(type(f.default_factory()), hostile)
    return st.fixed_dictionaries({}, optional=optional)


def to_plain_value(f: dataclasses.Field, default: Any) -> Any:
    render = f.metadata.get("render")
    value = render(default) if render else default
    return list(value) if isinstance(value, tuple) else dict(value) \
        if hasattr(value, "items") else value


POLICIES = shaped(Policy).map(lambda tree: {**tree, "apiVersion": "kubekeeper/v1"})
TYPED_POLICIES = shaped(Policy, hostile=False).map(
    lambda tree: {**tree, "apiVersion": "kubekeeper/v1"})
TOKENS = st.lists(st.sampled_from([
    "apiVersion: kubekeeper/v1\n", "node:", "cluster:", "overrides:", " ", "  ", "\n", "\t",
    ": ", "- ", "[", "]", "{", "}", ", ", "? ", "&a ", "*a ", "<<: ",
    "!!python/object/apply:os.system ", "!x ", "!! ", "!!timestamp ", "---\n", "...\n", "'", '"',
    "# c\n", "|\n", ">\n", "%YAML 1.1\n", "parallelism", "olderThan", "labels", "every",
    "namespaces", "7d", "1e5000", ".nan", "0 0 30 2 *",
]), max_size=60).map("".join)


def check_outcome(load: Any) -> None:
    outcome, seconds, peak = measured(load)
    assert seconds < SECONDS, f"took {seconds:.2f} CPU-s"
    assert peak < PEAK_BYTES, f"peak {peak / 2**20:.0f} MB"
    if isinstance(outcome, PolicyInvalid):
        assert outcome.errors
        for error in outcome.errors:
            assert_located(error)
        return
    assert isinstance(outcome, Policy), repr(outcome)
    shown = yaml.safe_dump(to_plain(outcome), sort_keys=False)  # what `policy show` prints
    assert parse_policy(shown) == outcome, shown


@FUZZ
@given(POLICIES)
def test_policy_shaped_trees(tree):
    check_outcome(lambda: parse_policy(yaml.safe_dump(tree, sort_keys=False)))


@FUZZ
@given(TYPED_POLICIES)
def test_well_typed_policies(tree):
    check_outcome(lambda: parse_policy(yaml.safe_dump(tree, sort_keys=False)))


@FUZZ
@given(TREES)
def test_arbitrary_yaml_trees(tree):
    check_outcome(lambda: parse_policy(yaml.safe_dump(tree)))


@FUZZ
@given(TOKENS)
def test_yaml_token_soup(text):
    check_outcome(lambda: parse_policy(text))


@FUZZ
@given(st.binary(max_size=1000))
def test_random_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "policies.yaml"
        path.write_bytes(data)
        check_outcome(lambda: load_policy(path))
