"""``kubekeeper node run|plan``: one run per job (cleanup, logs), once or as a daemon.

A run finds the node's runtimes (``runtimes``: Docker, and containerd, CRI-O
or cri-dockerd through the CRI), connects to each, takes each inventory,
plans each with the same planners, executes (or only reports) under one cap,
and writes one ``run.summary``; every line names its ``runtime``.  A runtime
named by ``--runtime`` not answering at the start of a run raises
``Unreachable`` (exit 3), one answering but not as CRI v1 ``UnsupportedRuntime``
(exit 4); once actions have started, its loss only fails its
remaining actions and the summary is still written.  A node with no runtime
socket at all gets one report line and a clean summary.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from agents import errors
from agents.actions import Action, Outcome, Verb, refused
from agents.node import log_inventory, runtimes, state
from agents.node.docker_port import DockerDown, DockerError, Timeout, Unsupported
from agents.node.executor import PAST_DEADLINE, Execution, execute_all
from agents.node.host_paths import HostPaths
from agents.node.kubelet_config import KUBELET_CONFIG
from agents.node.log_audit import plan_logs
from agents.node.planner import details_needed, plan_cleanup
from agents.node.pod_log_audit import plan_pod_logs
from agents.node.pod_log_inventory import take_pod_logs
from agents.node.runtimes import Runtime
from agents.node.sessions import Session, connect, stamped
from agents.policy import Policy
from agents.report import Reporter, ReportObserver, annotated, choose_format, plan_table
from agents.units import format_duration

JOBS = ("cleanup", "logs")


@dataclass(frozen=True)
class NodeOptions:
    """What the CLI passes; see ``kubekeeper node run --help``."""

    docker_host: str | None = None
    """Docker's endpoint when given (``--docker-host``, ``$DOCKER_HOST``); else found."""
    runtime: str = "auto"
    """``--runtime``: auto, docker, containerd, crio or cri:<socket> (see ``runtimes``)."""
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
    kubelet_config: str = KUBELET_CONFIG
    """``--kubelet-config``: the kubelet's config file, a host path (read under host_root)."""

    @property
    def jobs(self) -> tuple[str, ...]:
        return JOBS if self.job == "all" else (self.job,)


def run_node(policy: Policy, options: NodeOptions) -> int:
    """The CLI's entry point: exit code 0, 1 (failed actions or cap), 3 (runtime down) or
    4 (not a CRI v1 runtime)."""
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
    """One run of one job on every selected runtime; returns its summary.

    Raises ``Unreachable`` before any action when no runtime could be reached
    and one was expected (named by ``--runtime``, or found and not answering).
    ``node plan`` is a dry run like any other, through the same executor path:
    only its rendering on a terminal (a table) differs.
    """
    stream = stream or sys.stdout
    fmt = choose_format(options.log_format, stream)
    table = options.plan_only and fmt == "text"
    started = time.monotonic()
    dry_run = policy.dryRun or options.plan_only
    sink = io.StringIO() if table else stream
    reporter = Reporter("node", job, dry_run=dry_run, fmt=fmt, stream=sink,
                        node=options.node_name or socket.gethostname(), observer=observer)
    paths = HostPaths(options.host_root)
    selection = runtimes.select(options.runtime, paths, policy.node.runtimes,
                                options.docker_host)
    connected, problems, found = _connect_all(selection.runtimes, policy, options)
    try:
        outcomes = [_report(reporter, _runtime_note(why, name))
                    for name, why in (*selection.notes, *found)]
        plans, failed = _plan_all(job, connected, paths, policy, options)
        problems += failed
        deadline = started + options.deadline.total_seconds() if options.deadline else None
        runs = [(Execution(s.port, reporter, paths, root, s.parallelism(policy.node), stop,
                           deadline, mutate_all=s.mutate_all(), runtime=s.label),
                 actions)
                for s, root, actions in plans]
        done, aborted = execute_all(runs, dry_run, policy.maxDeletionsPerRun)
        outcomes += done
        mark = sink.tell() if table else 0
        lost = [f"{run.runtime} stopped answering during the run: {run.unreachable}"
                for run, _ in runs if run.unreachable]
        lost += _late(done, options.deadline)
        summary = reporter.summary(aborted=aborted, error="; ".join(problems + lost) or None,
                                   runtimes=[s.runtime.name for s, _, _ in plans])
    finally:
        for session in connected:
            session.close()
    if table:
        assert isinstance(sink, io.StringIO)
        stream.write(f"== node {job} plan ==\n{plan_table(annotated(o) for o in outcomes)}\n"
                     f"{sink.getvalue()[mark:]}")
        stream.flush()
    return summary


def _late(outcomes: Sequence[Outcome], deadline: timedelta | None) -> list[str]:
    """The summary's word that ``--deadline`` cut the run short (then it exits 1, as a
    cluster run does): its skipped lines say it one by one, the summary once."""
    if deadline is None or not any(o.error == PAST_DEADLINE for o in outcomes):
        return []
    return [f"the run's deadline ({format_duration(deadline)}) passed before every action "
            "started"]


