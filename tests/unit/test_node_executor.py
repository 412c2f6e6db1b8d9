"""The executor against the in-memory Docker port: order, outcomes, cap, stop, Docker lost."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.actions import Action, Verb
from agents.node import inventory
from agents.node.docker_port import DockerError
from agents.node.executor import Execution, execute, extra_references, repository, waves
from agents.node.host_paths import HostPaths
from agents.node.memory_port import MemoryDocker
from agents.node.planner import details_needed, plan_cleanup
from agents.policy import NodePolicy
from agents.policy_loader import parse_policy
from agents.report import Reporter
from tests import report_lines

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


def plan(docker: MemoryDocker) -> list[Action]:
    policy = node_policy()
    snap = inventory.take(docker, HostPaths("/"))
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
    assert "being used" in by_id["sha256:web"]["error"]
    assert by_id["sha256:base"]["result"] == "skipped"  # its child web is still there
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
