"""The image planner on plain data: age rules, what is never removed, disk-pressure LRU."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.node.ages import image_last_used
from agents.node.inventory import Container, Disk, Image, Snapshot
from agents.node.plan_images import estimated_bytes, plan_images
from agents.policy import AgeRule, DiskPressure, ImageRules

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MI = 2**20
RULES = ImageRules(dangling=AgeRule(olderThan=timedelta(hours=1)),
                   unused=AgeRule(olderThan=7 * DAY),
                   diskPressure=DiskPressure(enabled=False))


def image(iid: str, *tags: str, parent: str = "", age: timedelta = 30 * DAY,
          size: int = 10 * MI, **labels: str) -> Image:
    return Image(id=iid, created=NOW - 400 * DAY, size=size, parent_id=parent, tags=tags,
                 labels=MappingProxyType({k.replace("__", "."): v for k, v in labels.items()}),
                 first_seen=NOW - age)


def user(cid: str, image_id: str, state: str = "running", age: timedelta = DAY,
         **labels: str) -> Container:
    return Container(id=cid, name=cid, state=state, created=NOW - age, image_id=image_id,
                     labels=MappingProxyType({k.replace("__", "."): v for k, v in labels.items()}))


def planned(images: list[Image], containers: list[Container] = (), rules: ImageRules = RULES,
            remaining: list[Container] | None = None, disk: Disk | None = None) -> list[str]:
    snap = Snapshot("/var/lib/docker", containers=tuple(containers), images=tuple(images),
                    disk=disk)
    kept = list(containers) if remaining is None else remaining
    return [a.id for a in plan_images(snap, rules, kept, NOW) if a.mutates]


def test_dangling_and_unused_images_past_their_age_are_planned():
    images = [image("dangling-old"), image("dangling-young", age=timedelta(minutes=5)),
              image("unused-old", "app:1"), image("unused-young", "app:2", age=3 * DAY)]
    assert planned(images) == ["dangling-old", "unused-old"]


def test_images_used_by_remaining_containers_stay_running_or_not():
    images = [image("run", "a:1"), image("stopped", "b:1"), image("removed-user", "c:1")]
    containers = [user("r", "run"), user("s", "stopped", "exited", age=30 * DAY),
                  user("gone", "removed-user", "exited", age=30 * DAY)]
    remaining = containers[:2]
    assert planned(images, containers, remaining=remaining) == ["removed-user"]


def test_last_use_is_the_newest_container_creation_else_tag_or_creation_time():
    recently_run = image("ran", "a:1")
    retagged = replace(image("tagged", "b:1"), tagged_at=NOW - DAY)
    containers = [user("c", "ran", "exited", age=2 * DAY)]
    snap = Snapshot("/d", containers=tuple(containers), images=(recently_run, retagged))
    used = image_last_used(snap)
    assert used["ran"] == NOW - 2 * DAY
    assert used["tagged"] == NOW - DAY
    # Used two days ago by a container removed in this run: not "unused for 7d".
    assert planned([recently_run, retagged], containers, remaining=[]) == []


def test_parents_of_kept_images_stay_and_children_are_planned_before_parents():
    chain = [image("base", "base:1"), image("mid", parent="base"),
             image("top", "app:1", parent="mid"), image("other", "other:1", parent="base")]
    in_use = [user("c", "other")]
    # "mid" is untagged: only "top" needs it, so it goes with it, after it.
    assert planned(chain, in_use) == ["top", "mid"]
    assert planned(chain) == ["other", "top", "mid", "base"]


def test_a_young_child_keeps_its_old_parent():
    chain = [image("old-parent", "p:1"),
             image("young-child", "c:1", parent="old-parent", age=timedelta(hours=1))]
    assert planned(chain) == []


def test_protect_globs_match_tag_digest_and_id():
    images = [image("sha256:aaa111", "team/base:3"),
              replace(image("sha256:bbb222"), digests=("mirror/x@sha256:d1",)),
              image("sha256:ccc333"), image("sha256:ddd444", "free:1")]
    rules = ImageRules(dangling=RULES.dangling, unused=RULES.unused,
                       diskPressure=RULES.diskPressure,
                       protect=("team/*", "mirror/x@*", "ccc3*"))
    assert planned(images, rules=rules) == ["sha256:ddd444"]


def test_keep_label_and_sandbox_images_are_never_planned():
    images = [image("kept", "x:1", **{"kubekeeper__keep": "true"}),
              image("pause", "registry.k8s.io/pause:3.9"), image("gcr", "k8s.gcr.io/pause:3.2"),
              image("custom-sandbox", "my/pause:1"), image("plain", "y:1")]
    sandbox = user("sb", "custom-sandbox", "exited", age=30 * DAY,
                   io__kubernetes__docker__type="podsandbox")
    assert planned(images, [sandbox], remaining=[]) == ["plain"]
    off = ImageRules(dangling=RULES.dangling, unused=RULES.unused,
                     diskPressure=RULES.diskPressure, protectSandboxImages=False)
    assert sorted(planned(images, [sandbox], rules=off, remaining=[])) == \
        ["custom-sandbox", "gcr", "pause", "plain"]


def test_bytes_are_the_layers_an_image_adds_over_its_parent():
    parent = image("p", "p:1", size=100)
    child = image("c", "c:1", parent="p", size=130)
    snap = Snapshot("/d", images=(parent, child))
    assert estimated_bytes(snap, child) == 30
    assert estimated_bytes(snap, parent) == 100


def pressure_rules(high: float = 85, low: float = 80) -> ImageRules:
    return ImageRules(dangling=AgeRule(enabled=False), unused=AgeRule(enabled=False),
                      diskPressure=DiskPressure(highPercent=high, lowPercent=low))


def test_disk_pressure_evicts_least_recently_used_until_below_low_mark():
    images = [image("old", "a:1", age=9 * DAY, size=15),
              image("older", "b:1", age=20 * DAY, size=15),
              image("newest", "c:1", age=1 * DAY, size=15),
              image("in-use", "d:1", age=99 * DAY, size=15)]
    # 90 of 100 used; down to 80 needs 10 bytes: the single oldest unused image.
    disk = Disk("/var/lib/docker", "/var/lib/docker", capacity=100, available=10)
    in_use = [user("c", "in-use")]
    assert planned(images, in_use, rules=pressure_rules(), disk=disk) == ["older"]
    # 100 of 100 used needs 20: two images, least recently used first.
    full = Disk("/var/lib/docker", "/var/lib/docker", capacity=100, available=0)
    assert planned(images, in_use, rules=pressure_rules(), disk=full) == ["older", "old"]


def test_disk_pressure_respects_parent_chains_and_the_high_mark():
    images = [image("parent", "p:1", age=50 * DAY, size=10),
              image("child", "c:1", parent="parent", age=2 * DAY, size=40),
              image("loner", "l:1", age=10 * DAY, size=10)]
    full = Disk("/var/lib/docker", "/var/lib/docker", capacity=100, available=0)
    # The parent is least recently used but can only go after its child.
    assert planned(images, rules=pressure_rules(high=50, low=40), disk=full) == \
        ["loner", "child", "parent"]
    below = Disk("/var/lib/docker", "/var/lib/docker", capacity=100, available=15)
    assert planned(images, rules=pressure_rules(), disk=below) == []
    invisible = Disk("/var/lib/docker", "/host/var/lib/docker")
    snap = Snapshot("/var/lib/docker", images=tuple(images), disk=invisible)
    [said] = [a for a in plan_images(snap, pressure_rules(), [], NOW) if a.kind == "disk"]
    assert (said.kind, str(said.verb), said.rule) == ("disk", "report", "images.diskPressure")
    assert "not visible at /host/var/lib/docker" in said.why


def test_a_freshly_pulled_image_is_young_whatever_its_build_date():
    pulled = replace(image("pulled", "app:1"), created=NOW - 300 * DAY, first_seen=NOW - DAY)
    assert planned([pulled]) == []
    assert planned([replace(pulled, first_seen=NOW - 8 * DAY)]) == ["pulled"]


def test_last_seen_in_use_keeps_an_image_young_after_its_container_is_gone():
    image_ = replace(image("i", "app:1", age=30 * DAY), last_seen_in_use=NOW - DAY)
    assert planned([image_]) == []


def test_an_image_never_seen_before_is_kept_and_reported():
    snap = Snapshot("/d", images=(replace(image("i", "app:1"), first_seen=None),))
    [action] = plan_images(snap, RULES, [], NOW)
    assert not action.mutates and "age unknown" in action.skip


def test_disk_pressure_never_evicts_an_image_first_seen_under_min_age():
    just_pulled = image("just-pulled", "a:1", age=timedelta(seconds=30), size=50)
    older = image("older", "b:1", age=timedelta(minutes=5), size=50)
    full = Disk("/var/lib/docker", "/var/lib/docker", capacity=100, available=0)
    assert planned([just_pulled, older], rules=pressure_rules(), disk=full) == ["older"]


def test_disk_usage_counts_reserved_blocks_as_the_kubelet_does():
    # 400 MB, 92 MB available to writers, 20 MB of it reserved for root (not available).
    disk = Disk("/d", "/d", capacity=400, available=92)
    assert disk.used == 308 and round(disk.percent) == 77
    snap = Snapshot("/d", disk=disk)
    [line] = plan_images(snap, pressure_rules(high=85), [], NOW)
    assert line.kind == "disk" and "77% full (308B of 400B used or reserved, 92B " \
        "available)" in line.why
