"""One requests run's look at usage: measure, add to the record, keep the record.

This is the read side of the requests task plus kubekeeper's own memory: the
usage record in ``cluster.resourceRequests.usage.namespace`` is written by
every ``cluster run`` (dry runs too, as the node agent keeps its first-seen
record), never by ``cluster plan``, and nothing else is written here.

The source, in order: Prometheus when ``usage.prometheus.url`` is set, else
the metrics API sampled now. With neither, the run's first line (a ``run.note``)
says so once and the requests task does what it did before usage:
it checks that requests are set.

The record's window and half-life are the top-level ``recommend`` settings:
the record is one for the whole cluster, whatever a namespace overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agents.cluster import usage_store
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.inventory import Inventory, collector_paused
from agents.cluster.owners import attributed, owners
from agents.cluster.recommend import Measured
from agents.cluster.usage import ContainerUsage, Key, pruned
from agents.cluster.usage_sources import (
    METRICS_SOURCE,
    PROMETHEUS_SOURCE,
    pod_metrics,
    prometheus_evidence,
)
from agents.policy import ClusterPolicy

RULE = "resourceRequests.usage"
_FALLBACK = "requests are only checked for presence, as without usage"


@dataclass(frozen=True)
class Note:
    """A ``run.note`` line: ``source`` is the source it is about."""

    source: str
    message: str
    rule: str = RULE


@dataclass(frozen=True)
class Observation:
    measured: Measured
    notes: list[Note] = field(default_factory=list)
    """For the run's first lines (no source, a source that failed)."""
    problems: list[str] = field(default_factory=list)
    """For the summary's error: the record could not be read or written."""


def observe(port: ClusterPort, cluster: ClusterPolicy, inventory: Inventory, now: datetime,
            keep_record: bool) -> Observation:
    settings = cluster.resourceRequests
    owner_of = owners(inventory)
    url = settings.usage.prometheus.url
    if url:
        try:
            evidence = prometheus_evidence(url, settings.recommend, now.timestamp(), owner_of)
        except (OSError, ValueError) as err:
            return Observation(Measured(), [note(PROMETHEUS_SOURCE, f"Prometheus at {url} did "
                                                 f"not answer the usage queries ({err}); "
                                                 f"{_FALLBACK}")])
        return Observation(Measured(PROMETHEUS_SOURCE, prometheus=evidence))
    try:
        with collector_paused():
            samples = list(attributed(pod_metrics(port, cluster.pageSize), owner_of))
    except ApiError as err:
        why = _no_metrics(err)
        unserved = err.status in (404, 503)
        return Observation(Measured(), [note(METRICS_SOURCE, why)], [] if unserved else [why])
    return _recorded(port, cluster, samples, int(now.timestamp()), keep_record)


def _recorded(port: ClusterPort, cluster: ClusterPolicy, samples: list, now: int,
              keep_record: bool) -> Observation:
    settings = cluster.resourceRequests
    namespace = settings.usage.namespace
    try:
        loaded = usage_store.load(port, namespace, cluster.pageSize)
    except ApiError as err:
        problem = f"usage record not read ({err}); this run's samples are not kept"
        return Observation(Measured(METRICS_SOURCE, added({}, samples, cluster, now)),
                           problems=[problem])
    entries = added(loaded.entries, samples, cluster, now)
    problems = usage_store.save(port, namespace, entries, loaded) if keep_record else []
    return Observation(Measured(METRICS_SOURCE, entries), problems=problems)


def added(entries: dict[Key, ContainerUsage], samples: list, cluster: ClusterPolicy,
          now: int) -> dict[Key, ContainerUsage]:
    """The record with this run's samples in it and the long-gone containers out."""
    rules = cluster.resourceRequests.recommend
    window, half_life = int(rules.window.total_seconds()), int(rules.halfLife.total_seconds())
    updated = dict(entries)
    for key, sample in samples:
        entry = updated.get(key) or ContainerUsage.started(now)
        updated[key] = entry.add(sample.cores, sample.memory, now, half_life, window)
    return pruned(updated, now, window)


def _no_metrics(err: ApiError) -> str:
    if err.status in (404, 503):
        served = "not served" if err.status == 404 else "registered but unavailable"
        return (f"no usage source: the metrics API (metrics.k8s.io) is {served} ({err.status}) "
                f"and cluster.resourceRequests.usage.prometheus.url is unset; {_FALLBACK}")
    return f"the metrics API could not be read: {err}; {_FALLBACK}"


def note(source: str, why: str) -> Note:
    return Note(source, why)
