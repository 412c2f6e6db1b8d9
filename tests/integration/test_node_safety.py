"""The node agent's safety holes, each closed and proved against a real Docker engine.

Each test names the hole it closes: an image pulled a minute ago that looks old, a disk
measured unlike the kubelet, tags lost on a conflict, volumes taken along against the
volume rules, a 404 mistaken for a removal, a plan that differs from its dry run, and
truncations outside the deletion cap.
"""

from __future__ import annotations

import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.actions import Action
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
from tests import report_lines
from tests.node_runs import (
    actions,
    changes,
    policy_text,
    run_once,
    state,
    summaries,
    watched_since_built,
    write_policy,
)

LONG_AGO = datetime(2020, 1, 2, tzinfo=UTC)


def test_an_image_pulled_a_minute_ago_is_young_whatever_its_build_date(
        docker_client, clean_docker, tmp_path, capsys):
    pulled = ti.pulled_image(docker_client, "pulled/app:1", LONG_AGO)
    assert docker_client.api.inspect_image(pulled.id)["Metadata"]["LastTagTime"].startswith(
        "0001-"), "a loaded image, like a pulled one, has no LastTagTime"
    policy = write_policy(tmp_path, policy_text(older_than="7d"))

    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "cleanup")
    assert code == 0 and pulled.id in state(docker_client)["image"]
    [record] = [x for x in actions(lines) if x["kind"] == "state"]
    assert "first run on this node" in record["reason"]
    assert "nothing is removed for age" in record["reason"]

    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "cleanup")
    assert [x for x in actions(lines) if x["kind"] == "state"] == [], "the record was kept"
    assert pulled.id in state(docker_client)["image"]

    watched_since_built(tmp_path / "state", docker_client, ago=timedelta(days=8))
    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "cleanup")
    assert pulled.id not in state(docker_client)["image"]
    [line] = [x for x in changes(lines) if x["id"] == pulled.id]
    assert line["reason"] == "images.unused: unused for 8d (olderThan 7d)"


def test_disk_pressure_never_evicts_an_image_first_seen_under_its_min_age(
        docker_client, clean_docker, tmp_path, capsys):
    pulled = ti.pulled_image(docker_client, "pulled/app:1", LONG_AGO)
    text = policy_text().replace(
        "diskPressure: {enabled: false}",
        "diskPressure: {enabled: true, highPercent: 0.001, lowPercent: 0, minAge: 2m}")
    text = text.replace("unused: {olderThan: 0s}", "unused: {enabled: false}")
    policy = write_policy(tmp_path, text)
    run_once(capsys, clean_docker.base_url, policy, "--job", "cleanup")
    assert pulled.id in state(docker_client)["image"]
    watched_since_built(tmp_path / "state", docker_client, ago=timedelta(minutes=3))
    run_once(capsys, clean_docker.base_url, policy, "--job", "cleanup")
    assert pulled.id not in state(docker_client)["image"]


