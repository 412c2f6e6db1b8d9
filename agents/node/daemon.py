"""Daemon mode: the jobs on the policy's schedules, policy reload, backoff, SIGTERM.

- One run at a time: every job shares a single worker thread, so a cleanup
  and a log audit never overlap; a run that is still going when its next turn
  comes makes the missed turns coalesce into one.
- Each job runs once at start (after a random jitter), then on its schedule,
  each start delayed by a random ``jitter``.
- The policy file is checked every 2s (path, inode, size and mtime, links
  followed, so a ConfigMap's symlink swap counts).  A valid new policy takes effect for the
  next run, with ``--dry-run``/``--no-dry-run`` re-applied; an invalid one is
  logged with every error and the last good policy stays in force.
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
from agents.policy_loader import PolicyInvalid, load_policy

WATCH_EVERY_S = 2
_BACKOFF = (timedelta(seconds=5), timedelta(minutes=5))


def serve(policy: Policy, options: NodeOptions, stop: threading.Event) -> int:
    """Run until ``stop`` is set (SIGTERM); returns exit code 0."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_start_time_seconds: the stale-run alert
    daemon = _Daemon(policy, options, stop, Metrics(registry))
    ports = dict.fromkeys(p for p in (options.health_port, options.metrics_port)
                          if p is not None)
    servers = [health.serve(port, daemon.health, metrics=daemon.metrics.exposition)
               for port in ports]
    daemon.start()
    while not stop.wait(1):
        pass
    logger.bind(kind="daemon", name="node", id=os.getpid()).info("stopping (signal received)")
    daemon.scheduler.shutdown(wait=True)
    for server in servers:
        server.shutdown()
    return errors.EXIT_OK


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
        following = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
        gaps.append(following - fire)
        fire = following
    return max(gaps)


class _Daemon:
    def __init__(self, policy: Policy, options: NodeOptions, stop: threading.Event,
                 metrics: Metrics):
        self.policy, self.options, self.stop, self.metrics = policy, options, stop, metrics
        metrics.policy(policy)
        metrics.watch_reloads()
        self.health = health.Health(datetime.now(UTC))
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(1), "watch": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._fingerprint = _fingerprint(options.policy_path)
        self._delays: dict[str, timedelta] = {}
        self._log = logger.bind(kind="daemon", name="node", id=os.getpid())

    def start(self) -> None:
        now = datetime.now(UTC)
        schedule = self.policy.node.schedule
        for job in self.options.jobs:
            delay = random.uniform(0, schedule.jitter.total_seconds())
            self.scheduler.add_job(self._run, self._trigger(job), args=[job], id=job,
                                   next_run_time=now + timedelta(seconds=delay))
            self._expect(job, interval_of(getattr(schedule, job), now) + schedule.jitter)
        self.scheduler.add_job(self._reload_if_changed, IntervalTrigger(seconds=WATCH_EVERY_S),
                               id="policy-watch", executor="watch")
        self.scheduler.start()

    def _expect(self, job: str, interval: timedelta) -> None:
        self.health.expect(job, interval)
        self.metrics.expect("node", job, interval.total_seconds())

    def _trigger(self, job: str) -> BaseTrigger:
        schedule = self.policy.node.schedule
        return trigger_for(getattr(schedule, job), schedule.jitter)

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
        fingerprint = _fingerprint(self.options.policy_path)
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        path = self.options.policy_path
        log = logger.bind(kind="policy", name=path, id=fingerprint[0] if fingerprint else "")
        try:
            policy = load_policy(path)
        except PolicyInvalid as exc:
            self.metrics.reload(accepted=False)
            log.error("the changed policy is invalid; the last good one stays in force "
                      "({} problems):\n{}", len(exc.errors), exc)
            return
        self.metrics.reload(accepted=True)
        override = self.options.dry_run_override
        previous = self.policy.node.schedule
        self.policy = policy if override is None else replace(policy, dryRun=override)
        now = datetime.now(UTC)
        schedule = self.policy.node.schedule
        for job in self.options.jobs if schedule != previous else ():
            self.scheduler.reschedule_job(job, trigger=self._trigger(job))
            self._expect(job, interval_of(getattr(schedule, job), now) + schedule.jitter)
        self.metrics.policy(self.policy)
        log.info("policy reloaded (dryRun={})", self.policy.dryRun)


def _fingerprint(path: str) -> tuple[str, int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return os.path.realpath(path), info.st_ino, info.st_size, info.st_mtime_ns
