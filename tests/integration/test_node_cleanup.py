"""The node agent's cleanup against the private Docker engine.

One node state holds containers in every state Docker lets a test create
(created, exited, running, paused, restarting; "dead" is covered by the unit
tests), kubelet-labelled containers of live and dead pods over several
attempts with their sandboxes, images sharing layers, a parent chain, a
dangling image, a re-tagged one, protected and sandbox images, and anonymous,
named and in-use volumes.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
from docker.types import Mount

from agents.cli import main
from agents.node import inventory
from agents.node import state as node_state
from agents.node.docker_port import EnginePort
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.planner import details_needed, plan_cleanup
from agents.node.state import NodeState
from agents.policy_loader import parse_policy
from agents.report import Reporter
from scripts.localenv import testimages as ti
from tests.node_runs import (
    actions,
    changes,
    policy_text,
    removed,
    run_once,
    state,
    summaries,
    watched_since_built,
    write_policy,
)

KUBE = "io.kubernetes"


def pod_container(client: docker.DockerClient, image: str, uid: str, container: str,
                  attempt: int, run: bool = False) -> str:
    """A container as the kubelet makes it (dockershim, cri-dockerd): its name and labels."""
    labels = {f"{KUBE}.pod.uid": uid, f"{KUBE}.pod.name": f"pod-{uid}",
              f"{KUBE}.pod.namespace": "shop", f"{KUBE}.container.name": container,
              f"{KUBE}.docker.type": "podsandbox" if container == "POD" else "container"}
    name = f"k8s_{container}_pod-{uid}_shop_{uid}_{attempt}"
    return (running if run else exited)(client, image, name, labels)


def exited(client: docker.DockerClient, image: str, name: str,
           labels: dict[str, str] | None = None, **kwargs: Any) -> str:
    container = client.containers.run(image, ["true"], name=name, labels=labels or {},
                                      network_mode="none", detach=True, **kwargs)
    container.wait(timeout=60)
    return container.id


def running(client: docker.DockerClient, image: str, name: str,
            labels: dict[str, str] | None = None, **kwargs: Any) -> str:
    return client.containers.run(image, ["sleep", "86400"], name=name, labels=labels or {},
                                 network_mode="none", detach=True, **kwargs).id


def build_node(client: docker.DockerClient) -> dict[str, str]:
    """The node state; returns ids by a readable key."""
    ids: dict[str, str] = {}
    base = ti.base_image(client).id
    ids["base"] = base
    chain = ti.image_chain(client, "chain", 3)
    ids.update({f"chain{n}": image.id for n, image in enumerate(chain, 1)})
    ti.retag(chain[2], "mirror/chain:3")
    siblings = ti.sibling_images(client, "sib", 2)
    ids["sib-common"] = client.images.get("sib:common").id
    ids["sib0"], ids["sib1"] = siblings[0].id, siblings[1].id
    ids["dangling"] = ti.dangling_image(client, "rebuilt:1")
    ids["rebuilt"] = client.images.get("rebuilt:1").id
    ids["kept-image"] = ti.layered_image(client, "kept:1", "kept",
                                         labels={"kubekeeper.keep": "true"}).id
    ids["protected-image"] = ti.layered_image(client, "team/base:1", "team").id
    ids["pause"] = ti.layered_image(client, "registry.k8s.io/pause:3.9", "pause").id
    ids["sandbox-image"] = ti.layered_image(client, "my/sandbox:1", "sandbox").id

    # Containers outside Kubernetes.
    anon_mount = [Mount("/data", None, type="volume")]
    ids["exited"] = exited(client, base, "plain-exited", mounts=anon_mount)
    ids["created"] = client.containers.create(base, ["true"], name="never-started",
                                              network_mode="none").id
    ids["running"] = running(client, "sib:0", "runner",
                             volumes={"in-use-data": {"bind": "/data", "mode": "rw"}})
    paused = client.containers.get(running(client, base, "paused-one"))
    paused.pause()
    ids["paused"] = paused.id
    ids["restarting"] = client.containers.run(
        base, ["sh", "-c", "exit 1"], name="crashing", restart_policy={"Name": "always"},
        network_mode="none", detach=True).id
    ids["keep-labelled"] = exited(client, base, "precious", {"kubekeeper.keep": "true"})
    ids["protected-name"] = exited(client, base, "backup-1")
    ids["protected-label"] = exited(client, base, "database", {"tier": "db"})

    # A live pod (running sandbox and app) with earlier attempts, and a dead pod.
    for attempt in range(3):
        ids[f"live-sandbox-{attempt}"] = pod_container(client, "my/sandbox:1", "live", "POD",
                                                       attempt, run=attempt == 2)
    for attempt in range(4):
        ids[f"live-app-{attempt}"] = pod_container(client, "chain:1", "live", "app", attempt,
                                                   run=attempt == 3)
    for attempt in range(2):
        ids[f"dead-sandbox-{attempt}"] = pod_container(client, "my/sandbox:1", "dead", "POD",
                                                       attempt)
        ids[f"dead-app-{attempt}"] = pod_container(client, "sib:1", "dead", "app", attempt)

    # Volumes: dangling anonymous, named, protected named, labelled-keep anonymous.
    ids["anon-volume"] = client.volumes.create().name
    ids["kept-anon-volume"] = client.volumes.create(labels={"kubekeeper.keep": "true"}).name
    client.volumes.create(name="old-data")
    client.volumes.create(name="keep-cache")
    ids["exited-anon-volume"] = client.api.inspect_container(ids["exited"])["Mounts"][0]["Name"]
    return ids


def expected_removals(ids: dict[str, str]) -> set[tuple[str, str]]:
    containers = ["exited", "created", "live-app-0", "live-app-1", "dead-sandbox-0",
                  "dead-app-0"]
    images = ["chain3", "chain2", "dangling", "rebuilt"]
    return ({("container", ids[k]) for k in containers}
            | {("image", ids[k]) for k in images}
            | {("volume", ids["anon-volume"]), ("volume", ids["exited-anon-volume"])})


def test_dry_run_changes_nothing_and_the_real_run_removes_exactly_that_plan(
        docker_client, clean_docker, tmp_path, capsys):
    ids = build_node(docker_client)
    before = state(docker_client)

    dry_code, dry = run_once(capsys, clean_docker.base_url,
                             write_policy(tmp_path, policy_text(dry_run=True)), "--job", "cleanup")
    assert dry_code == 0
    assert state(docker_client) == before
    planned = {(line["kind"], line["id"]) for line in changes(dry)}
    assert {line["result"] for line in changes(dry)} == {"planned"}
    assert all(line["dry_run"] for line in dry)

    code, real = run_once(capsys, clean_docker.base_url,
                          write_policy(tmp_path, policy_text(dry_run=False)), "--job", "cleanup")
    assert code == 0, real
    assert {(line["kind"], line["id"]) for line in changes(real)} == planned
    assert {line["result"] for line in changes(real)} == {"done"}
    gone = removed(before, state(docker_client))
    assert gone == planned == expected_removals(ids)
    [summary] = summaries(real)
    assert summary["actions"] == len(changes(real)) and summary["errors"] == 0
    assert summary["counts"]["container"] == {"done": 6}


def test_what_must_stay_stays_and_reasons_name_their_rule(
        docker_client, clean_docker, tmp_path, capsys):
    ids = build_node(docker_client)
    code, lines = run_once(capsys, clean_docker.base_url,
                           write_policy(tmp_path, policy_text()), "--job", "cleanup")
    assert code == 0
    after = state(docker_client)
    for key in ["running", "paused", "restarting", "keep-labelled", "protected-name",
                "protected-label", "live-sandbox-0", "live-sandbox-1", "live-sandbox-2",
                "live-app-2", "live-app-3", "dead-sandbox-1", "dead-app-1"]:
        assert ids[key] in after["container"], key
    for key in ["base", "chain1", "sib-common", "sib0", "sib1", "kept-image",
                "protected-image", "pause", "sandbox-image"]:
        assert ids[key] in after["image"], key
    assert {"in-use-data", "old-data", "keep-cache", ids["kept-anon-volume"]} <= after["volume"]
    by_id = {line["id"]: line for line in changes(lines)}
    assert by_id[ids["chain3"]]["reason"].startswith("images.unused: unused")
    assert by_id[ids["dangling"]]["reason"].startswith("images.dangling: untagged")
    assert by_id[ids["live-app-0"]]["namespace"] == "shop"
    assert "volumes" not in by_id[ids["exited"]], "containers go without -v"
    assert by_id[ids["exited-anon-volume"]]["reason"].startswith("volumes: anonymous")
    assert by_id[ids["anon-volume"]]["reason"].startswith("volumes: anonymous")
    assert by_id[ids["chain3"]]["bytes"] > 0


def test_nothing_is_old_enough_with_an_hour_threshold(docker_client, clean_docker, tmp_path,
                                                      capsys):
    build_node(docker_client)
    before = state(docker_client)
    code, lines = run_once(capsys, clean_docker.base_url,
                           write_policy(tmp_path, policy_text(older_than="1h")), "--job",
                           "cleanup")
    assert code == 0 and changes(lines) == []
    assert state(docker_client) == before


def test_finish_times_are_read_and_aged_from_a_later_now(docker_client, clean_docker):
    """The planner ages from Docker's real timestamps; ``now`` stands in for waiting."""
    base = ti.base_image(docker_client).id
    old = exited(docker_client, base, "finished")
    policy = parse_policy(policy_text(older_than="1h")).node
    port = EnginePort(clean_docker.base_url)
    try:
        snap = inventory.take(port, HostPaths("/"))
        seen = datetime.now(UTC)
        snap = node_state.annotate(snap, node_state.observe(
            NodeState(seen, found=False), snap, seen))
        for now, expected in ((datetime.now(UTC), set()),
                              (datetime.now(UTC) + timedelta(hours=2), {old})):
            detailed = inventory.with_details(port, snap, *details_needed(snap, policy, now))
            planned = {a.id for a in plan_cleanup(detailed, policy, now) if a.kind == "container"}
            assert planned == expected
        assert detailed.disk is not None and detailed.disk.visible
    finally:
        port.close()


