"""What a planner decides (``Action``) and what became of it (``Outcome``).

Both agents speak this vocabulary, so one report format and one cap check
serve the node agent and the cluster tasks alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Verb(StrEnum):
    DELETE = "delete"
    PATCH = "patch"
    CREATE = "create"
    TRUNCATE = "truncate"
    REPORT = "report"


class Result(StrEnum):
    DONE = "done"
    PLANNED = "planned"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Action:
    """One decision of a planner, carrying the policy rule that made it.

    ``rule`` is the policy key path (``images.unused``) and ``why`` the facts
    that tripped it (``unused for 9d > 7d``); together they are the report's
    ``reason``, so on-call can trace every line back to policies.yaml.
    """

    kind: str
    name: str
    verb: Verb
    rule: str
    why: str
    id: str = ""
    namespace: str | None = None
    bytes: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.why}"

    @property
    def mutates(self) -> bool:
        return self.verb is not Verb.REPORT


@dataclass(frozen=True)
class Outcome:
    """The result of one action; ``bytes`` is what was (or would be) freed."""

    action: Action
    result: Result
    error: str | None = None
    bytes: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def over_cap(actions: Iterable[Action], cap: int) -> str | None:
    """Why the plan must not run, or None: more deletions than ``maxDeletionsPerRun``.

    A plan that big usually means a policy mistake (a glob too wide, a TTL of
    0s), so the whole run is refused rather than trimmed to the first N.
    """
    deletions = sum(1 for a in actions if a.verb is Verb.DELETE)
    if deletions > cap:
        return (f"plan has {deletions} deletions, more than maxDeletionsPerRun={cap}; "
                "nothing was changed (raise the cap or narrow the policy)")
    return None


def refused(action: Action, why: str) -> Outcome:
    """The outcome of an action the run decided not to attempt."""
    if action.verb is Verb.REPORT:
        return Outcome(action, Result.DONE, bytes=action.bytes)
    return Outcome(action, Result.SKIPPED, error=why)
