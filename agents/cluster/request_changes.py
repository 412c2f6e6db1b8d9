"""What should change in one container's requests, and the evidence: pure.

With usage measured, a required CPU or memory request is set to the
recommendation when it differs from the current one by more than
``minChange`` (a limit without a request counts as the request the API server
copies from it). Without a recommendation yet (too little history), only a
missing request is filled, with the policy default, as without usage; a
container whose usage is being recorded but is short of ``minHistory`` still
gets its say (how much history there is), so an admin sees it coming instead of
silence.

A limit below the new request is a conflict: the request is not raised past
it (the API server would refuse it, and kubekeeper never lowers a limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.cluster.recommend import (
    Measured,
    Recommendation,
    differs,
    recommend,
    short_of_history,
)
from agents.cluster.records import Container
from agents.policy import ResourceRequests
from agents.units import format_age, format_duration, parse_quantity

MEASURED = ("cpu", "memory")


@dataclass(frozen=True)
class Change:
    """One container's outcome: requests to write, and why."""

    name: str
    init: bool
    wanted: dict[str, str] = field(default_factory=dict)
    """Resource → the request to write (a recommendation, or a default for a missing one)."""
    recommended: tuple[str, ...] = ()
    """The resources of ``wanted`` that come from usage (the rest are defaults)."""
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    waiting: str | None = None
    """Why there is no recommendation yet (the history so far), or None."""
    awaits_history: bool = False
    """Usage of a required CPU or memory is recorded, but for less than ``minHistory``."""

    @property
    def changes_set_requests(self) -> bool:
        return any(f"requests.{r}" not in self.missing for r in self.wanted)

    def why(self) -> str:
        kind = "init container" if self.init else "container"
        parts = [f"{r} {e['request'] or 'unset'} → {e['recommended']} ({_basis(r, e)})"
                 for r, e in self.evidence.items()]
        text = f"{kind} {self.name}: " + ", ".join(parts) if parts else ""
        if self.missing:
            text = "; ".join(filter(None, (text, f"{kind} {self.name} lacks "
                                           f"{', '.join(self.missing)}")))
        if self.waiting and self.missing:
            text += f" (usage: {self.waiting})"
        elif self.awaits_history:
            text = "; ".join(filter(None, (text, f"{kind} {self.name}: no recommendation "
                                           f"yet: {self.waiting}")))
        return text + "".join(f"; {c}" for c in self.conflicts)


def change(container: Container, key: tuple[str, str, str, str], rules: ResourceRequests,
           measured: Measured, now: int) -> Change:
    """The container's change under ``rules`` given what was measured for ``key``."""
    missing = tuple([f"requests.{r}" for r in rules.require
                     if r not in container.requests and r not in container.limits]
                    + [f"limits.{r}" for r in rules.requireLimits if r not in container.limits])
    evidence = measured.evidence(key, rules.recommend, now)
    found = recommend(evidence, rules.recommend) if evidence else None
    waiting = (short_of_history(evidence, rules.recommend) if evidence
               else "no usage seen yet") if found is None else None
    awaits = found is None and evidence is not None and any(r in MEASURED
                                                            for r in rules.require)
    wanted, shown, conflicts = {}, {}, []
    for resource in rules.require:
        current = container.value(f"requests.{resource}") or container.value(
            f"limits.{resource}")
        value = _value(found, resource)
        if value is not None and differs(current, value, rules.recommend.minChange):
            wanted[resource] = found.quantities()[resource]
            shown[resource] = _evidence(found, resource, current, rules)
            conflicts += _conflict(container, resource, value, wanted[resource])
        elif value is None and f"requests.{resource}" in missing:
            wanted[resource] = rules.defaults.for_resource(resource)
    return Change(container.name, container.init, wanted, tuple(shown), shown,
                  tuple(conflicts), missing, waiting, awaits)


def _value(found: Recommendation | None, resource: str) -> Decimal | None:
    if found is None or resource not in MEASURED:
        return None
    if resource == "cpu":
        return None if found.millicores is None else Decimal(found.millicores) / 1000
    return None if found.memory is None else Decimal(found.memory)


def _conflict(container: Container, resource: str, value: Decimal, wanted: str) -> list[str]:
    limit = container.value(f"limits.{resource}")
    try:
        below = limit is not None and parse_quantity(limit) < value
    except ValueError:
        below = False
    return [f"limits.{resource} {limit} of container {container.name} is below the "
            f"recommended request {wanted}"] if below else []


def _evidence(found: Recommendation, resource: str, current: str | None,
              rules: ResourceRequests) -> dict[str, Any]:
    ev, recommend_rules = found.evidence, rules.recommend
    usage = (f"{math.ceil((ev.cpu or 0) * 1000)}m" if resource == "cpu"
             else f"{math.ceil((ev.memory or 0) / 2**20)}Mi")
    return {"request": current, "recommended": found.quantities()[resource], "usage": usage,
            "percentile": recommend_rules.cpuPercentile if resource == "cpu" else "peak",
            "margin": recommend_rules.margin, "window": format_duration(recommend_rules.window),
            "history": format_age(ev.history), "samples": ev.samples, "source": ev.source}


def _basis(resource: str, e: dict[str, Any]) -> str:
    what = f"p{e['percentile']:g}" if resource == "cpu" else "peak"
    return (f"{what} {e['usage']} +{e['margin']:g}% over {e['history']} of "
            f"{e['window']}, {e['samples']} samples, {e['source']}")
