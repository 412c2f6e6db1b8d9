"""The log-rotation audit against the private Docker engine: real log files, real settings."""

from __future__ import annotations

import os
from pathlib import Path

from docker.types import LogConfig

from scripts.localenv import testimages as ti
from tests.node_runs import actions, policy_text, run_once, summaries, write_policy

MI = 2**20
LOGS = "{maxFileSize: 1Mi, topN: 2, action: %s}"


def log_path(client, container_id: str) -> Path:
    return Path(client.api.inspect_container(container_id)["LogPath"])


def writer(client, name: str, size: int, config: LogConfig | None = None) -> str:
    """A finished container that wrote ``size`` bytes to stdout with the given logging."""
    container = client.containers.run(
        ti.base_image(client).id, ["sh", "-c", f"yes {'x' * 1023} | head -c {size}"],
        name=name, network_mode="none", detach=True, log_config=config)
    container.wait(timeout=120)
    return container.id


def build(client) -> dict[str, str]:
    return {
        "big": ti.log_writer(client, 3 * MI, name="big-unbounded").id,
        "bounded": writer(client, "small-bounded", 200 * 1024,
                          LogConfig(type="json-file", config={"max-size": "10m"})),
        "local": writer(client, "local-driver", 200 * 1024, LogConfig(type="local")),
        "silent": writer(client, "no-logs", 1024, LogConfig(type="none")),
    }


def test_unbounded_and_oversized_logs_and_the_largest_files_are_reported(
        docker_client, clean_docker, tmp_path, capsys):
    ids = build(docker_client)
    size = log_path(docker_client, ids["big"]).stat().st_size
    policy = write_policy(tmp_path, policy_text(logs=LOGS % "report"))
    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "logs")
    assert code == 0
    found = {(line["name"], line["reason"].split(":")[0]) for line in actions(lines)}
    assert ("big-unbounded", "logs.requireRotation") in found
    assert ("big-unbounded", "logs.maxFileSize") in found
    assert ("small-bounded", "logs.requireRotation") not in found
    assert ("local-driver", "logs.requireRotation") not in found
    assert not any(name == "no-logs" for name, _ in found)
    top = [line for line in actions(lines) if line["reason"].startswith("logs.topN")]
    assert [line["name"] for line in top] == ["big-unbounded", "small-bounded"]
    assert top[0]["size"] == size and top[0]["path"] == str(log_path(docker_client, ids["big"]))
    assert top[0]["top_total"] == size + top[1]["size"]
    assert {line["kind"] for line in actions(lines)} == {"log"}
    assert {line["result"] for line in actions(lines)} == {"done"}
    # No daemon.json on this machine: the daemon's default json-file has no max-size.
    assert any(line["name"] == "dockerd" for line in actions(lines))
    assert log_path(docker_client, ids["big"]).stat().st_size == size
    [summary] = summaries(lines)
    assert summary["actions"] == len(actions(lines)) and summary["task"] == "logs"


def test_truncate_empties_oversized_docker_logs_in_place_and_dry_run_does_not(
        docker_client, clean_docker, tmp_path, capsys):
    ids = build(docker_client)
    big = log_path(docker_client, ids["big"])
    bounded = log_path(docker_client, ids["bounded"])
    size, bounded_size = big.stat().st_size, bounded.stat().st_size

    dry = write_policy(tmp_path, policy_text(dry_run=True, logs=LOGS % "truncate"), "dry.yaml")
    code, lines = run_once(capsys, clean_docker.base_url, dry, "--job", "logs")
    [planned] = [line for line in actions(lines) if line["action"] == "truncate"]
    assert code == 0 and planned["result"] == "planned" and planned["bytes"] == size
    assert big.stat().st_size == size

    real = write_policy(tmp_path, policy_text(logs=LOGS % "truncate"), "real.yaml")
    code, lines = run_once(capsys, clean_docker.base_url, real, "--job", "logs")
    [done] = [line for line in actions(lines) if line["action"] == "truncate"]
    assert code == 0 and done["result"] == "done" and done["id"] == ids["big"]
    assert done["bytes"] == size
    assert big.stat().st_size == 0 and big.exists()
    assert bounded.stat().st_size == bounded_size
    assert summaries(lines)[0]["bytes_reclaimed"] == size
    # Docker still reads the emptied file.
    assert docker_client.containers.get(ids["big"]).logs() == b""


def test_paths_not_visible_under_the_host_root_are_said_plainly(
        docker_client, clean_docker, tmp_path, capsys):
    ti.log_writer(docker_client, 2 * MI, name="big")
    empty_host = tmp_path / "host"
    empty_host.mkdir()
    policy = write_policy(tmp_path, policy_text(logs=LOGS % "truncate"))
    code, lines = run_once(capsys, clean_docker.base_url, policy, "--job", "all",
                           "--host-root", str(empty_host))
    assert code == 0
    root = clean_docker.data_root
    said = {line["reason"] for line in actions(lines)}
    assert any(f"Docker root {root} is not visible here" in r for r in said)
    assert any("daemon default log-opts unknown" in r for r in said)
    assert not any(line["action"] == "truncate" for line in actions(lines))
    text = policy_text(logs=LOGS % "report").replace(
        "diskPressure: {enabled: false}", "diskPressure: {enabled: true}")
    code, lines = run_once(capsys, clean_docker.base_url, write_policy(tmp_path, text, "p.yaml"),
                           "--job", "cleanup", "--host-root", str(empty_host))
    [disk] = [line for line in actions(lines) if line["kind"] == "disk"]
    assert f"is not visible at {empty_host}{root}" in disk["reason"]
    assert os.listdir(empty_host) == []
