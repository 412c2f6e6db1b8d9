"""Properties of the cleanup plan on generated nodes (hypothesis).

Whatever the snapshot and the rules: nothing running, protected or in use is
ever planned; nothing is planned for age before its age is known and past the
threshold, counted from when the node first saw it; a volume goes only when the
volume rules say so, even when its container goes; an image is planned only
with all its children; fetching only the details ``details_needed`` asks for
gives the same plan as fetching all; over a generated history of runs with the
node's record, no image is removed before ``olderThan`` has passed since it
first appeared; and on the in-memory engine a dry run changes nothing while a
real run removes exactly what the dry run listed.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.node import inventory, state
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.inventory import Container, Disk, Image, Snapshot, Volume
from agents.node.plan_containers import LIVE
from agents.node.planner import details_needed, plan_cleanup
from agents.node.state import NodeState, StateFile
from agents.policy import (
    AgeRule,
    ContainerRules,
    DiskPressure,
    ImageRules,
    NodePolicy,
    Protect,
    VolumeRules,
)
from agents.report import Reporter
from tests import report_lines
from tests.fake_docker import MemoryDocker

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
AGES = st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(hours=2),
                        timedelta(days=3), timedelta(days=30)])
SEEN = st.one_of(st.none(), AGES.map(lambda age: NOW - age))
"""A first-seen time: None (no record) now and then."""
CREATED = st.one_of(AGES.map(lambda age: NOW - age), st.none())
THRESHOLDS = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(days=7)])
TAGS = ["app:1", "app:2", "web:1", "team/base:1", "registry.k8s.io/pause:3.9",
        "k8s.gcr.io/pause:3.1", "keep/me:1", "other/web:1"]
STATES = ["exited", "exited", "dead", "created", "running", "paused", "restarting", "removing"]
VOLUME_NAMES = ["a" * 64, "b" * 64, "c" * 64, "d" * 64, "data", "pg-main"]
PROTECT = Protect(labels=MappingProxyType({"tier": "db"}), names=("backup-*", "pg-*"))
KEEP = {"kubekeeper.keep": "true"}


@st.composite
def images(draw) -> list[Image]:
    made: list[Image] = []
    for n in range(draw(st.integers(0, 7))):
        parent = draw(st.sampled_from(["", *[i.id for i in made]]))
        tags = tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)))
        tags = tuple(t for t in tags if all(t not in i.tags for i in made))
        labels = KEEP if draw(st.integers(0, 6)) == 0 else {}
        tagged = NOW - draw(AGES) if draw(st.booleans()) else None
        made.append(Image(id=f"sha256:{n:02d}", created=draw(CREATED),
                          size=draw(st.integers(0, 500)), parent_id=parent, tags=tags,
                          labels=MappingProxyType(labels), tagged_at=tagged,
                          first_seen=draw(SEEN)))
    return made


@st.composite
def containers(draw, image_ids: list[str], volume_names: list[str]) -> list[Container]:
    made = []
    for n in range(draw(st.integers(0, 8))):
        labels: dict[str, str] = {}
        if draw(st.booleans()):
            labels["io.kubernetes.pod.uid"] = draw(st.sampled_from(["pod-1", "pod-2"]))
            labels["io.kubernetes.container.name"] = draw(st.sampled_from(["app", "POD"]))
            if labels["io.kubernetes.container.name"] == "POD":
                labels["io.kubernetes.docker.type"] = "podsandbox"
        labels.update(draw(st.sampled_from([{}, {}, KEEP, {"tier": "db"}])))
        age = draw(AGES)
        finished = NOW - min(age, draw(AGES)) if draw(st.booleans()) else None
        created = NOW - age if draw(st.integers(0, 5)) else None
        made.append(Container(
            id=f"c{n}", name=draw(st.sampled_from([f"c{n}", f"backup-{n}"])),
            state=draw(st.sampled_from(STATES)), created=created, first_seen=draw(SEEN),
            image_id=draw(st.sampled_from([*image_ids, "sha256:gone"])),
            labels=MappingProxyType(labels),
            volumes=tuple(draw(st.lists(st.sampled_from(volume_names or ["none"]), max_size=2,
                                        unique=True))),
            size=draw(st.integers(0, 50)), finished_at=finished))
    return made


@st.composite
def snapshots(draw) -> Snapshot:
    imgs = draw(images())
    vols = [Volume(name, draw(CREATED), MappingProxyType(draw(st.sampled_from([{}, KEEP]))),
                   size=draw(st.integers(0, 100)), first_seen=draw(SEEN))
            for name in draw(st.lists(st.sampled_from(VOLUME_NAMES), unique=True))]
    conts = draw(containers([i.id for i in imgs], [v.name for v in vols]))
    disk = draw(st.sampled_from([None, Disk("/d", "/d"), Disk("/d", "/d", 1000, 500),
                                 Disk("/d", "/d", 1000, 990)]))
    return Snapshot("/var/lib/docker", tuple(conts), tuple(imgs), tuple(vols), disk)


@st.composite
def policies(draw) -> NodePolicy:
    return NodePolicy(
        containers=ContainerRules(olderThan=draw(THRESHOLDS),
                                  keepPerPodContainer=draw(st.integers(0, 2)), protect=PROTECT),
        images=ImageRules(dangling=AgeRule(olderThan=draw(THRESHOLDS)),
                          unused=AgeRule(olderThan=draw(THRESHOLDS)),
                          diskPressure=DiskPressure(enabled=draw(st.booleans()),
                                                    highPercent=85, lowPercent=10),
                          protect=("team/*", "keep/*"),
                          protectSandboxImages=draw(st.booleans())),
        volumes=VolumeRules(enabled=draw(st.integers(0, 4)) > 0, olderThan=draw(THRESHOLDS),
                            includeNamed=draw(st.booleans()), protect=PROTECT))


def _kind(actions, kind):
    """Ids of the objects the plan changes (decisions to keep are not changes)."""
    return {a.id for a in actions if a.kind == kind and a.mutates}


def _old_enough(threshold: timedelta, *times: datetime | None) -> bool:
    """Every time known and at least ``threshold`` ago; any time does for 0s."""
    return threshold == timedelta(0) or all(t is not None and NOW - t >= threshold
                                            for t in times)


@settings(max_examples=300, deadline=None)
@given(snapshots(), policies())
def test_nothing_protected_or_in_use_is_ever_planned(snap, policy):
    actions = plan_cleanup(snap, policy, NOW)
    gone = _kind(actions, "container")
    remaining = [c for c in snap.containers if c.id not in gone]
    live_pods = {c.labels.get("io.kubernetes.pod.uid") for c in snap.containers
                 if c.state in LIVE} - {None}
    for c in snap.containers:
        if c.id in gone:
            assert c.state in ("exited", "dead", "created")
            assert c.labels.get("kubekeeper.keep") != "true"
            assert c.labels.get("tier") != "db" and not c.name.startswith("backup-")
            assert not (c.labels.get("io.kubernetes.docker.type") == "podsandbox"
                        and c.labels["io.kubernetes.pod.uid"] in live_pods)
            stopped = c.created if c.state == "created" else c.finished_at
            assert _old_enough(policy.containers.olderThan, stopped, c.first_seen)
    planned_images = _kind(actions, "image")
    used = {c.image_id for c in remaining}
    sandbox_images = {c.image_id for c in snap.containers
                      if c.labels.get("io.kubernetes.docker.type") == "podsandbox"}
    for image in snap.images:
        if image.id in planned_images:
            assert image.id not in used
            assert image.labels.get("kubekeeper.keep") != "true"
            assert not any(t.startswith(("team/", "keep/")) for t in image.tags)
            if policy.images.protectSandboxImages:
                assert image.id not in sandbox_images
                assert not any("pause" in t and "k8s" in t for t in image.tags)
            [action] = [a for a in actions if a.id == image.id]
            if action.rule == "images.diskPressure":
                assert _old_enough(policy.images.diskPressure.minAge, image.first_seen)
            else:
                rule = policy.images.unused if image.tags else policy.images.dangling
                assert _old_enough(rule.olderThan, image.first_seen)
        elif image.parent_id:
            assert image.parent_id not in planned_images, "a kept child's parent was planned"
    mounted = {v for c in remaining for v in c.volumes}
    for volume in snap.volumes:
        if volume.name in _kind(actions, "volume"):
            assert volume.name not in mounted
            assert volume.anonymous or policy.volumes.includeNamed
            assert volume.labels.get("kubekeeper.keep") != "true"
            assert not volume.name.startswith("pg-")
            assert policy.volumes.enabled, "a volume went although the volume rules are off"
            assert _old_enough(policy.volumes.olderThan, volume.created, volume.first_seen)
    assert len({(a.kind, a.id) for a in actions}) == len(actions), "an object planned twice"


@settings(max_examples=300, deadline=None)
@given(snapshots(), policies())
def test_fetching_only_the_needed_details_gives_the_same_plan(snap, policy):
    containers, images = details_needed(snap, policy, NOW)
    lean = replace(
        snap,
        containers=tuple(c if c.id in containers else replace(c, finished_at=None)
                         for c in snap.containers),
        images=tuple(i if i.id in images else replace(i, tagged_at=None) for i in snap.images))
    full = sorted((a.kind, a.id, a.rule) for a in plan_cleanup(snap, policy, NOW))
    assert sorted((a.kind, a.id, a.rule) for a in plan_cleanup(lean, policy, NOW)) == full


def _engine(snap: Snapshot) -> MemoryDocker:
    docker = MemoryDocker()
    for i in snap.images:
        docker.add_image(i.id, i.parent_id, i.tags, created=i.created, size=i.size,
                         labels=i.labels, tagged_at=i.tagged_at)
    known = {i.id for i in snap.images}
    for c in snap.containers:
        docker.add_container(c.id, c.name, c.state, c.image_id if c.image_id in known else "",
                             c.created, c.finished_at, c.labels,
                             [v for v in c.volumes if v in {x.name for x in snap.volumes}])
    for v in snap.volumes:
        docker.add_volume(v.name, v.created, v.labels)
    return docker


def _record(snap: Snapshot) -> NodeState:
    """The node's record as the generated snapshot describes it."""
    def seen(objects, key):
        return MappingProxyType({key(o): o.first_seen for o in objects if o.first_seen})
    return NodeState(since=NOW - timedelta(days=365), images=seen(snap.images, lambda i: i.id),
                     containers=seen(snap.containers, lambda c: c.id),
                     volumes=seen(snap.volumes, lambda v: v.name))


