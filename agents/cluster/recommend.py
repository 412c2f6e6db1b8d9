"""From measured usage to a container's requests: pure arithmetic, no I/O.

- CPU: the ``cpuPercentile`` of usage over the window, plus ``margin``, within
  ``[minCpu, maxCpu]``, rounded up to a whole millicore.
- Memory: the peak working set over the window, plus ``margin``, within
  ``[minMemory, maxMemory]``, and never below the peak itself, even when the
  ceiling is lower: a request below what the container holds is the first the
  kubelet evicts under memory pressure. Rounded up to a whole MiB where that
  stays within the ceiling.
- Nothing is recommended before ``minHistory`` of history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from agents.cluster.usage import ContainerUsage, Key
from agents.policy import Recommend
from agents.units import format_age, parse_quantity

_MI = 2**20


@dataclass(frozen=True)
class Evidence:
    """What a recommendation stands on, whichever source measured it."""

    cpu: float | None
    """Cores at the percentile over the window."""
    memory: float | None
    """Peak working set over the window, bytes."""
    samples: int
    history: timedelta
    source: str


@dataclass(frozen=True)
class Recommendation:
    millicores: int | None
    memory: int | None
    """Bytes."""
    evidence: Evidence

    def quantities(self) -> dict[str, str]:
        """The requests as a pod spec writes them (``250m``, ``320Mi``)."""
        out = {}
        if self.millicores is not None:
            out["cpu"] = f"{self.millicores}m"
        if self.memory is not None:
            out["memory"] = (f"{self.memory // _MI}Mi" if self.memory % _MI == 0
                             else str(self.memory))
        return out


def evidence_of(usage: ContainerUsage, rules: Recommend, now: int, source: str) -> Evidence:
    window = int(rules.window.total_seconds())
    return Evidence(usage.cpu.percentile(rules.cpuPercentile / 100), usage.peak(now, window),
                    usage.samples, timedelta(seconds=max(0, usage.last - usage.first)), source)


def short_of_history(evidence: Evidence, rules: Recommend) -> str | None:
    """Why there is no recommendation yet (``3h of history, 1d needed``), or None."""
    if evidence.history >= rules.minHistory and evidence.samples > 0:
        return None
    return (f"{format_age(evidence.history)} of usage history ({evidence.samples} samples), "
            f"{format_age(rules.minHistory)} needed")


def recommend(evidence: Evidence, rules: Recommend) -> Recommendation | None:
    """The requests the evidence supports, or None before ``minHistory``."""
    if short_of_history(evidence, rules):
        return None
    grow = 1 + rules.margin / 100
    cpu = None if evidence.cpu is None else _millicores(evidence.cpu * grow, rules)
    memory = None if evidence.memory is None else _memory(evidence.memory, grow, rules)
    return Recommendation(cpu, memory, evidence)


def _millicores(cores: float, rules: Recommend) -> int:
    floor = math.ceil(parse_quantity(rules.minCpu) * 1000)
    ceiling = math.floor(parse_quantity(rules.maxCpu) * 1000)
    return min(max(math.ceil(cores * 1000 - 1e-9), floor), ceiling)


def _memory(peak: float, grow: float, rules: Recommend) -> int:
    floor = math.ceil(parse_quantity(rules.minMemory))
    ceiling = math.floor(parse_quantity(rules.maxMemory))
    wanted = max(min(max(math.ceil(peak * grow), floor), ceiling), math.ceil(peak))
    rounded = -(-wanted // _MI) * _MI
    return rounded if rounded <= max(ceiling, math.ceil(peak)) else wanted


def differs(current: str | None, wanted: Decimal, min_change: float) -> bool:
    """True when ``current`` is unset, unreadable, or off ``wanted`` by more than
    ``min_change`` percent of itself."""
    if current is None:
        return True
    try:
        have = parse_quantity(current)
    except ValueError:
        return True
    if have <= 0:
        return True
    return abs(wanted - have) / have * 100 > Decimal(str(min_change))


@dataclass(frozen=True)
class Measured:
    """The usage a run measured, as the planner sees it.

    ``source`` None means there is none (no metrics API, no Prometheus): the
    planner then does what it did before usage existed. ``entries`` are the
    record's (sampled from the metrics API), ``prometheus`` what Prometheus
    answered for the window; evidence comes from whichever holds the container.
    """

    source: str | None = None
    entries: Mapping[Key, ContainerUsage] = field(default_factory=dict)
    prometheus: Mapping[Key, Evidence] = field(default_factory=dict)

    def evidence(self, key: Key, rules: Recommend, now: int) -> Evidence | None:
        if key in self.prometheus:
            return self.prometheus[key]
        entry = self.entries.get(key)
        return None if entry is None or self.source is None else evidence_of(
            entry, rules, now, self.source)
