"""The executor against the in-memory Docker port: order, outcomes, cap, stop, Docker lost."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node import inventory, state
from agents.node.docker_port import Conflict, DockerError, Gone, Timeout
from agents.node.executor import Execution, execute, waves
from agents.node.host_paths import HostPaths
from agents.node.mutations import extra_references, repository
from agents.node.planner import details_needed, plan_cleanup
from agents.node.state import NodeState
from agents.policy import NodePolicy
from agents.policy_loader import parse_policy
from agents.report import Reporter
from tests import report_lines
from tests.fake_docker import MemoryDocker

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=30)
ANON = "f" * 64


def node_policy() -> NodePolicy:
    text = ("apiVersion: kubekeeper/v1\nnode:\n  containers: {olderThan: 1h}\n"
            "  images: {dangling: {olderThan: 1h}, unused: {olderThan: 1d}, "
            "diskPressure: {enabled: false}}\n  volumes: {olderThan: 1h}\n")
    return parse_policy(text).node


def engine() -> MemoryDocker:
    """A node: a chain of images, one in use; stopped containers; volumes."""
    docker = MemoryDocker()
    docker.add_image("sha256:base", tags=["base:1"], created=OLD, size=100)
    docker.add_image("sha256:mid", parent="sha256:base", created=OLD, size=150)
    docker.add_image("sha256:app", parent="sha256:mid", tags=["app:1", "app:latest"],
                     created=OLD, size=200)
    docker.add_image("sha256:web", parent="sha256:base", tags=["web:1", "mirror/web:1"],
                     created=OLD, size=120)
    docker.add_image("sha256:live", tags=["live:1"], created=OLD, size=10)
    docker.add_container("running", state="running", image="sha256:live", created=OLD)
    docker.add_container("old-app", image="sha256:app", created=OLD,
                         finished=OLD + timedelta(hours=1), volumes=[ANON])
    docker.add_container("old-web", image="sha256:web", created=OLD,
                         finished=OLD + timedelta(hours=1))
    docker.add_volume(ANON, created=OLD)
    docker.add_volume("e" * 64, created=OLD)
    docker.add_volume("named-data", created=OLD)
    return docker


def run(docker: MemoryDocker, actions: list[Action], dry_run: bool = False, cap: int = 100,
        stop: threading.Event | None = None) -> tuple[list[dict], str | None]:
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run, node="n1", stream=out)
    execution = Execution(docker, reporter, HostPaths("/"), "/var/lib/docker", 3,
                          stop or threading.Event())
    _, aborted = execute(actions, execution, dry_run, cap)
    reporter.summary(aborted=aborted, error=None)
    return _without_intents(out.getvalue()), aborted


def installed(snap: inventory.Snapshot, at: datetime = OLD) -> inventory.Snapshot:
    """The snapshot as a node that has run kubekeeper since ``at`` sees it."""
    return state.annotate(snap, state.observe(NodeState(since=at, found=False), snap, at))


def plan(docker: MemoryDocker) -> list[Action]:
    policy = node_policy()
    snap = installed(inventory.take(docker, HostPaths("/")))
    snap = inventory.with_details(docker, snap, *details_needed(snap, policy, NOW))
    return plan_cleanup(snap, policy, NOW)


def test_a_real_run_removes_the_plan_children_first_and_keeps_what_is_used():
    docker = engine()
    actions = plan(docker)
    lines, _ = run(docker, actions)
    assert set(docker.containers_by_id) == {"running"}
    assert set(docker.images_by_id) == {"sha256:live"}
    assert set(docker.volumes_by_name) == {"named-data"}
    removed = [target for call, target in docker.calls if call == "remove_image"]
    assert removed.index("sha256:app") < removed.index("sha256:mid") < removed.index("sha256:base")
    assert removed.index("sha256:web") < removed.index("sha256:base")
    # Two tags in two repositories: the extra references are untagged first.
    assert ("untag_image", "app:latest") in docker.calls
    assert ("untag_image", "mirror/web:1") in docker.calls
    assert {line["result"] for line in lines[:-1]} == {"done"}
    summary = lines[-1]
    assert summary["actions"] == len(actions) == len(lines) - 1
    assert summary["bytes_reclaimed"] == 100 + 50 + 50 + 20


def test_a_dry_run_changes_nothing_and_reports_the_same_plan():
    docker = engine()
    actions = plan(docker)
    before = (dict(docker.containers_by_id), dict(docker.images_by_id),
              dict(docker.volumes_by_name))
    lines, _ = run(docker, actions, dry_run=True)
    assert docker.calls == []
    assert before == (docker.containers_by_id, docker.images_by_id, docker.volumes_by_name)
    assert [(line["kind"], line["id"], line["result"]) for line in lines[:-1]] == \
        [(a.kind, a.id, "planned") for a in actions]


def test_over_the_cap_nothing_is_touched_and_every_action_is_reported_skipped():
    docker = engine()
    actions = plan(docker)
    lines, aborted = run(docker, actions, cap=2)
    assert docker.calls == []
    assert aborted and "maxDeletionsPerRun=2" in aborted
    assert {line["result"] for line in lines[:-1]} == {"skipped"}
    assert lines[-1]["aborted"] == aborted and lines[-1]["actions"] == len(actions)


def test_conflict_is_skipped_gone_is_done_and_a_failure_does_not_stop_the_rest():
    docker = engine()
    actions = plan(docker)
    docker.add_container("late", state="running", image="sha256:web", created=NOW)
    del docker.volumes_by_name["e" * 64]
    docker.failures[("remove_container", "old-web")] = DockerError("disk I/O error")
    lines, _ = run(docker, actions)
    by_id = {line["id"]: line for line in lines[:-1]}
    assert by_id["sha256:web"]["result"] == "skipped"
    assert "in use by container late" in by_id["sha256:web"]["error"]
    assert docker.images_by_id["sha256:web"]["RepoTags"] == ["web:1", "mirror/web:1"]
    assert by_id["sha256:base"]["result"] == "skipped"  # its child web is still there
    assert "an image built on it stayed" in by_id["sha256:base"]["error"]
    assert ("remove_image", "sha256:base") not in docker.calls
    assert by_id["e" * 64]["result"] == "done" and by_id["e" * 64]["note"] == "already gone"
    assert by_id["old-web"]["result"] == "failed" and by_id["old-web"]["error"] == "disk I/O error"
    assert by_id["sha256:app"]["result"] == "done"
    assert lines[-1]["errors"] == 1
    assert "sha256:web" in docker.images_by_id


def test_when_docker_goes_away_the_rest_fail_at_once_and_the_summary_is_written():
    docker = engine()
    actions = plan(docker)
    docker.down = True
    lines, _ = run(docker, actions)
    assert [line["result"] for line in lines[:-1]] == ["failed"] * len(actions)
    assert all("unreachable" in line["error"] for line in lines[:-1])
    assert lines[-1]["event"] == "run.summary" and lines[-1]["errors"] == len(actions)


def test_stop_skips_what_has_not_started():
    docker = engine()
    actions = plan(docker)
    stop = threading.Event()
    stop.set()
    lines, _ = run(docker, actions, stop=stop)
    assert docker.calls == []
    assert {line["result"] for line in lines[:-1]} == {"skipped"}
    assert lines[-1]["errors"] == 0


def test_volumes_go_only_by_the_volume_rules_even_when_their_container_goes():
    docker = MemoryDocker()
    young = "7" * 64
    docker.add_volume(young, created=NOW)
    docker.add_container("holder", created=OLD, finished=OLD, volumes=[young])
    lines, _ = run(docker, plan(docker))
    assert docker.containers_by_id == {} and set(docker.volumes_by_name) == {young}
    assert [(line["kind"], line["id"]) for line in lines[:-1]] == [("container", "holder")]


def test_a_protected_anonymous_volume_survives_the_removal_of_its_container():
    docker = MemoryDocker()
    kept, loose = "9" * 64, "8" * 64
    docker.add_volume(kept, created=OLD, labels={"kubekeeper.keep": "true"})
    docker.add_volume(loose, created=OLD)
    docker.add_container("holder", created=OLD, finished=OLD, volumes=[kept, loose])
    lines, _ = run(docker, plan(docker))
    assert docker.containers_by_id == {}
    assert set(docker.volumes_by_name) == {kept}
    # Removed without -v; the unprotected volume then went by the volume rule.
    assert [(line["kind"], line["id"]) for line in lines[:-1]] == \
        [("container", "holder"), ("volume", loose)]


def image_removal(docker: MemoryDocker) -> list[Action]:
    docker.add_image("sha256:x", tags=["app:1", "app:2", "mirror/app:1"], created=OLD)
    return [a for a in plan(docker) if a.id == "sha256:x"]


def test_a_conflict_after_untagging_puts_every_tag_back():
    docker = MemoryDocker()
    actions = image_removal(docker)
    docker.failures[("remove_image", "sha256:x")] = Conflict("a container started meanwhile")
    lines, _ = run(docker, actions)
    [line] = lines[:-1]
    assert sorted(docker.images_by_id["sha256:x"]["RepoTags"]) == [
        "app:1", "app:2", "mirror/app:1"]
    assert line["result"] == "skipped" and "started meanwhile" in line["error"]
    assert sorted(line["tags_restored"]) == ["app:2", "mirror/app:1"]
    assert line["tags_lost"] == []


def test_a_404_on_untag_is_not_taken_for_the_image_being_gone():
    docker = MemoryDocker()
    actions = image_removal(docker)
    docker.failures[("untag_image", "app:2")] = Gone("No such image: app:2")
    docker.failures[("remove_image", "sha256:x")] = Conflict("in use")
    lines, _ = run(docker, actions)
    [line] = lines[:-1]
    assert line["result"] == "skipped", "the image is still there"
    assert "sha256:x" in docker.images_by_id


def test_a_404_on_removal_is_done_only_once_an_inspect_confirms_it():
    docker = MemoryDocker()
    actions = image_removal(docker)
    docker.failures[("remove_image", "sha256:x")] = Gone("No such image")
    lines, _ = run(docker, actions)
    [line] = lines[:-1]
    assert line["result"] == "failed" and "still there" in line["error"]


def test_a_removal_that_timed_out_is_checked_before_it_is_reported():
    docker = MemoryDocker()
    docker.add_container("c1", created=OLD, finished=OLD)
    docker.add_container("c2", created=OLD, finished=OLD)
    docker.add_container("c3", created=OLD, finished=OLD)
    actions = [a for a in plan(docker) if a.kind == "container"]
    docker.failures[("remove_container", "c1")] = Timeout("no answer in time")
    real_remove = docker.remove_container
    first_try = {"c3"}

    def removed_late(cid: str) -> None:  # Docker carried it out after the client gave up
        if cid == "c2":
            del docker.containers_by_id[cid]
            raise Timeout("no answer in time")
        if cid in first_try:  # still queued in a paused daemon: the inspect sees it there
            first_try.discard(cid)
            raise Timeout("no answer in time")
        real_remove(cid)
    docker.remove_container = removed_late
    lines, _ = run(docker, actions)
    by_id = {line["id"]: line for line in lines[:-1]}
    assert by_id["c1"]["result"] == "failed"
    assert by_id["c1"]["error"].endswith("Docker may still remove it when it catches up")
    assert by_id["c2"]["result"] == "done" and "checked: gone" in by_id["c2"]["note"]
    assert by_id["c3"]["result"] == "done" and "removed when sent again" in by_id["c3"]["note"]
    assert set(docker.containers_by_id) == {"c1"}


def test_every_change_has_its_intent_line_written_before_it():
    docker = engine()
    actions = plan(docker)
    out = io.StringIO()
    written_before: list[int] = []
    real = docker.remove_container

    def remove(cid: str) -> None:
        written_before.append(out.getvalue().count('"action.intent"'))
        real(cid)
    docker.remove_container = remove
    reporter = Reporter("node", "cleanup", False, stream=out)
    execute(actions, Execution(docker, reporter, HostPaths("/"), "/var/lib/docker", 1),
            False, 100)
    lines = report_lines.parse(out.getvalue())
    assert written_before == [1, 2], "each removal came after its own intent line"
    assert len(report_lines.intents(lines)) == len(report_lines.outcomes(lines))


def action(kind: str, ident: str, parent: str | None = None) -> Action:
    return Action(kind, ident, Verb.DELETE, "r", "w", id=ident,
                  details=MappingProxyType({"parent": parent}))


def test_waves_put_containers_first_then_images_by_level_with_volumes_alongside():
    plan_ = [action("image", "base"), action("image", "mid", "base"),
             action("image", "top", "mid"), action("image", "side", "base"),
             action("volume", "v"), action("container", "c")]
    assert [[a.id for a in wave] for wave in waves(plan_)] == \
        [["c"], ["top", "side", "v"], ["mid"], ["base"]]


def test_references_untagged_before_removal_by_id():
    assert repository("registry:5000/team/app:1") == "registry:5000/team/app"
    assert repository("team/app@sha256:abc") == "team/app"
    assert repository("registry:5000/app") == "registry:5000/app"
    assert extra_references(["a:1"], ["a@sha256:1"]) == []
    assert extra_references(["a:1", "a:2"], ["a@sha256:1", "b@sha256:2"]) == \
        ["a:2", "b@sha256:2"]
    assert extra_references([], ["a@sha256:1", "b@sha256:2"]) == ["b@sha256:2"]


def _without_intents(text: str) -> list[dict]:
    lines = report_lines.parse(text)
    return report_lines.outcomes(lines) + report_lines.summaries(lines)
