"""Daemon mode: the jobs on the policy's schedules, policy reload, backoff, SIGTERM.

- One run at a time: every job shares a single worker thread, so a cleanup
  and a log audit never overlap; a run that is still going when its next turn
  comes makes the missed turns coalesce into one.
- Each job runs once at start (after a random jitter), then on its schedule,
  each start delayed by a random ``jitter``.
- The policy file is checked every 2s (path, inode, size and mtime, links
  followed, so a ConfigMap's symlink swap counts).  A valid new policy takes effect for the
  next run, with ``--dry-run``/``--no-dry-run`` re-applied; an invalid one is
  logged with every error and the last good policy stays in force.  A reload is
  all or nothing: the whole new schedule is built before anything changes.
- Docker down: the run is logged, ``/healthz`` learns it, and the job is retried
  after a delay doubling from 5s to 5m; the process never exits for it.
- SIGTERM: the run in progress finishes its current items, skips the rest,
  writes its summary, and the process exits 0.
- ``/metrics`` (``agents.metrics``) is fed by every run's report, by each
  reload and by the schedule; it is served with ``/healthz``, and on
  ``--metrics-port`` too when that is another port.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger
from prometheus_client import CollectorRegistry, ProcessCollector

from agents import errors
from agents.checks import Trigger, cron_trigger
from agents.metrics import Metrics
from agents.node import health
from agents.node.agent import NodeOptions, run_job
from agents.policy import Policy
from agents.policy_loader import PolicyError, PolicyInvalid, load_policy

WATCH_EVERY_S = 2
_BACKOFF = (timedelta(seconds=5), timedelta(minutes=5))


def serve(policy: Policy, options: NodeOptions, stop: threading.Event) -> int:
    """Run until ``stop`` is set (SIGTERM); returns exit code 0.

    A schedule that cannot run (a cron that never fires) is ``PolicyInvalid``
    before anything starts: exit 2 with the reason, not a crash loop.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_start_time_seconds: the stale-run alert
    daemon = _Daemon(policy, options, stop, Metrics(registry))
    ports: dict[int, str] = {}
    for port, option in ((options.health_port, "--health-port"),
                         (options.metrics_port, "--metrics-port")):
        if port is not None:
            ports.setdefault(port, option)
    servers = [_serve_health(port, option, daemon.health, daemon.metrics)
               for port, option in ports.items()]
    try:
        daemon.start()
    except ValueError as exc:
        for server in servers:
            server.shutdown()
        raise PolicyInvalid([PolicyError(options.policy_path, 0, 0, "node.schedule",
                                         str(exc))]) from None
    while not stop.wait(1):
        pass
    logger.bind(kind="daemon", name="node", id=os.getpid()).info("stopping (signal received)")
    daemon.scheduler.shutdown(wait=True)
    for server in servers:
        server.shutdown()
    return errors.EXIT_OK


def _serve_health(port: int, option: str, state: health.Health, metrics: Metrics) -> Any:
    """The /healthz and /metrics server; a port in use is a usage error."""
    try:
        return health.serve(port, state, metrics=metrics.exposition)
    except OSError as exc:
        raise errors.BadOption(f"{option} {port}: cannot listen there "
                               f"({exc.strerror or exc})") from None


def trigger_for(schedule: Trigger, jitter: timedelta | None = None) -> BaseTrigger:
    """An APScheduler trigger for a policy schedule (cron string or ``every``)."""
    spread = int(jitter.total_seconds()) if jitter else None
    if schedule.every is not None:
        return IntervalTrigger(seconds=schedule.every.total_seconds(), jitter=spread,
                               timezone=UTC)
    assert schedule.cron is not None
    return cron_trigger(schedule.cron, jitter=spread, timezone=UTC)


def interval_of(schedule: Trigger, now: datetime) -> timedelta:
    """The longest gap between the next few runs: the health probe's yardstick."""
    if schedule.every is not None:
        return schedule.every
    trigger = trigger_for(schedule)
    fire = trigger.get_next_fire_time(None, now)
    gaps = []
    for _ in range(8):
        following = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1)) \
            if fire is not None else None
        if following is None:
            raise ValueError(f"{schedule.cron!r} never fires")
        gaps.append(following - fire)
        fire = following
    return max(gaps)