def test_disk_usage_is_the_kubelets_measure_on_a_real_ext4(tmp_path):
    """On ext4, 5% is reserved for root: used/total reads low, (capacity-available)/capacity
    is what the kubelet and the admin's `df` avail column go by."""
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["truncate", "-s", "400M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        with open(mount / "fill", "wb") as handle:
            handle.write(b"\0" * 280 * 2**20)
        df = subprocess.run(["df", "-B1", "--output=size,avail", str(mount)], check=True,
                            capture_output=True, text=True).stdout.split()
        size, avail = int(df[2]), int(df[3])
        disk = inventory.disk_usage(str(mount), HostPaths("/"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert (disk.capacity, disk.available) == (size, avail)
    assert disk.percent == 100 * (size - avail) / size
    used_over_total = 100 * 280 * 2**20 / size
    assert disk.percent > used_over_total + 3, "reserved blocks count as unavailable"


def _plan_now(base_url: str) -> tuple[EnginePort, list[Action]]:
    """Plan as a run does (every object first seen long ago), to execute after a change."""
    port = EnginePort(base_url)
    policy = parse_policy(policy_text()).node
    now = datetime.now(UTC)
    snap = inventory.take(port, HostPaths("/"))
    snap = node_state.annotate(snap, node_state.observe(
        NodeState(now, found=False), snap, now - timedelta(days=30)))
    snap = inventory.with_details(port, snap, *details_needed(snap, policy, now))
    return port, plan_cleanup(snap, policy, now)


def _execute(port: EnginePort, plan: list[Action]) -> dict[str, dict]:
    out = io.StringIO()
    run = Execution(port, Reporter("node", "cleanup", False, stream=out), HostPaths("/"),
                    "/var/lib/docker", 4)
    execute(plan, run, dry_run=False, cap=500)
    port.close()
    return {x["id"]: x for x in report_lines.outcomes(report_lines.parse(out.getvalue()))}


def test_a_conflict_after_untagging_leaves_the_image_every_tag(docker_client, clean_docker):
    parent = ti.layered_image(docker_client, "shared/app:1", "parent")
    ti.retag(parent, "mirror/app:1")
    ti.retag(parent, "shared/app:latest")
    port, plan = _plan_now(clean_docker.base_url)
    assert parent.id in {a.id for a in plan if a.mutates}
    # After planning, someone builds on it: Docker now refuses the removal (a child image),
    # and no container uses it, so only the removal itself can find out.
    child = ti.layered_image(docker_client, "child/app:1", "child", parent="shared/app:1")
    lines = _execute(port, plan)
    assert sorted(docker_client.images.get(parent.id).tags) == [
        "mirror/app:1", "shared/app:1", "shared/app:latest"]
    line = lines[parent.id]
    assert line["result"] == "skipped" and "conflict" in line["error"]
    assert len(line["tags_restored"]) == 2 and line["tags_lost"] == []  # all but the one kept
    assert child.id in state(docker_client)["image"]


def test_a_404_on_untag_is_not_reported_as_the_image_gone(docker_client, clean_docker):
    image = ti.layered_image(docker_client, "racy/app:1", "racy")
    ti.retag(image, "other/app:1")
    port, plan = _plan_now(clean_docker.base_url)
    # Someone takes one reference off between planning and our untag (our untag gets 404),
    # and builds on the image (the removal gets a conflict): the image stays.
    docker_client.api.remove_image("other/app:1")
    ti.layered_image(docker_client, "child/app:1", "child", parent="racy/app:1")
    line = _execute(port, plan)[image.id]
    assert image.id in state(docker_client)["image"]
    assert line["result"] == "skipped" and "conflict" in line["error"]


def test_volumes_stay_when_the_volume_rules_say_so_even_when_their_container_goes(
        docker_client, clean_docker, tmp_path, capsys):
    base = ti.base_image(docker_client).id
    holder = docker_client.containers.create(base, "true", volumes=["/data"])
    anonymous = docker_client.api.inspect_container(holder.id)["Mounts"][0]["Name"]
    text = policy_text().replace("volumes:\n    olderThan: 0s", "volumes:\n    enabled: false")
    code, _ = run_once(capsys, clean_docker.base_url, write_policy(tmp_path, text),
                       "--job", "cleanup")
    assert code == 0
    now = state(docker_client)
    assert holder.id not in now["container"] and anonymous in now["volume"]


def test_each_volume_is_one_counted_deletion(docker_client, clean_docker, tmp_path, capsys):
    base = ti.base_image(docker_client).id
    holder = docker_client.containers.create(base, "true", volumes=["/data"])
    docker_client.images.get(base).tag("kept/base:1")
    text = policy_text(cap=1).replace('protect: ["team/*"]', 'protect: ["kept/*"]')
    code, lines = run_once(capsys, clean_docker.base_url, write_policy(tmp_path, text),
                           "--job", "cleanup")
    assert code == 1, "a container and its volume are two deletions, over a cap of 1"
    assert "2 destructive actions" in summaries(lines)[0]["aborted"]
    assert holder.id in state(docker_client)["container"]


def test_node_plan_is_exactly_what_a_dry_run_reports(docker_client, clean_docker, tmp_path,
                                                     capsys):
    """Plan and dry run agree whenever the world holds still between them.

    The log audit also reads the host's kubelet directories, which the suite's shared
    node writes into as its pods come and go; so a plan is taken on either side of the
    dry run, and only a pair of equal plans makes the comparison (a few tries).
    """
    ti.image_chain(docker_client, "chain", 3)
    ti.log_writer(docker_client, 2048, name="chatty")
    for cap in (500, 1):
        policy = write_policy(tmp_path, policy_text(cap=cap, dry_run=True,
                                                    logs="{maxFileSize: 1Ki}"))
        planned, dry = _plan_around_a_dry_run(capsys, clean_docker.base_url, policy)
        assert _facts(planned) == _facts(dry) and _facts(planned)
        assert [s["aborted"] for s in summaries(planned)] == [
            s["aborted"] for s in summaries(dry)]


def _plan_around_a_dry_run(capsys, docker_host: str, policy: Path,
                           tries: int = 5) -> tuple[list[dict], list[dict]]:
    """A plan and the dry run after it, from a try whose second plan equals the first."""
    for _ in range(tries):
        _, before = run_once(capsys, docker_host, policy, command="plan")
        _, dry = run_once(capsys, docker_host, policy, "--dry-run")
        _, after = run_once(capsys, docker_host, policy, command="plan")
        if _facts(before) == _facts(after):
            return before, dry
    raise AssertionError(f"the node changed under every one of {tries} plan, dry run, plan")


def _facts(lines: list[dict]) -> list[tuple]:
    return sorted((x["task"], x["kind"], x["id"], x["action"], x["result"], x["reason"])
                  for x in actions(lines) if x["kind"] != "state")


def test_truncations_count_against_the_deletion_cap(docker_client, clean_docker, tmp_path,
                                                    capsys):
    writer = ti.log_writer(docker_client, 64 * 1024, name="chatty")
    log_path = Path(docker_client.api.inspect_container(writer.id)["LogPath"])
    size = log_path.stat().st_size
    policy = write_policy(tmp_path, policy_text(
        cap=0, logs="{maxFileSize: 1Ki, action: truncate}"))
    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "logs")
    assert code == 1
    [summary] = summaries(lines)
    assert "maxDeletionsPerRun=0" in summary["aborted"]
    assert log_path.stat().st_size == size
    assert json.dumps(lines).count('"truncate"') >= 1
