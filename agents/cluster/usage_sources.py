"""Where usage is measured: the metrics API's PodMetrics, or Prometheus over the window.

Both answer per pod; ``owners.owners`` maps each pod to the top-level owner
the requests task reports against, so usage and findings meet on one key.

Prometheus is asked four instant queries (CPU percentile, memory peak,
sample count, first sample) through ``urllib``; only pods that exist now can
be attributed to an owner, since Prometheus alone does not know owners.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agents.cluster.api import ClusterPort
from agents.cluster.recommend import Evidence
from agents.cluster.resources import RESOURCES
from agents.cluster.usage import Key
from agents.policy import Recommend
from agents.units import format_duration, parse_quantity

METRICS_SOURCE = "metrics.k8s.io"
PROMETHEUS_SOURCE = "prometheus"
_CONTAINERS = 'container!="",container!="POD"'
_TIMEOUT = 30


@dataclass(frozen=True)
class Sample:
    namespace: str
    pod: str
    container: str
    cores: float
    memory: float


def pod_metrics(port: ClusterPort, page_size: int) -> Iterator[Sample]:
    """Every container's current usage, cluster-wide, paginated."""
    for item in port.list_all(RESOURCES["podmetrics"], page_size=page_size):
        yield from parse_pod_metrics(item)


def parse_pod_metrics(item: Mapping[str, Any]) -> Iterator[Sample]:
    """A PodMetrics item's containers; one with an unreadable quantity is left out."""
    meta = item.get("metadata") or {}
    for container in item.get("containers") or ():
        usage = container.get("usage") or {}
        try:
            cores = float(parse_quantity(usage.get("cpu", "0")))
            memory = float(parse_quantity(usage.get("memory", "0")))
        except ValueError:
            continue
        yield Sample(meta.get("namespace", ""), meta.get("name", ""),
                     container.get("name", ""), cores, memory)


def prometheus_queries(rules: Recommend) -> dict[str, str]:
    """The PromQL of each figure, over the window (the subquery steps every 5m)."""
    window = format_duration(rules.window)
    fraction = rules.cpuPercentile / 100
    memory = f"container_memory_working_set_bytes{{{_CONTAINERS}}}"
    return {
        "cpu": f"quantile_over_time({fraction:g}, rate(container_cpu_usage_seconds_total"
               f"{{{_CONTAINERS}}}[5m])[{window}:5m])",
        "memory": f"max_over_time({memory}[{window}])",
        "samples": f"count_over_time({memory}[{window}])",
        "history": f"time() - min_over_time(timestamp({memory})[{window}:5m])",
    }


def prometheus_evidence(url: str, rules: Recommend, now: float,
                        owner_of: Mapping[tuple[str, str], tuple[str, str]]
                        ) -> dict[Key, Evidence]:
    """Evidence per owner and container; raises OSError or ValueError when Prometheus fails."""
    answers = {name: query_prometheus(url, promql, now)
               for name, promql in prometheus_queries(rules).items()}
    return evidence_from_answers(answers, owner_of)


def query_prometheus(url: str, promql: str, now: float) -> dict:
    query = urllib.parse.urlencode({"query": promql, "time": f"{now:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=_TIMEOUT) as answer:
        body = json.loads(answer.read())
    if body.get("status") != "success":
        raise ValueError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
    return body


def evidence_from_answers(answers: Mapping[str, dict],
                          owner_of: Mapping[tuple[str, str], tuple[str, str]]
                          ) -> dict[Key, Evidence]:
    """Per owner and container: the highest pod's CPU and memory, samples summed,
    the longest history (replicas of one workload are alike; the hungriest decides)."""
    figures: dict[Key, dict[str, float]] = {}
    for name, body in answers.items():
        for series in (body.get("data") or {}).get("result") or ():
            labels, value = series.get("metric") or {}, float(series["value"][1])
            owner = owner_of.get((labels.get("namespace", ""), labels.get("pod", "")))
            if owner is None or value != value:
                continue
            key = (labels["namespace"], *owner, labels.get("container", ""))
            mine = figures.setdefault(key, {})
            mine[name] = mine.get(name, 0.0) + value if name == "samples" else max(
                mine.get(name, 0.0), value)
    return {key: Evidence(f.get("cpu"), f.get("memory"), int(f.get("samples", 0)),
                          timedelta(seconds=int(f.get("history", 0))), PROMETHEUS_SOURCE)
            for key, f in figures.items()}