class _Daemon:
    def __init__(self, policy: Policy, options: NodeOptions, stop: threading.Event,
                 metrics: Metrics | None = None):
        self.policy, self.options, self.stop = policy, options, stop
        self.metrics = metrics or Metrics(CollectorRegistry())
        self.metrics.policy(policy)
        self.metrics.watch_reloads()
        self.health = health.Health(datetime.now(UTC))
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(1), "watch": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._fingerprint = _fingerprint(options.policy_path)
        self._delays: dict[str, timedelta] = {}
        self._log = logger.bind(kind="daemon", name="node", id=os.getpid())

    def schedule_for(self, policy: Policy) -> dict[str, tuple[BaseTrigger, timedelta]]:
        """Each job's trigger and health interval under ``policy``, all built before any is used.

        Raises ValueError when a schedule cannot run, so that neither the start
        nor a reload ever applies half of a schedule.
        """
        now = datetime.now(UTC)
        schedule = policy.node.schedule
        return {job: (trigger_for(getattr(schedule, job), schedule.jitter),
                      interval_of(getattr(schedule, job), now) + schedule.jitter)
                for job in self.options.jobs}

    def start(self) -> None:
        """Schedule every job and the policy watch; ValueError if the schedule cannot run."""
        plan = self.schedule_for(self.policy)
        now = datetime.now(UTC)
        jitter = self.policy.node.schedule.jitter.total_seconds()
        for job, (trigger, interval) in plan.items():
            delay = random.uniform(0, jitter)
            self.scheduler.add_job(self._run, trigger, args=[job], id=job,
                                   next_run_time=now + timedelta(seconds=delay))
            self._expect(job, interval)
        self.scheduler.add_job(self._reload_if_changed, IntervalTrigger(seconds=WATCH_EVERY_S),
                               id="policy-watch", executor="watch")
        self.scheduler.start()

    def _expect(self, job: str, interval: timedelta) -> None:
        self.health.expect(job, interval)
        self.metrics.expect("node", job, interval.total_seconds())

    def _run(self, job: str) -> None:
        """One scheduled run; every failure is contained here so the loop goes on."""
        if self.stop.is_set():
            return
        try:
            summary: dict[str, Any] = run_job(job, self.policy, self.options, self.stop,
                                              observer=self.metrics)
            problem = summary.get("error")
        except errors.Unreachable as exc:
            self.health.unreachable(datetime.now(UTC))
            self.metrics.unreachable("node", job, datetime.now(UTC))
            problem = str(exc)
        except errors.UnsupportedRuntime as exc:  # a wrong --runtime: said, retried, no trace
            problem = str(exc)
        except Exception as exc:  # a bug must not end the DaemonSet pod in a crash loop
            self._log.opt(exception=exc).error("{} run crashed", job)
            problem = f"{type(exc).__name__}: {exc}"
        now = datetime.now(UTC)
        if problem is None:
            self.health.succeeded(job, now)
            self._delays.pop(job, None)
        else:
            self._retry(job, now, problem)

    def _retry(self, job: str, now: datetime, problem: str) -> None:
        delay = self._delays.get(job, _BACKOFF[0])
        self._delays[job] = min(delay * 2, _BACKOFF[1])
        self._log.error("{} run failed: {}; retrying in {}s", job, problem,
                        int(delay.total_seconds()))
        if not self.stop.is_set():
            self.scheduler.add_job(self._run, "date", run_date=now + delay, args=[job],
                                   id=f"{job}-retry", replace_existing=True)

    def _reload_if_changed(self) -> None:
        """All or nothing: the new policy and its whole schedule are built, then swapped in."""
        fingerprint = _fingerprint(self.options.policy_path)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        path = self.options.policy_path
        log = logger.bind(kind="policy", name=path, id=fingerprint[0] if fingerprint else "")
        try:
            policy = load_policy(path)
            plan = self.schedule_for(policy)
        except PolicyInvalid as exc:
            self.metrics.reload(accepted=False)
            log.error("the changed policy is invalid; the last good one stays in force "
                      "({} problems):\n{}", len(exc.errors), exc)
            return
        except Exception as exc:  # a reload must never leave the daemon half-changed
            self.metrics.reload(accepted=False)
            log.opt(exception=exc).error("the changed policy cannot be applied; the last good "
                                         "one stays in force: {}", exc)
            return
        self.metrics.reload(accepted=True)
        self._apply(policy, plan)
        self.metrics.policy(self.policy)
        log.info("policy reloaded (dryRun={})", self.policy.dryRun)

    def _apply(self, policy: Policy, plan: dict[str, tuple[BaseTrigger, timedelta]]) -> None:
        override = self.options.dry_run_override
        previous = self.policy.node.schedule
        self.policy = policy if override is None else replace(policy, dryRun=override)
        if self.policy.node.schedule == previous:
            return
        for job, (trigger, interval) in plan.items():
            self.scheduler.reschedule_job(job, trigger=trigger)
            self._expect(job, interval)


def _fingerprint(path: str) -> tuple[str, int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns
