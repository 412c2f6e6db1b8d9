"""The CRI snapshot on plain records: the same meaning the planners read from Docker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from agents.actions import Action, Result
from agents.node import cri_inventory, cri_mutations, state
from agents.node.cri_port import CriSandbox, FilesystemUse
from agents.node.host_paths import HostPaths
from agents.node.inventory import Image, Sandbox, Snapshot
from agents.node.plan_images import plan_images
from agents.node.planner import plan_cleanup
from agents.node.runtimes import Runtime
from agents.node.sessions import Session
from agents.policy import AgeRule, DiskPressure, ImageRules, NodePolicy
from tests.memory_cri import MemoryCri

NOW = datetime(2026, 6, 1, tzinfo=UTC)
APP, OLD, PAUSE, SIDE = ("sha256:" + c * 64 for c in "abcd")
STORE = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"
RULES = ImageRules(dangling=AgeRule(olderThan=timedelta(0)),
                   unused=AgeRule(olderThan=timedelta(0)),
                   diskPressure=DiskPressure(enabled=False))


def node(tmp_path) -> MemoryCri:
    """A node: APP used by an exited container (by tag), OLD unused (two tags), PAUSE
    pinned, SIDE the (unpinned) image a sandbox runs; the image store under tmp_path."""
    cri = MemoryCri()
    cri.add_image(APP, "kubekeeper.test/app:1")
    cri.add_image(OLD, "kubekeeper.test/old:1", "kubekeeper.test/old:latest", size=300)
    cri.add_image(PAUSE, "registry.k8s.io/pause:3.10", pinned=True)
    cri.add_image(SIDE, "kubekeeper.test/sandbox:1")
    cri.add_container("c1", "kubekeeper.test/app:1", "exited", NOW - timedelta(days=3),
                      io__kubernetes__pod__name="web", io__kubernetes__pod__namespace="shop",
                      io__kubernetes__container__name="server")
    cri.add_sandbox("s1", "kubekeeper.test/sandbox:1")
    cri.add_sandbox("s2", None)
    (tmp_path / STORE.lstrip("/")).mkdir(parents=True)
    cri.filesystems.append(FilesystemUse(STORE, None, None))
    return cri


def snapshot(cri: MemoryCri, tmp_path) -> Snapshot:
    """The CRI snapshot as a node record that has watched it for 30 days annotates it."""
    snap = cri_inventory.take(cri, HostPaths(str(tmp_path)))
    record = state.observe(state.NodeState(since=NOW), snap, NOW - timedelta(days=30))
    return state.annotate(snap, record)


def planned_removal(snap: Snapshot, image_id: str) -> Action:
    (action,) = [a for a in plan_images(snap, RULES, snap.containers, NOW) if a.id == image_id]
    return action


def test_take_reads_pinned_images_resolved_users_sandboxes_and_the_image_fs(tmp_path):
    snap = cri_inventory.take(node(tmp_path), HostPaths(str(tmp_path)))

    assert {i.id: i.pinned for i in snap.images} == {APP: False, OLD: False, PAUSE: True,
                                                      SIDE: False}
    assert snap.image(OLD).tags == ("kubekeeper.test/old:1", "kubekeeper.test/old:latest")
    (container,) = snap.containers
    assert (container.name, container.state, container.image_id) == (
        "shop/web/server", "exited", APP)
    assert snap.sandboxes == (Sandbox("s1", "web", "default", "ready", SIDE),
                              Sandbox("s2", "web", "default", "ready", ""))
    assert snap.volumes == ()
    assert snap.disk.host_path == STORE
    fs = os.statvfs(tmp_path / STORE.lstrip("/"))  # available moves as other tests write
    assert snap.disk.capacity == fs.f_blocks * fs.f_frsize and snap.disk.available > 0


def test_the_sandboxes_images_are_asked_in_one_look(tmp_path):
    """A status call per sandbox, in turn, cost a round trip each: 20 ms at 20 pods."""
    cri = node(tmp_path)
    cri.sandbox_list.append(CriSandbox("s3", "old", "default", "u", 0, "notready", None))

    snap = cri_inventory.take(cri, HostPaths(str(tmp_path)))
    assert [(s.id, s.image_id) for s in snap.sandboxes] == [("s1", SIDE), ("s2", ""),
                                                            ("s3", "")]
    assert cri.sandbox_looks == 1


def test_the_record_sees_sandbox_images_in_use(tmp_path):
    snap = cri_inventory.take(node(tmp_path), HostPaths(str(tmp_path)))
    record = state.observe(state.NodeState(since=NOW), snap, NOW)
    assert set(record.image_use) == {APP, SIDE}


def test_pinned_sandbox_and_used_images_are_never_planned_the_unused_one_is(tmp_path):
    snap = snapshot(node(tmp_path), tmp_path)
    actions = plan_images(snap, RULES, snap.containers, NOW)
    assert [a.id for a in actions if a.mutates] == [OLD]


def test_a_pinned_image_stays_even_with_protect_sandbox_images_off():
    pinned = Image(PAUSE, None, 1, tags=("my/pause:1",), pinned=True, first_seen=NOW)
    rules = ImageRules(unused=AgeRule(olderThan=timedelta(0)), protectSandboxImages=False,
                       diskPressure=DiskPressure(enabled=False))
    assert plan_images(Snapshot("/", images=(pinned,)), rules, (), NOW) == []


def test_on_the_cri_containers_and_volumes_are_left_alone_and_said_so_once(tmp_path):
    session = Session(Runtime("containerd", "cri", "unix:///x"), node(tmp_path))
    snap = snapshot(session.port, tmp_path)
    policy = NodePolicy()

    plan = plan_cleanup(snap, session.rules(policy), NOW)
    assert not [a for a in plan if a.kind in ("container", "volume")]
    notes = session.notes(policy)
    assert [(n.kind, n.rule) for n in notes] == [("runtime", "containers"),
                                                 ("runtime", "volumes")]
    assert "kubelet" in notes[0].why and "no volumes" in notes[1].why


def test_removal_takes_every_tag_and_the_line_says_which(tmp_path):
    cri = node(tmp_path)
    action = planned_removal(snapshot(cri, tmp_path), OLD)

    outcome = cri_mutations.carry_out_all([action], cri)[0]
    assert (outcome.result, outcome.bytes) == (Result.DONE, 300)
    assert outcome.details["removed"] == ["kubekeeper.test/old:1", "kubekeeper.test/old:latest"]
    assert cri.removed == [OLD]
    again = cri_mutations.carry_out_all([action], cri)[0]
    assert (again.result, again.bytes, again.details["note"]) == (Result.DONE, 0, "already gone")


@dataclass
class CountingCri(MemoryCri):
    """Counts the calls a removal makes: each is a round trip to the runtime."""

    calls: list[str] = field(default_factory=list)

    def images(self):
        self.calls.append("images")
        return super().images()

    def inspect_image(self, image_id: str):
        self.calls.append("inspect_image")
        return super().inspect_image(image_id)

    def containers(self):
        self.calls.append("containers")
        return super().containers()


def test_a_batch_of_removals_is_checked_on_one_look(tmp_path):
    """One image and one container listing check every removal of a batch: at 440 removals
    that is 2 calls where one status and one listing each were 880."""
    cri = node(tmp_path)
    extra = "sha256:" + "e" * 64
    cri.add_image(extra, "kubekeeper.test/extra:1")
    counting = CountingCri(image_list=cri.image_list, container_list=cri.container_list,
                           sandbox_list=cri.sandbox_list, filesystems=cri.filesystems)
    snap = snapshot(counting, tmp_path)
    actions = [planned_removal(snap, OLD), planned_removal(snap, extra)]
    counting.calls = []

    outcomes = cri_mutations.carry_out_all(actions, counting)
    assert [o.result for o in outcomes] == [Result.DONE, Result.DONE]
    assert counting.calls == ["images", "containers"]
    assert counting.removed == [OLD, extra]


def test_an_image_put_in_use_after_planning_is_skipped_with_every_tag(tmp_path):
    cri = node(tmp_path)
    action = planned_removal(snapshot(cri, tmp_path), OLD)
    cri.add_container("late", "kubekeeper.test/old:latest")

    outcome = cri_mutations.carry_out_all([action], cri)[0]
    assert outcome.result is Result.SKIPPED and outcome.error == (
        "conflict: in use by container late (checked before removing: nothing was changed)")
    assert cri.removed == []
    assert list(cri.inspect_image(OLD).tags) == action.details["tags"]


def test_a_protect_glob_written_for_docker_matches_the_cris_full_docker_hub_name():
    hub = Image(OLD, None, 1, tags=("docker.io/team/tool:1",), first_seen=NOW)
    library = Image(APP, None, 1, tags=("docker.io/library/nginx:1",), first_seen=NOW)
    rules = ImageRules(unused=AgeRule(olderThan=timedelta(0)), protect=("team/*", "nginx:*"),
                       diskPressure=DiskPressure(enabled=False))
    assert plan_images(Snapshot("/", images=(hub, library)), rules, (), NOW) == []


def test_removals_in_flight_are_the_cri_setting_on_the_cri_and_docker_s_on_docker(tmp_path):
    """containerd's overlapping removals share a garbage collection; Docker's queue on a lock."""
    policy = replace(NodePolicy(), parallelism=3, criParallelism=100)
    port = node(tmp_path)
    cri = Session(Runtime("containerd", "cri", "unix:///x"), port)
    docker = Session(Runtime("docker", "docker", "unix:///d"), port)  # the port is not asked
    assert (cri.parallelism(policy), docker.parallelism(policy)) == (100, 3)
    assert NodePolicy().criParallelism == 256
