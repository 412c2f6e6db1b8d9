"""The container planner on plain data: which stopped containers go, and which stay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.node.inventory import Container, Snapshot, Volume
from agents.node.plan_containers import plan_containers
from agents.policy import ContainerRules, Protect

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RULES = ContainerRules(olderThan=HOUR)
INSTALLED = NOW - timedelta(days=365)
"""When the node's record first saw every container, unless a test says otherwise."""


def container(cid: str, state: str = "exited", age: timedelta = 2 * HOUR,
              finished_age: timedelta | None = None, **labels: str) -> Container:
    finished = NOW - finished_age if finished_age is not None else None
    if finished is None and state in ("exited", "dead"):
        finished = NOW - age + timedelta(minutes=1)
    return Container(id=cid, name=cid, state=state, created=NOW - age, image_id="sha256:i",
                     labels=MappingProxyType({k.replace("__", "."): v for k, v in labels.items()}),
                     finished_at=finished, first_seen=INSTALLED)


def kubelet(cid: str, pod: str, name: str, age: timedelta, state: str = "exited") -> Container:
    labels = {"io.kubernetes.pod.uid": pod, "io.kubernetes.container.name": name,
              "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": f"pod-{pod}"}
    if name == "POD":
        labels["io.kubernetes.docker.type"] = "podsandbox"
    return replace(container(cid, state, age), labels=MappingProxyType(labels))


def planned(*containers: Container, rules: ContainerRules = RULES,
            volumes: tuple[Volume, ...] = ()) -> list[str]:
    snap = Snapshot("/var/lib/docker", containers=containers, volumes=volumes)
    return [a.id for a in plan_containers(snap, rules, NOW) if a.mutates]


def test_only_stopped_containers_past_the_age_are_planned():
    states = ["exited", "dead", "created", "running", "paused", "restarting", "removing"]
    old = [container(f"old-{s}", s) for s in states]
    young = container("young", "exited", age=2 * HOUR, finished_age=timedelta(minutes=5))
    # Oldest first: the never-started one stopped "at creation", a minute before the others.
    assert planned(*old, young) == ["old-created", "old-dead", "old-exited"]


def test_age_counts_from_finish_for_a_started_container_and_creation_otherwise():
    long_running = container("ran-for-days", "exited", age=timedelta(days=5),
                             finished_age=timedelta(minutes=10))
    never_started = container("never", "created", age=timedelta(hours=3))
    assert planned(long_running, never_started) == ["never"]


def test_a_finish_time_that_was_not_fetched_falls_back_to_creation():
    unfetched = Container(id="x", name="x", state="exited", created=NOW - 2 * HOUR,
                          image_id="i", finished_at=None)
    assert planned(unfetched, rules=ContainerRules(olderThan=timedelta(0))) == ["x"]


def test_keep_label_and_protect_rules_win_over_age():
    kept = container("kept", **{"kubekeeper__keep": "true"})
    by_label = container("db", team="data", tier="db")
    by_name = container("backup-1")
    plain = container("plain")
    rules = ContainerRules(olderThan=HOUR,
                           protect=Protect(labels=MappingProxyType({"tier": "db"}),
                                           names=("backup-*",)))
    assert planned(kept, by_label, by_name, plain, rules=rules) == ["plain"]


def test_newest_dead_containers_per_pod_container_are_kept_like_the_kubelet():
    attempts = [kubelet(f"app-{n}", "uid-1", "app", timedelta(hours=10 - n)) for n in range(4)]
    sidecar = [kubelet(f"side-{n}", "uid-1", "side", timedelta(hours=10 - n)) for n in range(2)]
    other_pod = [kubelet("other-0", "uid-2", "app", timedelta(hours=9))]
    result = planned(*attempts, *sidecar, *other_pod)
    assert sorted(result) == ["app-0", "app-1", "app-2", "side-0"]
    keep_two = ContainerRules(olderThan=HOUR, keepPerPodContainer=2)
    assert sorted(planned(*attempts, rules=keep_two)) == ["app-0", "app-1"]


def test_sandboxes_of_live_pods_are_never_touched():
    live = [kubelet("sandbox-old", "live", "POD", timedelta(hours=9)),
            kubelet("sandbox-new", "live", "POD", timedelta(hours=8)),
            kubelet("running-app", "live", "app", timedelta(hours=8), state="running")]
    dead = [kubelet("dead-sandbox-old", "dead", "POD", timedelta(hours=9)),
            kubelet("dead-sandbox-new", "dead", "POD", timedelta(hours=8))]
    assert planned(*live, *dead) == ["dead-sandbox-old"]


def test_reasons_carry_the_rule_and_the_facts():
    snap = Snapshot("/d", containers=(container("a", age=timedelta(days=3),
                                                finished_age=timedelta(days=2)),
                                      kubelet("k", "u", "app", timedelta(days=1)),
                                      kubelet("k2", "u", "app", timedelta(hours=3))))
    actions = {a.id: a for a in plan_containers(snap, RULES, NOW)}
    assert actions["a"].reason == "containers: exited 2d ago (olderThan 1h)"
    assert actions["k"].namespace == "shop"
    assert actions["k"].details["pod"] == "pod-u"
    assert "newest 1 kept" in actions["k"].why


def test_containers_are_removed_without_their_volumes():
    anon = "a" * 64
    gone = replace(container("gone"), volumes=(anon,))
    snap = Snapshot("/d", containers=(gone,), volumes=(Volume(anon, NOW),))
    [action] = plan_containers(snap, RULES, NOW)
    assert "volumes" not in action.details, "the volume rules judge the volumes on their own"


def test_age_counts_from_first_seen_when_the_container_is_new_to_the_node():
    stopped_long_ago = replace(container("c", age=30 * HOUR), first_seen=NOW - HOUR / 2)
    assert planned(stopped_long_ago) == []
    assert planned(replace(stopped_long_ago, first_seen=NOW - 2 * HOUR)) == ["c"]


def test_an_unknown_time_keeps_the_container_and_says_why():
    no_finish = replace(container("no-finish"), finished_at=None)
    no_created = replace(container("no-created", "created"), created=None)
    unseen = replace(container("unseen"), first_seen=None)
    snap = Snapshot("/d", containers=(no_finish, no_created, unseen))
    actions = {a.id: a for a in plan_containers(snap, RULES, NOW)}
    assert not any(a.mutates for a in actions.values())
    assert "no FinishedAt" in actions["no-finish"].skip
    assert "no Created" in actions["no-created"].skip
    assert "first-seen time unknown" in actions["unseen"].skip
    # 0s means any age, an unknown one too.
    zero = replace(RULES, olderThan=timedelta(0))
    assert planned(no_finish, no_created, unseen, rules=zero) == [
        "no-created", "no-finish", "unseen"]


def test_disabled_rule_plans_nothing():
    assert planned(container("a"), rules=ContainerRules(enabled=False)) == []
