"""The volume planner on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.node.inventory import Container, Snapshot, Volume
from agents.node.plan_volumes import plan_volumes
from agents.policy import Protect, VolumeRules

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ANON = "0123456789abcdef" * 4
DEFAULTS = VolumeRules()


def volume(name: str, age: timedelta = 2 * DAY, **labels: str) -> Volume:
    return Volume(name, NOW - age,
                  MappingProxyType({k.replace("__", "."): v for k, v in labels.items()}),
                  first_seen=NOW - timedelta(days=365))


def mounting(*names: str) -> Container:
    return Container(id="c", name="c", state="exited", created=NOW, image_id="i", volumes=names)


def planned(volumes: list[Volume], remaining: list[Container] = (),
            rules: VolumeRules = DEFAULTS) -> list[str]:
    snap = Snapshot("/var/lib/docker", volumes=tuple(volumes))
    return [a.name for a in plan_volumes(snap, rules, remaining, NOW) if a.mutates]


def test_only_anonymous_dangling_volumes_past_the_age_by_default():
    volumes = [volume(ANON), volume("data"), volume(ANON.replace("0", "e"), age=DAY / 2),
               volume("labelled", **{"com__docker__volume__anonymous": ""})]
    assert planned(volumes) == [ANON, "labelled"]


def test_mounted_volumes_stay_even_for_a_stopped_container():
    assert planned([volume(ANON)], [mounting(ANON)]) == []


def test_named_volumes_need_include_named_and_protection_wins():
    volumes = [volume("data"), volume("keep-me", **{"kubekeeper__keep": "true"}),
               volume("pg-main"), volume("team", owner="db")]
    rules = VolumeRules(includeNamed=True,
                        protect=Protect(labels=MappingProxyType({"owner": "db"}),
                                        names=("pg-*",)))
    assert planned(volumes, rules=rules) == ["data"]


def test_age_counts_from_first_seen_and_an_unknown_creation_keeps_the_volume():
    new_here = Volume(ANON, NOW - 30 * DAY, first_seen=NOW - DAY / 2)
    assert planned([new_here]) == []
    unknown = Volume(ANON, None, first_seen=NOW - 30 * DAY)
    snap = Snapshot("/d", volumes=(unknown,))
    [action] = plan_volumes(snap, DEFAULTS, [], NOW)
    assert not action.mutates and "no CreatedAt" in action.skip


def test_reason_names_the_facts():
    snap = Snapshot("/d", volumes=(volume(ANON, age=3 * DAY),))
    [action] = plan_volumes(snap, VolumeRules(), [], NOW)
    assert action.reason == "volumes: anonymous, used by no container, created 3d ago " \
        "(olderThan 1d)"
