"""Reading Prometheus text back in tests, and what a run's report lines say it must hold.

Both sides are reduced to the same plain counters, so a test compares them with ``==``
and a difference names the exact series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ACTION_LABELS = ("agent", "task", "kind", "action", "result")


def samples(text: str, name: str, keys: Iterable[str] = (),
            where: Mapping[str, str] | None = None) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, keyed by the values of ``keys``; zeros left out.

    ``where`` keeps only samples with those label values (a Pushgateway's ``task``).
    """
    keys = tuple(keys)
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != name or not sample.value:
                continue
            if where and any(sample.labels.get(k) != v for k, v in where.items()):
                continue
            key = tuple(sample.labels.get(k, "") for k in keys)
            found[key] = found.get(key, 0) + sample.value
    return found


def action_counts(lines: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], float]:
    """``kubekeeper_actions_total`` as the outcome lines count it."""
    counted = Counter(tuple(line[k] for k in ACTION_LABELS) for line in lines
                      if line["event"] == "action")
    return {key: float(n) for key, n in counted.items()}


def reclaimed(lines: Iterable[Mapping[str, Any]]) -> dict[tuple[str, ...], float]:
    """``kubekeeper_reclaimed_bytes_total``: the bytes of done deletions and truncations."""
    total: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        if (line["event"] == "action" and line["action"] in ("delete", "truncate")
                and line["result"] == "done" and line.get("bytes")):
            total[(line["kind"],)] += line["bytes"]
    return {key: float(n) for key, n in total.items()}
