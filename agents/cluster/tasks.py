"""``kubekeeper cluster run|plan TASK``: one run of requests, revisions, jobs or all.

A run lists the namespaces, works out the effective policy of each one in
scope, lists every kind its tasks need once (cluster-wide, paginated), plans
each task purely, checks the deletion cap over the whole plan and only then
hands the plan to the executor. Whether a plan deletes is read from the plan
itself, never from what a task is meant to do, so every run waits for its
whole plan. ``all`` is one run with one ``run.summary``; every action line
names its task.

Requests: one per list page (namespaces, then each kind the tasks need), one
per mutation (a server-side dry run is one too), one per Event, plus retries
(429/5xx/lost connection) and, per 409, one re-read and one new attempt.
Benchmarks call ``run_tasks`` with a port from ``connection.connect`` and read
``port.counter.total`` (or ``.by_request``, keyed ``"delete jobs"``,
``"list pods"``, ``"create events"``…) afterwards.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from prometheus_client import CollectorRegistry

from agents import errors
from agents.actions import Action, Outcome, Result, over_cap
from agents.cluster import (
    inventory,
    plan_jobs,
    plan_requests,
    plan_revisions,
    records,
    recycle_bin,
    usage_observe,
)
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.connection import SERVICE, connect
from agents.cluster.executor import ClusterExecutor, Replanner
from agents.cluster.halt import Halt
from agents.cluster.inventory import Inventory
from agents.cluster.namespace_gate import NamespaceGate
from agents.cluster.recycle_bin import RecycleBin
from agents.cluster.resources import RESOURCES
from agents.metrics import Metrics
from agents.policy import ClusterPolicy, Policy, ResourceRequests
from agents.report import Reporter, ReportObserver, choose_format, plan_table
from agents.units import format_duration

BIN_TASK = "recycle-bin"
Planner = Callable[[Inventory, Mapping[str, ClusterPolicy], datetime], list[Action]]


@dataclass(frozen=True)
class ClusterOptions:
    """What the CLI passes: ``task`` is requests|revisions|jobs|all; ``plan_only``
    (``kubekeeper cluster plan``) forces a server-side dry run whatever the policy says."""

    task: str
    kubeconfig: str | None = None
    context: str | None = None
    log_format: str = "auto"
    plan_only: bool = False
    deadline: timedelta | None = None


@dataclass(frozen=True)
class _Stage:
    """One planner of a task and the kinds it reads."""

    plan: Planner
    kinds: Callable[[Mapping[str, ClusterPolicy]], tuple[str, ...]]


@dataclass(frozen=True)
class _Task:
    """A task's plan is the actions of its stages, in order, on one snapshot.

    ``manifests``: its planners may delete, so the records of deletable kinds
    keep their manifest. It only saves CPU for ``requests``; it decides nothing,
    since a planner never deletes an object whose record has no manifest.
    """

    stages: tuple[_Stage, ...]
    manifests: bool

    def kinds(self, policies: Mapping[str, ClusterPolicy]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for stage in self.stages for k in stage.kinds(policies)))

    def plan(self, inventory: Inventory, policies: Mapping[str, ClusterPolicy],
             now: datetime) -> list[Action]:
        return [a for stage in self.stages for a in stage.plan(inventory, policies, now)]


def _requests_rules(policies: Mapping[str, ClusterPolicy]) -> list[ResourceRequests]:
    return [p.resourceRequests for p in policies.values() if p.resourceRequests.enabled]


def _limitrange_kinds(policies: Mapping[str, ClusterPolicy]) -> tuple[str, ...]:
    limitranges = any(r.action == "limitrange" for r in _requests_rules(policies))
    return ("limitrange",) if limitranges else ()


def _owner_kinds(policies: Mapping[str, ClusterPolicy]) -> tuple[str, ...]:
    if not _requests_rules(policies):
        return ()
    return ("deployment", "statefulset", "daemonset", "cronjob", "job", "replicaset", "pod")


def _revisions_kinds(policies: Mapping[str, ClusterPolicy]) -> tuple[str, ...]:
    if not any(p.revisionHistory.enabled for p in policies.values()):
        return ()
    return ("deployment", "statefulset", "daemonset", "replicaset", "controllerrevision")


def _jobs_kinds(policies: Mapping[str, ClusterPolicy]) -> tuple[str, ...]:
    rules = [p.completedJobs for p in policies.values() if p.completedJobs.enabled]
    if not rules:
        return ()
    return ("job", "cronjob", *(("pod",) if any(r.orphanPods for r in rules) else ()))


TASKS: dict[str, _Task] = {
    "requests": _Task((_Stage(plan_requests.limitranges, _limitrange_kinds),
                       _Stage(plan_requests.findings, _owner_kinds)), manifests=False),
    "revisions": _Task((_Stage(plan_revisions.plan, _revisions_kinds),), manifests=True),
    "jobs": _Task((_Stage(plan_jobs.plan, _jobs_kinds),), manifests=True),
}


def run_cluster(policy: Policy, options: ClusterOptions) -> int:
    """The CLI entry point: connect, run once, return the exit code.

    0 or 1 from the summary; 3 when the API server was lost mid-run (the
    summary names it) or, by raising ``Unreachable``, never answered.
    """
    api = connect(options.kubeconfig, options.context, policy.cluster)
    with _sigterm_halts(api.halt), _deadline_halts(api.halt, options.deadline), \
            _pushed(policy, options.task) as metrics:
        summary = run_tasks(api, policy, options.task, plan_only=options.plan_only,
                            fmt=choose_format(options.log_format, sys.stdout),
                            observer=metrics)
    if api.halt.unreachable:
        return errors.EXIT_UNREACHABLE
    return errors.exit_code([summary])


def run_tasks(port: ClusterPort, policy: Policy, task: str, *, plan_only: bool = False,
              fmt: str = "json", stream: IO[str] | None = None, now: datetime | None = None,
              observer: ReportObserver | None = None) -> dict[str, Any]:
    """One run; returns the summary line (exit code: ``errors.exit_code([summary])``).

    Raises ``Unreachable`` when the first request gets no answer at all. A
    ``plan`` on a terminal prints the plan table and the summary instead of
    one line per action.
    """
    stream = stream or sys.stdout
    table = plan_only and fmt == "text"
    sink = io.StringIO() if table else stream
    reporter = Reporter("cluster", task, policy.dryRun or plan_only, stream=sink, fmt=fmt,
                        observer=observer)
    outcomes, aborted, error = _run(port, policy, task, reporter, now or datetime.now(UTC),
                                    keep_record=not plan_only)
    if port.halt.failure:
        error = "; ".join(filter(None, (f"halted: {port.halt.reason}", error)))
    mark = sink.tell() if table else 0
    summary = reporter.summary(aborted=aborted, error=error)
    if table:
        stream.write(plan_table(_annotated(o) for o in outcomes) + "\n")
        stream.write(sink.getvalue()[mark:])
    return summary


def _run(port: ClusterPort, policy: Policy, task: str, reporter: Reporter, now: datetime,
         keep_record: bool = True) -> tuple[list[Outcome], str | None, str | None]:
    """List, plan, check the cap, execute: the outcomes, the cap's refusal and any error."""
    try:
        listed_at = time.monotonic()
        namespaces = inventory.list_namespaces(port, policy.cluster.pageSize)
    except ApiError as exc:
        if exc.status == 0:
            raise errors.Unreachable(SERVICE, port.server, exc.message) from exc
        return [], None, str(exc)
    tasks = {name: TASKS[name] for name in (tuple(TASKS) if task == "all" else (task,))}
    policies = inventory.scope(policy, namespaces)
    gate = NamespaceGate(port, policies, listed_at)
    return _Run(port, policy, policies, reporter, now, gate, keep_record).plan_then_act(tasks)


