"""The Prometheus families of kubekeeper: the one place outcomes become metrics.

``Metrics`` observes a ``Reporter``: it reads the very outcome lines and
summaries the report writes, after they are written, so the counters can never
disagree with the report (an intent line counts nothing; its outcome does).
Each process owns one ``CollectorRegistry``, passed in; nothing here is global.

Labels are the low-cardinality fields of a line (agent, task, kind, action,
result; the image store's ``path`` on the disk families) and never an object's
name, namespace or id.  Bytes are counted as
reclaimed only for deletions and truncations that were ``done``: a dry run's
``planned`` bytes are reclaimable, not reclaimed.

A run's ``outcome`` label is ``success`` (no action failed), ``partial`` (some
actions failed), ``aborted`` (the deletion cap refused the plan) or ``error``
(the run itself failed, e.g. the runtime or the API server was unreachable).
``success`` and ``partial`` also set the last-success heartbeat: the run
completed, and its failed actions have their own alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import push_to_gateway

from agents.policy import Policy, to_plain

_FREES_SPACE = ("delete", "truncate")
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
"""From a cluster task over a few objects to a node cleanup near its deadline."""
PUSH_JOB = "kubekeeper"
"""The Pushgateway's ``job``; each task is its own group, ``cronjob="kubekeeper-<task>"``
(pushed metrics must not carry a grouping label, and they all carry ``task``)."""


class Metrics:
    """The families, registered on ``registry``; a ``Reporter`` observer (thread-safe)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self._actions = Counter(
            "kubekeeper_actions", "Actions reported, by outcome (one per report line).",
            ("agent", "task", "kind", "action", "result"), registry=registry)
        self._reclaimed = Counter(
            "kubekeeper_reclaimed_bytes", "Bytes freed by deletions and truncations that "
            "were done.", ("kind",), registry=registry)
        self._duration = Histogram(
            "kubekeeper_run_duration_seconds", "How long a run took, from start to summary.",
            ("agent", "task"), buckets=DURATION_BUCKETS, registry=registry)
        self._last_run = Gauge(
            "kubekeeper_last_run_timestamp_seconds", "When a run with this outcome last "
            "ended (success, partial, aborted, error).", ("agent", "task", "outcome"),
            registry=registry)
        self._last_success = Gauge(
            "kubekeeper_last_success_timestamp_seconds", "When a run last completed "
            "(outcome success or partial).", ("agent", "task"), registry=registry)
        self._last_failure = Gauge(
            "kubekeeper_last_failure_timestamp_seconds", "When a run in which some action "
            "failed last ended.", ("agent", "task"), registry=registry)
        self._cap_aborts = Counter(
            "kubekeeper_deletion_cap_aborts", "Runs refused whole by maxDeletionsPerRun.",
            ("agent", "task"), registry=registry)
        self._reloads = Counter(
            "kubekeeper_policy_reloads", "Policy file changes seen by the daemon, accepted "
            "or rejected.", ("result",), registry=registry)
        self._policy = Gauge(
            "kubekeeper_policy_info", "The policy in force (1): hash is the start of the "
            "SHA-256 of `kubekeeper policy show`.", ("hash",), registry=registry)
        self._interval = Gauge(
            "kubekeeper_schedule_interval_seconds", "The longest gap between two scheduled "
            "runs of a daemon job (plus jitter).", ("agent", "task"), registry=registry)
        self._disk_usage = Gauge(
            "kubekeeper_disk_usage_ratio", "Used (or reserved) share of the image store's "
            "filesystem, at the last cleanup run; path is the store's directory on the host.",
            ("path",), registry=registry)
        self._disk_capacity = Gauge(
            "kubekeeper_disk_capacity_bytes", "Size of the image store's filesystem.",
            ("path",), registry=registry)
        self._disk_high = Gauge(
            "kubekeeper_disk_high_ratio", "images.diskPressure.highPercent of the policy in "
            "force, as a ratio.", registry=registry)

    def action(self, line: Mapping[str, Any]) -> None:
        """One outcome line of the report."""
        self._actions.labels(line["agent"], line["task"], line["kind"], line["action"],
                             line["result"]).inc()
        if line["action"] in _FREES_SPACE and line["result"] == "done" and line.get("bytes"):
            self._reclaimed.labels(line["kind"]).inc(line["bytes"])
        if line["kind"] == "disk" and line.get("capacity"):
            path = line.get("path") or line["name"]
            self._disk_capacity.labels(path).set(line["capacity"])
            self._disk_usage.labels(path).set(
                (line["capacity"] - line["available"]) / line["capacity"])

    def summary(self, line: Mapping[str, Any]) -> None:
        """The ``run.summary`` line: duration, heartbeat and cap refusals."""
        agent, task = line["agent"], line["task"]
        self._duration.labels(agent, task).observe(line["duration_s"])
        outcome = run_outcome(line)
        self._ended(agent, task, outcome, _timestamp(line["ts"]))
        if outcome == "aborted":
            self._cap_aborts.labels(agent, task).inc()
        if line["results"].get("failed"):
            self._last_failure.labels(agent, task).set(_timestamp(line["ts"]))

    def unreachable(self, agent: str, task: str, at: datetime) -> None:
        """A run that ended before its report began (runtime or API server unreachable)."""
        self._ended(agent, task, "error", at.timestamp())

    def expect(self, agent: str, task: str, interval_s: float) -> None:
        """A daemon job's schedule; its cap-abort counter starts at 0 so increase() sees 1."""
        self._interval.labels(agent, task).set(interval_s)
        self._cap_aborts.labels(agent, task)

    def policy(self, policy: Policy) -> None:
        """The policy now in force (at start and after each accepted reload)."""
        self._policy.clear()
        self._policy.labels(policy_hash(policy)).set(1)
        self._disk_high.set(policy.node.images.diskPressure.highPercent / 100)

    def reload(self, accepted: bool) -> None:
        self._reloads.labels("accepted" if accepted else "rejected").inc()

    def watch_reloads(self) -> None:
        """Both reload results exist from the start, at 0, so the first rejection counts."""
        for result in ("accepted", "rejected"):
            self._reloads.labels(result)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def push(self, url: str, task: str) -> bool:
        """Replace the task's group on a Pushgateway; a failure is logged, never raised."""
        try:
            push_to_gateway(url, job=PUSH_JOB, grouping_key={"cronjob": f"kubekeeper-{task}"},
                            registry=self.registry, timeout=10)
        except Exception as exc:  # the report, not the push, is the run's record
            logger.bind(kind="pushgateway", name=url, id=task).warning(
                "metrics push failed: {}", exc)
            return False
        return True

    def _ended(self, agent: str, task: str, outcome: str, at: float) -> None:
        self._last_run.labels(agent, task, outcome).set(at)
        if outcome in ("success", "partial"):
            self._last_success.labels(agent, task).set(at)


def run_outcome(summary: Mapping[str, Any]) -> str:
    """success, partial, aborted or error: what a run's summary says about the run."""
    if summary.get("error"):
        return "error"
    if summary.get("aborted"):
        return "aborted"
    return "partial" if summary.get("results", {}).get("failed") else "success"


def policy_hash(policy: Policy) -> str:
    """12 hex digits of the SHA-256 of the effective policy, as ``policy show`` prints it.

    The effective policy, not the file: comments and layout do not change it, a
    ``--dry-run`` override does.
    """
    text = yaml.safe_dump(to_plain(policy), sort_keys=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _timestamp(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC).timestamp()

