"""The node agent killed mid-run, and its Docker daemon paused mid-run: the report still
tells the truth about every container. Each test starts its own private dockerd, so the
session's engine stays untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.localenv import dockerd, processes
from scripts.localenv import testimages as ti
from tests import report_lines
from tests.node_runs import AgentProcess, policy_text


@pytest.fixture
def engine() -> Iterator[dockerd.DockerEngine]:
    state_dir = Path(tempfile.mkdtemp(prefix="kk-fault-", dir="/tmp"))
    started = dockerd.start(state_dir)
    try:
        yield started
    finally:
        pid = processes.read_pid(started.pid_file)
        if pid is not None and processes.is_alive(pid):
            os.kill(pid, signal.SIGCONT)
        dockerd.stop(state_dir)


def containers(engine: dockerd.DockerEngine, count: int) -> dict[str, str]:
    """``count`` stopped containers, id → name."""
    client = engine.client()
    made = ti.many_containers(client, ti.base_image(client).id, count, "doomed")
    client.close()
    return {c.id: c.name for c in made}


def left(engine: dockerd.DockerEngine) -> set[str]:
    """Ids only: a removal the killed agent sent may still be finishing in the daemon."""
    client = engine.client()
    try:
        return {c.id for c in client.containers.list(all=True, sparse=True)}
    finally:
        client.close()


def test_sigkill_mid_run_leaves_an_intent_line_for_every_removal(engine, tmp_path):
    made = containers(engine, 150)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(parallelism=2))
    agent = AgentProcess("--once", "--policy", str(policy), "--docker-host", engine.base_url,
                         "--job", "cleanup")
    done_so_far = []

    def twenty_done(line: dict) -> bool:
        done_so_far.extend([line] if line["event"] == "action" and line["result"] == "done"
                           else [])
        return len(done_so_far) == 20 or line["event"] == "run.summary"
    lines = list(agent.lines_until(twenty_done, timeout=120))
    agent.process.send_signal(signal.SIGKILL)
    agent.wait(timeout=30)
    lines += agent.drain()

    removed = set(made) - left(engine)
    intended = {x["id"] for x in report_lines.intents(lines)}
    assert removed, "the run was killed before it removed anything"
    assert removed <= intended, "a container was removed without a line written before it"
    assert not report_lines.summaries(lines), "the run finished before it was killed"
    done = {x["id"] for x in report_lines.outcomes(lines)
            if x["kind"] == "container" and x["result"] == "done"}
    assert done <= removed


def test_a_paused_docker_daemon_never_makes_the_report_lie(engine, tmp_path):
    made = containers(engine, 40)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(parallelism=2))
    agent = AgentProcess("--once", "--policy", str(policy), "--docker-host", engine.base_url,
                         "--job", "cleanup", "--runtime-timeout", "2s", "--deadline", "5m")
    lines = list(agent.lines_until(lambda x: x["event"] == "action" and x["result"] == "done",
                                   timeout=120))
    pid = processes.read_pid(engine.pid_file)
    os.kill(pid, signal.SIGSTOP)
    time.sleep(6)  # every call in flight and the next ones time out meanwhile
    os.kill(pid, signal.SIGCONT)
    code = agent.wait(timeout=300)
    lines += agent.drain()

    gone = set(made) - left(engine)
    outcomes = {x["id"]: x for x in report_lines.outcomes(lines) if x["kind"] == "container"}
    assert set(outcomes) == set(made), "a container has no outcome line"
    lies = {made[i]: (x["result"], x["error"]) for i, x in outcomes.items()
            if (x["result"] == "done") != (i in gone)}
    assert lies == {}, "the report says done for a container still there, or not for one gone"
    assert report_lines.summaries(lines)[-1] is lines[-1]
    assert code in (0, 1), "".join(agent.stderr[-20:])


def test_a_run_whose_docker_daemon_hangs_ends_at_its_deadline_with_a_summary(engine, tmp_path):
    """dockerd is paused after the first removal and stays paused until the run has ended:
    the calls in flight give up (``--runtime-timeout``), nothing starts after ``--deadline``,
    and the summary is written without Docker's help."""
    made = containers(engine, 60)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(parallelism=2))
    agent = AgentProcess("--once", "--policy", str(policy), "--docker-host", engine.base_url,
                         "--job", "cleanup", "--runtime-timeout", "1s", "--deadline", "3s")
    pid = processes.read_pid(engine.pid_file)
    try:
        lines = list(agent.lines_until(
            lambda x: x["event"] == "run.summary"
            or (x["event"] == "action" and x["result"] == "done"), timeout=120))
        os.kill(pid, signal.SIGSTOP)
        try:
            code = agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the run did not end while Docker was paused; stderr:\n"
                                 + "".join(agent.stderr[-30:])) from None
        lines += agent.drain()
    finally:
        os.kill(pid, signal.SIGCONT)
        if agent.process.poll() is None:
            agent.process.kill()

    assert not report_lines.summaries(lines[:-1]), "the run ended before Docker was paused"
    summary = lines[-1]
    assert summary["event"] == "run.summary"
    outcomes = {x["id"]: x for x in report_lines.outcomes(lines) if x["kind"] == "container"}
    assert set(outcomes) == set(made), "a container has no outcome line"
    late = [x for x in report_lines.outcomes(lines) if x["result"] == "skipped"]
    assert any(x["kind"] == "container" for x in late), "none was left for after the deadline"
    assert {x["error"] for x in late} == {"not started: the run's deadline had passed"}
    assert summary["error"] == "the run's deadline (3s) passed before every action started"
    assert summary["results"]["skipped"] == len(late)
    assert code == 1, "".join(agent.stderr[-20:])
