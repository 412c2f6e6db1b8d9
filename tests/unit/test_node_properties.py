"""Properties of the cleanup plan on generated nodes (hypothesis).

Whatever the snapshot and the rules: nothing running, protected or in use is
ever planned; an image is planned only with all its children; fetching only the
details ``details_needed`` asks for gives the same plan as fetching all; and on
the in-memory engine a dry run changes nothing while a real run removes exactly
what the dry run listed.
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.node import inventory
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.inventory import Container, Disk, Image, Snapshot, Volume
from agents.node.memory_port import MemoryDocker
from agents.node.plan_containers import LIVE
from agents.node.planner import details_needed, plan_cleanup
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

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
AGES = st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(hours=2),
                        timedelta(days=3), timedelta(days=30)])
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
        made.append(Image(id=f"sha256:{n:02d}", created=NOW - draw(AGES),
                          size=draw(st.integers(0, 500)), parent_id=parent, tags=tags,
                          labels=MappingProxyType(labels), tagged_at=tagged))
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
        made.append(Container(
            id=f"c{n}", name=draw(st.sampled_from([f"c{n}", f"backup-{n}"])),
            state=draw(st.sampled_from(STATES)), created=NOW - age,
            image_id=draw(st.sampled_from([*image_ids, "sha256:gone"])),
            labels=MappingProxyType(labels),
            volumes=tuple(draw(st.lists(st.sampled_from(volume_names or ["none"]), max_size=2,
                                        unique=True))),
            size=draw(st.integers(0, 50)), finished_at=finished))
    return made


@st.composite
def snapshots(draw) -> Snapshot:
    imgs = draw(images())
    vols = [Volume(name, NOW - draw(AGES), MappingProxyType(draw(st.sampled_from([{}, KEEP]))),
                   size=draw(st.integers(0, 100)))
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
        volumes=VolumeRules(olderThan=draw(THRESHOLDS), includeNamed=draw(st.booleans()),
                            protect=PROTECT))


def _kind(actions, kind):
    return {a.id for a in actions if a.kind == kind}


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
            ran = c.state != "created" and c.finished_at is not None
            stopped = max(c.created, c.finished_at) if ran else c.created
            assert NOW - stopped >= policy.containers.olderThan
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
        elif image.parent_id:
            assert image.parent_id not in planned_images, "a kept child's parent was planned"
    mounted = {v for c in remaining for v in c.volumes}
    for volume in snap.volumes:
        if volume.name in _kind(actions, "volume"):
            assert volume.name not in mounted
            assert volume.anonymous or policy.volumes.includeNamed
            assert volume.labels.get("kubekeeper.keep") != "true"
            assert not volume.name.startswith("pg-")
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


def _execute(docker: MemoryDocker, policy: NodePolicy, dry_run: bool) -> list[dict]:
    snap = inventory.take(docker, HostPaths("/nonexistent-host-root"))
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
    dry = _execute(docker, policy, dry_run=True)
    assert docker.calls == []
    assert before == {k: set(getattr(docker, k)) for k in before}
    real = _execute(docker, policy, dry_run=False)
    assert sorted((x["kind"], x["id"]) for x in real) == sorted((x["kind"], x["id"]) for x in dry)
    assert {x["result"] for x in real} <= {"done"}
    removed = {("container", c) for c in before["containers_by_id"] - set(docker.containers_by_id)}
    removed |= {("image", i) for i in before["images_by_id"] - set(docker.images_by_id)}
    removed |= {("volume", v) for v in before["volumes_by_name"] - set(docker.volumes_by_name)}
    taken_along = {("volume", v) for x in dry for v in x.get("volumes") or ()}
    deletions = {(x["kind"], x["id"]) for x in dry if x["action"] == "delete"}
    assert removed == deletions | taken_along
    for volume in snap.volumes:
        if volume.labels.get("kubekeeper.keep") == "true" or volume.name.startswith("pg-"):
            assert volume.name in docker.volumes_by_name, "a protected volume was removed"


def _without_intents(text: str) -> list[dict]:
    lines = report_lines.parse(text)
    return report_lines.outcomes(lines) + report_lines.summaries(lines)