def _execute(docker: MemoryDocker, record: NodeState, policy: NodePolicy,
             dry_run: bool) -> list[dict]:
    snap = state.annotate(inventory.take(docker, HostPaths("/nonexistent-host-root")), record)
    snap = inventory.with_details(docker, snap, *details_needed(snap, policy, NOW))
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run, stream=out)
    run = Execution(docker, reporter, HostPaths("/"), snap.docker_root, 4, threading.Event())
    execute(plan_cleanup(snap, policy, NOW), run, dry_run, cap=1000)
    return _without_intents(out.getvalue())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), policies())
def test_dry_run_changes_nothing_and_the_real_run_removes_exactly_its_plan(snap, policy):
    snap = replace(snap, disk=None)  # the engine's disk is not the generated one
    docker = _engine(snap)
    before = {k: set(getattr(docker, k)) for k in
              ("containers_by_id", "images_by_id", "volumes_by_name")}
    record = _record(snap)
    dry = _execute(docker, record, policy, dry_run=True)
    assert docker.calls == []
    assert before == {k: set(getattr(docker, k)) for k in before}
    real = _execute(docker, record, policy, dry_run=False)
    expected = {"planned": "done", "skipped": "skipped", "done": "done"}
    assert sorted((x["kind"], x["id"], x["result"]) for x in real) == sorted(
        (x["kind"], x["id"], expected[x["result"]]) for x in dry)
    removed = {("container", c) for c in before["containers_by_id"] - set(docker.containers_by_id)}
    removed |= {("image", i) for i in before["images_by_id"] - set(docker.images_by_id)}
    removed |= {("volume", v) for v in before["volumes_by_name"] - set(docker.volumes_by_name)}
    deletions = {(x["kind"], x["id"]) for x in dry if x["result"] == "planned"}
    assert removed == deletions, "every removal is one planned, counted deletion"
    for volume in snap.volumes:
        if volume.labels.get("kubekeeper.keep") == "true" or volume.name.startswith("pg-"):
            assert volume.name in docker.volumes_by_name, "a protected volume was removed"


def _without_intents(text: str) -> list[dict]:
    lines = report_lines.parse(text)
    return report_lines.outcomes(lines) + report_lines.summaries(lines)


STEPS = st.sampled_from([timedelta(minutes=1), timedelta(hours=1), timedelta(days=1),
                         timedelta(days=3)])
EVENTS = st.lists(st.tuples(STEPS, st.integers(0, 2), st.booleans(), st.booleans(),
                            st.integers(0, 9)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(EVENTS, policies())
def test_over_a_history_of_runs_no_image_goes_before_olderThan_since_it_appeared(events, policy):
    """Each event: time passes, images arrive (built long ago), a container may start from
    one, the disk may be full, the record may be lost; then a run plans and removes."""
    appeared: dict[str, datetime] = {}
    world: dict[str, Image] = {}
    users: list[Container] = []
    with tempfile.TemporaryDirectory() as directory:
        store = StateFile(directory)
        moment = NOW
        for n, (step, arrivals, starts, full, lose) in enumerate(events):
            moment += step
            for k in range(arrivals):
                iid = f"sha256:{n:02d}{k}"
                world[iid] = Image(iid, NOW - timedelta(days=400), 100,
                                   tags=(f"app:{n}-{k}",) if k else ())
                appeared[iid] = moment
            if starts and world:
                users.append(Container(f"c{n}", f"c{n}", "exited", moment, sorted(world)[0]))
            if lose == 0 and os.path.exists(store.path):
                os.remove(store.path)
            disk = Disk("/d", "/d", 1000, 0) if full else None
            snap = Snapshot("/d", tuple(users), tuple(world.values()), (), disk)
            record = state.observe(store.load(moment), snap, moment)
            store.save(record)
            actions = plan_cleanup(state.annotate(snap, record), policy, moment)
            for action in (a for a in actions if a.kind == "image" and a.mutates):
                image = world.pop(action.id)
                threshold = (policy.images.diskPressure.minAge
                             if action.rule == "images.diskPressure"
                             else (policy.images.unused if image.tags
                                   else policy.images.dangling).olderThan)
                assert moment - appeared[action.id] >= threshold, action.reason
            gone = {a.id for a in actions if a.kind == "container" and a.mutates}
            users = [c for c in users if c.id not in gone]