def test_the_deletion_cap_aborts_the_whole_run(docker_client, clean_docker, tmp_path, capsys):
    build_node(docker_client)
    before = state(docker_client)
    code, lines = run_once(capsys, clean_docker.base_url,
                           write_policy(tmp_path, policy_text(cap=3)), "--job", "cleanup")
    assert code == 1
    assert state(docker_client) == before
    [summary] = summaries(lines)
    assert "maxDeletionsPerRun=3" in summary["aborted"]
    assert {line["result"] for line in changes(lines)} == {"skipped"}
    assert summary["actions"] == len(actions(lines)) and len(changes(lines)) > 3


def test_an_image_put_in_use_after_planning_is_skipped_not_forced(docker_client, clean_docker):
    chain = ti.image_chain(docker_client, "late", 2)
    other = ti.layered_image(docker_client, "other:1", "other")
    policy = parse_policy(policy_text())
    port = EnginePort(clean_docker.base_url)
    try:
        snap = inventory.take(port, HostPaths("/"))
        snap = inventory.with_details(port, snap, *details_needed(snap, policy.node,
                                                                   datetime.now(UTC)))
        plan = plan_cleanup(snap, policy.node, datetime.now(UTC))
        assert {chain[1].id, chain[0].id, other.id} <= {a.id for a in plan}
        ti.idle_container(docker_client, "late:2", name="latecomer")
        outcomes = _execute(port, plan, policy.maxDeletionsPerRun)
    finally:
        port.close()
    results = {o.action.id: o for o in outcomes}
    assert results[chain[1].id].result == "skipped"
    assert "conflict" in results[chain[1].id].error
    assert results[chain[0].id].result == "skipped"  # its child is still there
    assert results[other.id].result == "done"
    assert docker_client.images.get("late:2").id == chain[1].id
    assert docker_client.images.get("late:1").id == chain[0].id