@dataclass(frozen=True)
class _Run:
    """What every step of one run shares."""

    port: ClusterPort
    policy: Policy
    policies: Mapping[str, ClusterPolicy]
    reporter: Reporter
    now: datetime
    gate: NamespaceGate
    keep_record: bool = True
    """False for ``cluster plan``: it reads the usage record but never writes it."""

    def plan_then_act(self, tasks: Mapping[str, _Task]
                      ) -> tuple[list[Outcome], str | None, str | None]:
        """The whole plan first, so the cap judges every deletion before anything is done."""
        planned, problems, replanners = self._plan(tasks)
        aborted = over_cap([a for _, a in planned], self.policy.maxDeletionsPerRun)
        return self._executor(replanners).run(planned, aborted), aborted, _joined(problems)

    def _plan(self, tasks: Mapping[str, _Task]
              ) -> tuple[list[tuple[str, Action]], list[str], dict[str, Replanner]]:
        """The plan of every task, the stages that could not plan, and how to re-plan each.

        A stage that lacks a kind it reads is left out, and the rest of its task
        still plans: ``requests`` writes its LimitRanges when pods cannot be listed.
        """
        cluster = self.policy.cluster
        needs = {name: task.kinds(self.policies) for name, task in tasks.items()}
        kinds = list(dict.fromkeys(k for name in tasks for k in needs[name]))
        selectors = inventory.limitrange_selector()
        if "pod" in needs.get("jobs", ()) and "pod" not in needs.get("requests", ()):
            selectors |= inventory.finished_pods_only()
        manifests = any(task.manifests for task in tasks.values())
        snapshot, failures = inventory.collect(self.port, kinds, self.policies, cluster,
                                               selectors, manifests=manifests)
        planned, problems, replanners = [], [], {}
        if "requests" in tasks and _owner_kinds(self.policies) and not any(
                k in failures for k in _owner_kinds(self.policies)):
            observed = usage_observe.observe(self.port, cluster, snapshot, self.now,
                                             self.keep_record)
            snapshot = replace(snapshot, measured=observed.measured)
            for note in observed.notes:
                self.reporter.note(note.rule, note.message, source=note.source)
            problems += [f"requests: {p}" for p in observed.problems]
        for name, task in tasks.items():
            stages = []
            for stage in task.stages:
                failed = [str(failures[k]) for k in stage.kinds(self.policies) if k in failures]
                if failed:
                    problems.append(f"{name}: cannot plan: {failed[0]}")
                else:
                    stages.append(stage)
            able = replace(task, stages=tuple(stages))
            planned += [(name, a) for a in able.plan(snapshot, self.policies, self.now)]
            replanners[name] = _replanner(self.port, able.plan, snapshot, self.policies,
                                          self.now)
        if manifests and self.policy.cluster.recycleBin.enabled:
            planned += self._expired_bins(problems)
            replanners[BIN_TASK] = lambda action: None  # our own bin changed: leave it
        return planned, problems, replanners

    def _expired_bins(self, problems: list[str]) -> list[tuple[str, Action]]:
        settings = self.policy.cluster.recycleBin
        try:
            secrets = list(self.port.list_all(RESOURCES["secret"], namespace=settings.namespace,
                                              label_selector=recycle_bin.SELECTOR))
        except ApiError as err:
            problems.append(f"{BIN_TASK}: cannot list the recycle bins: {err}")
            return []
        return [(BIN_TASK, a) for a in recycle_bin.expired(secrets, self.now)]

    def _executor(self, replanners: dict[str, Replanner]) -> ClusterExecutor:
        cluster = self.policy.cluster
        settings = cluster.recycleBin
        keeps = settings.enabled and not self.reporter.dry_run
        bin_ = RecycleBin(self.port, settings.namespace, settings.keepFor, self.reporter.run_id,
                          self.now) if keeps else None
        return ClusterExecutor(self.port, self.reporter, dry_run=self.reporter.dry_run,
                               events=cluster.events, concurrency=cluster.concurrency,
                               replanners=replanners, gate=self.gate, recycle_bin=bin_,
                               redact=cluster.redactManifests)


