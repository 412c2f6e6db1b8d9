"""The node agent as a daemon (``python -m agents node run`` without --once).

SIGTERM in the middle of a run, policy reloads through a ConfigMap-style
symlink swap (valid, invalid, with --dry-run kept), /healthz, and Docker being
unreachable from the start.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from scripts.localenv import testimages as ti
from tests.node_runs import AgentProcess, policy_text
from tests.polling import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


class ConfigMapDir:
    """A mounted ConfigMap's layout: policy.yaml -> ..data/policy.yaml, ..data -> ..vN."""

    def __init__(self, root: Path):
        self.root = root
        self.version = 0

    @property
    def path(self) -> Path:
        return self.root / "policy.yaml"

    def publish(self, text: str) -> None:
        """Write a new version and swap ``..data`` to it atomically, as the kubelet does."""
        self.version += 1
        version_dir = self.root / f"..v{self.version}"
        version_dir.mkdir()
        (version_dir / "policy.yaml").write_text(text)
        staging = self.root / "..data_tmp"
        os.symlink(version_dir.name, staging)
        os.replace(staging, self.root / "..data")
        if not self.path.is_symlink():
            os.symlink("..data/policy.yaml", self.path)


def is_summary(line: dict) -> bool:
    return line["event"] == "run.summary"


def test_sigterm_mid_run_finishes_the_item_writes_the_summary_and_exits_0(
        docker_client, clean_docker, tmp_path):
    ti.many_containers(docker_client, ti.base_image(docker_client).id, 120, "victim")
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(parallelism=1))
    agent = AgentProcess("--policy", str(policy), "--docker-host", clean_docker.base_url,
                         "--job", "cleanup")
    first = agent.next_outcome()
    assert first["event"] == "action" and first["result"] == "done", first
    code = agent.stop()
    lines = [first, *agent.drain()]
    assert code == 0, "".join(agent.stderr)
    summary = lines[-1]
    assert is_summary(summary) and summary["task"] == "cleanup"
    actions = [line for line in lines if line["event"] == "action"]
    assert summary["actions"] == len(actions) == len({line["id"] for line in actions})
    results = summary["results"]
    assert results.get("skipped", 0) > 0 and results.get("done", 0) > 0
    assert all("SIGTERM" in line["error"] for line in actions if line["result"] == "skipped")
    skipped = {line["id"] for line in actions
               if line["result"] == "skipped" and line["kind"] == "container"}
    assert {c["Id"] for c in docker_client.api.containers(all=True)} == skipped
    assert summary["errors"] == 0


def test_policy_reload_valid_takes_effect_and_invalid_keeps_the_last_good_one(
        docker_client, clean_docker, tmp_path):
    target = docker_client.containers.create(ti.base_image(docker_client).id, ["true"],
                                             name="target", network_mode="none").id
    config = ConfigMapDir(tmp_path)
    config.publish(policy_text(dry_run=True, every="2s"))
    port = free_port()
    agent = AgentProcess("--policy", str(config.path), "--docker-host", clean_docker.base_url,
                         "--job", "cleanup", "--health-port", str(port))
    try:
        lines = list(agent.lines_until(is_summary))
        assert lines[-1]["dry_run"] is True
        assert any(line.get("id") == target for line in lines)
        assert healthz(port) == (200, "ok\n")
        assert docker_client.api.containers(all=True, filters={"id": target})

        config.publish(policy_text(dry_run=False, every="2s"))
        wait_for(lambda: any("policy reloaded (dryRun=False)" in e for e in agent.stderr),
                 what="the valid policy to be reloaded")
        wait_for(lambda: any(is_summary(x) and not x["dry_run"]
                             for x in agent.lines_until(is_summary)),
                 what="a real run after the reload")
        wait_for(lambda: not docker_client.api.containers(all=True, filters={"id": target}),
                 what="the container to be removed by a real run")

        config.publish("apiVersion: kubekeeper/v1\ndryRun: maybe\n")
        wait_for(lambda: "last good one stays in force" in "".join(agent.stderr),
                 what="the invalid policy to be reported")
        after_invalid = list(agent.lines_until(is_summary))
        after_invalid += list(agent.lines_until(is_summary))
        assert [x["dry_run"] for x in after_invalid if is_summary(x)] == [False, False]
        assert agent.process.poll() is None
    finally:
        code = agent.stop()
    assert code == 0
    stderr = "".join(agent.stderr)
    assert "policy.yaml:2:9: dryRun:" in stderr and "maybe" in stderr


def test_reload_keeps_the_command_line_dry_run(docker_client, clean_docker, tmp_path):
    target = docker_client.containers.create(ti.base_image(docker_client).id, ["true"],
                                             name="target", network_mode="none").id
    config = ConfigMapDir(tmp_path)
    config.publish(policy_text(dry_run=False, every="2s"))
    agent = AgentProcess("--policy", str(config.path), "--docker-host", clean_docker.base_url,
                         "--job", "cleanup", "--dry-run")
    try:
        assert list(agent.lines_until(is_summary))[-1]["dry_run"] is True
        config.publish(policy_text(dry_run=False, every="2s", parallelism=2))
        wait_for(lambda: any("policy reloaded (dryRun=True)" in e for e in agent.stderr),
                 what="the reload")
        assert list(agent.lines_until(is_summary))[-1]["dry_run"] is True
        assert docker_client.api.containers(all=True, filters={"id": target})
    finally:
        assert agent.stop() == 0


def test_docker_unreachable_backs_off_fails_healthz_and_never_exits(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(every="1s"))
    port = free_port()
    agent = AgentProcess("--policy", str(policy), "--docker-host",
                         f"unix://{tmp_path}/no-docker.sock", "--health-port", str(port))
    try:
        wait_for(lambda: healthz(port)[0] == 200, what="the health endpoint")
        wait_for(lambda: any("retrying in 5s" in e for e in agent.stderr),
                 what="a logged failure with its retry delay")
        _, body = wait_for(lambda: (r := healthz(port))[0] == 503 and r,
                           what="/healthz to fail", timeout=20)
        # Both checks trip at twice the interval; either may answer first.
        assert any(why in body for why in ("Docker unreachable", "no successful run",
                                           "no run since start"))
        wait_for(lambda: any("retrying in 10s" in e for e in agent.stderr),
                 what="the delay to double", timeout=30)
        assert agent.process.poll() is None
        assert "cannot reach Docker at unix://" in "".join(agent.stderr)
    finally:
        assert agent.stop() == 0
    assert agent.drain() == []