def _execute(port: EnginePort, plan, cap: int):
    reporter = Reporter("node", "cleanup", False, stream=io.StringIO())
    run = Execution(port, reporter, HostPaths("/"), "/var/lib/docker", 4, threading.Event())
    outcomes, aborted = execute(plan, run, dry_run=False, cap=cap)
    assert aborted is None
    return outcomes


def test_disk_pressure_evicts_unused_images_least_recently_used_first(
        docker_client, clean_docker, tmp_path, capsys):
    first = ti.layered_image(docker_client, "lru:first", "1")
    second = ti.layered_image(docker_client, "lru:second", "2")
    third = ti.layered_image(docker_client, "lru:third", "3")
    ti.retag(first, "lru:first-again")  # tagging counts as use: now the most recent
    ti.idle_container(docker_client, "lru:second", name="user")
    text = policy_text().replace(
        "diskPressure: {enabled: false}",
        "diskPressure: {enabled: true, highPercent: 0.001, lowPercent: 0, minAge: 0s}")
    text = text.replace("unused: {olderThan: 0s}", "unused: {enabled: false}")
    code, lines = run_once(capsys, clean_docker.base_url, write_policy(tmp_path, text),
                           "--job", "cleanup", command="plan",
                           state_dir=watched_since_built(tmp_path / "state", docker_client))
    assert code == 0
    evicted = [line["id"] for line in changes(lines) if line["kind"] == "image"]
    assert evicted[:2] == [third.id, first.id]
    assert second.id not in evicted
    assert all(line["reason"].startswith("images.diskPressure: disk ")
               for line in changes(lines) if line["kind"] == "image")
    [disk] = [line for line in actions(lines) if line["kind"] == "disk"]
    assert disk["capacity"] > 0 and "% full (" in disk["reason"]


def test_plan_prints_a_table_on_request_and_never_mutates(docker_client, clean_docker, tmp_path,
                                                          capsys):
    build_node(docker_client)
    before = state(docker_client)
    capsys.readouterr()
    code = main(["node", "plan", "--policy", str(write_policy(tmp_path, policy_text())),
                 "--docker-host", clean_docker.base_url, "--log-format", "text",
                 "--job", "cleanup"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[1].split() == ["ACTION", "KIND", "NAME", "BYTES", "REASON"]
    assert "delete  image" in out and "would be reclaimed" in out
    assert state(docker_client) == before