def _joined(problems: list[str]) -> str | None:
    return "; ".join(problems) or None


def _replanner(port: ClusterPort, plan: Planner, snapshot: Inventory,
               policies: Mapping[str, ClusterPolicy], now: datetime) -> Replanner:
    """Re-read one object after a 409 and decide again with everything else unchanged."""
    def replan(action: Action) -> Action | None:
        raw = port.get(RESOURCES[action.kind], action.namespace or "", action.name)
        fresh = snapshot.with_record(records.PARSERS[action.kind](raw))
        same = (action.kind, action.namespace, action.name)
        return next((a for a in plan(fresh, policies, now)
                     if (a.kind, a.namespace, a.name) == same), None)
    return replan


def _annotated(outcome: Outcome) -> Action:
    """The plan table's row: the action, with the API server's objection if it had one."""
    action = outcome.action
    if outcome.result is Result.FAILED or outcome.result is Result.SKIPPED:
        return replace(action, why=f"{action.why} [{outcome.result}: {outcome.error}]")
    return action


@contextmanager
def _pushed(policy: Policy, task: str) -> Iterator[Metrics | None]:
    """With ``cluster.metrics.pushgateway``, the run's metrics, pushed when it ends.

    A CronJob's pod is gone before any scrape, so the run pushes its families
    as the group ``{job="kubekeeper", cronjob="kubekeeper-<task>"}``, replacing
    that task's previous run; a run that never reached the API
    server pushes its ``error`` outcome. A failed push is only logged.
    """
    url = policy.cluster.metrics.pushgateway
    if url is None:
        yield None
        return
    metrics = Metrics(CollectorRegistry())
    metrics.policy(policy)
    try:
        yield metrics
    except errors.Unreachable:
        metrics.unreachable("cluster", task, datetime.now(UTC))
        raise
    finally:
        metrics.push(url, task)


@contextmanager
def _sigterm_halts(halt: Halt) -> Iterator[None]:
    """SIGTERM lets the requests in flight finish, skips the rest, and the summary is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def on_sigterm(*_: object) -> None:
        halt.set("stopped (SIGTERM)", failure=False)
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _deadline_halts(halt: Halt, deadline: timedelta | None) -> Iterator[None]:
    """Past ``--deadline`` the run halts as on SIGTERM, so a CronJob whose
    ``activeDeadlineSeconds`` is longer still gets its summary."""
    if deadline is None:
        yield
        return
    timer = threading.Timer(deadline.total_seconds(), halt.set,
                            (f"the run's deadline ({format_duration(deadline)}) passed",))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
