"""The daemon's schedule is built whole: at start and on reload, it runs all of it or none."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest
from loguru import logger

from agents.checks import Trigger
from agents.node import daemon
from agents.node.agent import NodeOptions
from agents.policy import Policy, Schedule
from agents.policy_loader import PolicyInvalid

NEVER = "0 0 30 2 *"


def with_schedule(cleanup: str, logs: str) -> Policy:
    """A Policy built without the loader, as a policy the checks missed would be."""
    base = Policy()
    schedule = Schedule(cleanup=Trigger(cron=cleanup), logs=Trigger(cron=logs))
    return replace(base, node=replace(base.node, schedule=schedule))


def options(tmp_path: Path) -> NodeOptions:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text("apiVersion: kubekeeper/v1\n")
    return NodeOptions(docker_host=f"unix://{tmp_path}/none.sock", once=False,
                       policy_path=str(policy_file))


def test_a_never_firing_cron_at_start_is_a_policy_error_not_a_crash(tmp_path):
    stop = threading.Event()
    stop.set()
    with pytest.raises(PolicyInvalid, match="never fires"):
        daemon.serve(with_schedule("*/5 * * * *", NEVER), options(tmp_path), stop)


def test_a_reload_that_cannot_run_keeps_the_whole_last_good_schedule(tmp_path, monkeypatch):
    opts = options(tmp_path)
    good = with_schedule("*/5 * * * *", "0 * * * *")
    node = daemon._Daemon(good, opts, threading.Event())
    monkeypatch.setattr(node.scheduler, "start", lambda: None)  # jobs stay pending, never run
    node.start()
    before = {job: str(node.scheduler.get_job(job).trigger) for job in opts.jobs}
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR")
    monkeypatch.setattr(daemon, "load_policy", lambda path: with_schedule("*/7 * * * *", NEVER))
    Path(opts.policy_path).write_text("apiVersion: kubekeeper/v1\ndryRun: false\n")
    try:
        node._reload_if_changed()
    finally:
        logger.remove(sink)
    assert node.policy is good
    assert {job: str(node.scheduler.get_job(job).trigger) for job in opts.jobs} == before
    assert any("last good one stays in force" in line and NEVER in line for line in logged)
