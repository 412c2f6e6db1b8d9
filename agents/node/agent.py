"""``kubekeeper node run|plan``: one run per job (cleanup, logs), once or as a daemon.

A run connects to Docker, takes its inventory, plans, executes (or only
reports) and writes one ``run.summary``.  Docker not answering at the start of
a run raises ``Unreachable`` (exit 3); once actions have started, its loss
only fails the remaining actions and the summary is still written.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from agents import errors
from agents.actions import Action, Outcome, Result, over_cap
from agents.node import inventory, log_inventory
from agents.node.docker_port import DockerDown, DockerError, EnginePort
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.log_audit import plan_logs
from agents.node.planner import details_needed, plan_cleanup
from agents.policy import Policy
from agents.report import Reporter, choose_format, plan_table

JOBS = ("cleanup", "logs")


@dataclass(frozen=True)
class NodeOptions:
    """What the CLI passes; see ``kubekeeper node run --help``."""

    docker_host: str
    host_root: str = "/"
    node_name: str | None = None
    log_format: str = "auto"
    job: str = "all"
    plan_only: bool = False
    once: bool = True
    health_port: int | None = None
    policy_path: str = "policies.yaml"
    dry_run_override: bool | None = None

    @property
    def jobs(self) -> tuple[str, ...]:
        return JOBS if self.job == "all" else (self.job,)


def run_node(policy: Policy, options: NodeOptions) -> int:
    """The CLI's entry point: exit code 0, 1 (failed actions or cap), or 3 (Docker down)."""
    stop = threading.Event()
    with _stop_on_signals(stop):
        if options.plan_only or options.once:
            summaries = [run_job(job, policy, options, stop) for job in options.jobs
                         if not stop.is_set()]
            return errors.exit_code(summaries)
        from agents.node.daemon import serve

        return serve(policy, options, stop)


def run_job(job: str, policy: Policy, options: NodeOptions, stop: threading.Event,
            stream: IO[str] | None = None) -> dict[str, Any]:
    """One run of one job; returns its summary.  Raises ``Unreachable`` before any action."""
    stream = stream or sys.stdout
    fmt = choose_format(options.log_format, stream)
    port = _connect(options.docker_host, policy.node.parallelism)
    reporter = Reporter("node", job, dry_run=policy.dryRun or options.plan_only,
                        node=options.node_name or socket.gethostname(), stream=stream, fmt=fmt)
    paths = HostPaths(options.host_root)
    try:
        try:
            root, actions = _plan(job, port, paths, policy, datetime.now(UTC))
        except DockerDown as exc:
            raise errors.Unreachable("Docker", options.docker_host, exc) from exc
        except DockerError as exc:
            return reporter.summary(error=f"inventory failed: {exc}")
        if options.plan_only:
            return _show_plan(actions, policy, reporter, stream if fmt == "text" else None)
        run = Execution(port, reporter, paths, root, policy.node.parallelism, stop)
        _, aborted = execute(actions, run, policy.dryRun, policy.maxDeletionsPerRun)
        return reporter.summary(aborted=aborted, error=_lost(run.unreachable))
    finally:
        port.close()


def _plan(job: str, port: EnginePort, paths: HostPaths, policy: Policy,
          now: datetime) -> tuple[str, list[Action]]:
    """The Docker root and the job's plan, from a fresh inventory."""
    if job == "logs":
        facts = log_inventory.take_logs(port, paths)
        return facts.docker_root, plan_logs(facts, policy.node.logs, now)
    snap = inventory.take(port, paths)
    containers, images = details_needed(snap, policy.node, now)
    snap = inventory.with_details(port, snap, containers, images)
    return snap.docker_root, plan_cleanup(snap, policy.node, now)


def _show_plan(actions: list[Action], policy: Policy, reporter: Reporter,
               stream: IO[str] | None) -> dict[str, Any]:
    """``node plan``: a table on a terminal, else one "planned" line per action; no mutation."""
    aborted = over_cap(actions, policy.maxDeletionsPerRun)
    if stream is not None:
        cap = f"\na real run would change nothing: {aborted}" if aborted else ""
        stream.write(f"== node {reporter.task} plan ==\n{plan_table(actions)}{cap}\n")
        stream.flush()
        return {"errors": 0, "aborted": aborted}
    for action in actions:
        reporter.action(Outcome(action, Result.PLANNED, bytes=action.bytes))
    return reporter.summary(aborted=aborted)


def _connect(endpoint: str, parallelism: int) -> EnginePort:
    try:
        return EnginePort(endpoint, pool_size=max(10, parallelism))
    except DockerDown as exc:
        raise errors.Unreachable("Docker", endpoint, exc) from exc


def _lost(unreachable: str | None) -> str | None:
    return f"Docker stopped answering during the run: {unreachable}" if unreachable else None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT: finish the item in hand, skip the rest, write the summary, exit 0.

    The previous handlers come back afterwards, so callers (and tests) keep theirs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