def _connect_all(selected: Sequence[Runtime], policy: Policy, options: NodeOptions
                 ) -> tuple[list[Session], list[str], list[tuple[str | None, str]]]:
    """Sessions on the selected runtimes that answer; the run's problems; notes.

    A runtime named on the command line that does not answer (down, or no
    answer in time) is ``Unreachable`` (exit 3), as is a run where every runtime
    found failed to answer; one that answers but not as CRI v1 is
    ``UnsupportedRuntime`` (exit 4).  A socket found by ``auto`` that answers
    with an error (not CRI v1: Docker's own containerd runs without its CRI
    plugin) is only noted: there is nothing to clean there.
    """
    sessions: list[Session] = []
    problems: list[str] = []
    notes: list[tuple[str | None, str]] = []
    failure: tuple[Runtime, DockerError] | None = None
    for runtime in selected:
        try:
            sessions.append(connect(runtime, policy.node.parallelism, options.runtime_timeout))
        except DockerError as exc:
            if not runtime.explicit and not isinstance(exc, (DockerDown, Timeout)):
                notes.append((runtime.name, f"runtime {runtime.name} ({runtime.endpoint}) "
                                            f"found, but not cleaned: {exc}"))
                continue
            failure = failure or (runtime, exc)
            problems.append(f"cannot reach {runtime.label} at {runtime.endpoint}: {exc}")
    if failure and (failure[0].explicit or not sessions):
        for session in sessions:
            session.close()
        runtime, exc = failure
        if isinstance(exc, Unsupported):
            raise errors.UnsupportedRuntime(runtime.label, runtime.endpoint, exc) from exc
        raise errors.Unreachable(runtime.label, runtime.endpoint, exc) from exc
    return sessions, problems, notes


def _plan_all(job: str, sessions: Sequence[Session], paths: HostPaths, policy: Policy,
              options: NodeOptions) -> tuple[list[tuple[Session, str, list[Action]]], list[str]]:
    """Each runtime's root and plan, its lines naming it, and the failed inventories.

    A runtime whose inventory fails is left out of the run; when it is the
    only one and it stopped answering, the run is ``Unreachable`` (exit 3).
    """
    plans = []
    problems: list[str] = []
    now = datetime.now(UTC)
    for session in sessions:
        try:
            root, actions = _plan(job, session, sessions, paths, policy, options, now)
        except DockerDown as exc:
            if len(sessions) == 1:
                raise errors.Unreachable(session.label, session.runtime.endpoint, exc) from exc
            problems.append(f"inventory of {session.runtime.name} failed: {exc}")
            continue
        except DockerError as exc:
            problems.append(f"inventory failed: {exc}" if len(sessions) == 1
                            else f"inventory of {session.runtime.name} failed: {exc}")
            continue
        plans.append((session, root, stamped(actions, session.runtime.name)))
    return plans, problems


def _plan(job: str, session: Session, sessions: Sequence[Session], paths: HostPaths,
          policy: Policy, options: NodeOptions, now: datetime) -> tuple[str, list[Action]]:
    """The runtime's root and the job's plan, from a fresh inventory.

    The cleanup plan reads the node's first-seen record for this runtime, and
    every run but a ``node plan`` stores the updated record before acting.
    """
    if job == "logs":
        return _plan_logs(session, sessions, paths, policy, options, now)
    store = state.StateFile(options.state_dir, session.runtime.name)
    snap = session.take(paths)
    record = store.load(now)
    observed = state.observe(record, snap, now)
    snap = state.annotate(snap, observed)
    rules = session.rules(policy.node)
    containers, images = details_needed(snap, rules, now)
    snap = session.with_details(snap, containers, images)
    saved: OSError | None = None
    if not options.plan_only:
        try:
            store.save(observed)
        except OSError as exc:
            saved = exc
    notes = state.findings(record, store, saved) + session.notes(policy.node)
    return snap.docker_root, notes + plan_cleanup(snap, rules, now)


def _plan_logs(session: Session, sessions: Sequence[Session], paths: HostPaths,
               policy: Policy, options: NodeOptions, now: datetime) -> tuple[str, list[Action]]:
    """Docker's logging audit, or the kubelet's pod logs, each audited once per run.

    The pod log directories belong to the node's kubelet, not to a runtime, so
    the first CRI runtime audits them, with the sandboxes of every CRI runtime
    in the run as the pods on the node; Docker's audit then leaves them out.
    """
    cri = [s for s in sessions if s.cri]
    if not session.cri:
        facts = log_inventory.take_logs(session.port, paths, kubelet_dirs=not cri)
        return facts.docker_root, plan_logs(facts, policy.node.logs, now)
    if session is not cri[0]:
        return "", []
    pods = take_pod_logs(paths, lambda: [s.uid for c in cri for s in c.port.sandboxes()],
                         options.kubelet_config)
    return "", plan_pod_logs(pods, policy.node.logs, now)


def _report(reporter: Reporter, finding: Action) -> Outcome:
    outcome = refused(finding, "")
    reporter.action(outcome)
    return outcome


def _runtime_note(why: str, runtime: str | None = None) -> Action:
    return stamped([Action(kind="runtime", name=runtime or "-", verb=Verb.REPORT,
                           rule="--runtime", why=why)], runtime)[0]


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
