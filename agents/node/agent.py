"""``kubekeeper node run|plan``: one run per job (cleanup, logs), once or as a daemon.

A run connects to Docker, takes its inventory, plans, executes (or only
reports) and writes one ``run.summary``.  Docker not answering at the start of
a run raises ``Unreachable`` (exit 3); once actions have started, its loss
only fails the remaining actions and the summary is still written.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from agents import errors
from agents.actions import Action
from agents.node import inventory, log_inventory, state
from agents.node.docker_port import DockerDown, DockerError, EnginePort
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.log_audit import plan_logs
from agents.node.planner import details_needed, plan_cleanup
from agents.policy import Policy
from agents.report import Reporter, ReportObserver, annotated, choose_format, plan_table

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
    metrics_port: int | None = None
    policy_path: str = "policies.yaml"
    dry_run_override: bool | None = None
    state_dir: str = "/var/lib/kubekeeper"
    deadline: timedelta | None = None
    """Each run's budget: no action starts after it (the daemon applies it per run)."""
    runtime_timeout: float = 30.0
    """Seconds one Docker call may take before it counts as unanswered (then checked)."""

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
            stream: IO[str] | None = None, observer: ReportObserver | None = None
            ) -> dict[str, Any]:
    """One run of one job; returns its summary.  Raises ``Unreachable`` before any action.

    ``node plan`` is a dry run like any other, through the same executor path:
    only its rendering on a terminal (a table) differs.
    """
    stream = stream or sys.stdout
    fmt = choose_format(options.log_format, stream)
    table = options.plan_only and fmt == "text"
    started = time.monotonic()
    port = _connect(options.docker_host, policy.node.parallelism, options.runtime_timeout)
    dry_run = policy.dryRun or options.plan_only
    sink = io.StringIO() if table else stream
    reporter = Reporter("node", job, dry_run=dry_run, fmt=fmt, stream=sink,
                        node=options.node_name or socket.gethostname(), observer=observer)
    paths = HostPaths(options.host_root)
    try:
        try:
            root, actions = _plan(job, port, paths, policy, options, datetime.now(UTC))
        except DockerDown as exc:
            raise errors.Unreachable("Docker", options.docker_host, exc) from exc
        except DockerError as exc:
            return reporter.summary(error=f"inventory failed: {exc}")
        deadline = started + options.deadline.total_seconds() if options.deadline else None
        run = Execution(port, reporter, paths, root, policy.node.parallelism, stop, deadline)
        outcomes, aborted = execute(actions, run, dry_run, policy.maxDeletionsPerRun)
        mark = sink.tell() if table else 0
        summary = reporter.summary(aborted=aborted, error=_lost(run.unreachable))
    finally:
        port.close()
    if table:
        assert isinstance(sink, io.StringIO)
        stream.write(f"== node {job} plan ==\n{plan_table(annotated(o) for o in outcomes)}\n"
                     f"{sink.getvalue()[mark:]}")
        stream.flush()
    return summary


def _plan(job: str, port: EnginePort, paths: HostPaths, policy: Policy, options: NodeOptions,
          now: datetime) -> tuple[str, list[Action]]:
    """The Docker root and the job's plan, from a fresh inventory.

    The cleanup plan reads the node's first-seen record, and every run but a
    ``node plan`` stores the updated record before acting.
    """
    if job == "logs":
        facts = log_inventory.take_logs(port, paths)
        return facts.docker_root, plan_logs(facts, policy.node.logs, now)
    store = state.StateFile(options.state_dir)
    snap = inventory.take(port, paths)
    record = store.load(now)
    observed = state.observe(record, snap, now)
    snap = state.annotate(snap, observed)
    containers, images = details_needed(snap, policy.node, now)
    snap = inventory.with_details(port, snap, containers, images)
    saved: OSError | None = None
    if not options.plan_only:
        try:
            store.save(observed)
        except OSError as exc:
            saved = exc
    notes = state.findings(record, store, saved)
    return snap.docker_root, notes + plan_cleanup(snap, policy.node, now)


def _connect(endpoint: str, parallelism: int, timeout: float) -> EnginePort:
    try:
        return EnginePort(endpoint, pool_size=max(10, parallelism), timeout=timeout)
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
