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


DESTRUCTIVE = (Verb.DELETE, Verb.TRUNCATE)
"""Verbs that lose data: each counts against ``maxDeletionsPerRun``."""


@dataclass(frozen=True)
class Action:
    """One decision of a planner, carrying the policy rule that made it.

    ``rule`` is the policy key path (``images.unused``) and ``why`` the facts
    that tripped it (``unused for 9d > 7d``); together they are the report's
    ``reason``, so on-call can trace every line back to policies.yaml.

    ``skip`` is a planner's decision to keep an object the rule would
    otherwise act on (an unknown age, a Job another controller owns): the
    action is reported ``skipped`` with that explanation, never carried out,
    and never counted against the cap.
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
    skip: str | None = None
    sealed: str | None = field(default=None, repr=False)
    """The complete manifest of an object to delete, for the recycle bin only: never
    written to a report line (``details["manifest"]`` is the redacted one)."""

    @property
    def reason(self) -> str:
        return f"{self.rule}: {self.why}"

    @property
    def mutates(self) -> bool:
        """True when carrying the action out changes something."""
        return self.verb is not Verb.REPORT and self.skip is None

    @property
    def destructive(self) -> bool:
        return self.verb in DESTRUCTIVE and self.skip is None


@dataclass(frozen=True)
class Outcome:
    """The result of one action; ``bytes`` is what was (or would be) freed."""

    action: Action
    result: Result
    error: str | None = None
    bytes: int | None = None
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def over_cap(actions: Iterable[Action], cap: int) -> str | None:
    """Why the plan must not run, or None: more destructive actions than the cap.

    Decided from the plan itself, whatever produced it: every deletion and
    every truncation counts.  A plan that big usually means a policy mistake
    (a glob too wide, a TTL of 0s), so the whole run is refused rather than
    trimmed to the first N.
    """
    destructive = sum(1 for a in actions if a.destructive)
    if destructive > cap:
        return (f"plan has {destructive} destructive actions (deletions and truncations), "
                f"more than maxDeletionsPerRun={cap}; nothing was changed "
                "(raise the cap or narrow the policy)")
    return None


def kept(action: Action) -> Outcome:
    """The outcome of an action its planner decided to keep (``action.skip``)."""
    return Outcome(action, Result.SKIPPED, error=action.skip)


def refused(action: Action, why: str) -> Outcome:
    """The outcome of an action the run decided not to attempt."""
    if action.skip is not None:
        return kept(action)
    if action.verb is Verb.REPORT:
        return Outcome(action, Result.DONE, bytes=action.bytes)
    return Outcome(action, Result.SKIPPED, error=why)


def dry_run(action: Action) -> Outcome:
    """What a dry run reports for an action it does not carry out."""
    if action.skip is not None:
        return kept(action)
    if action.verb is Verb.REPORT:
        return Outcome(action, Result.DONE)
    return Outcome(action, Result.PLANNED, bytes=action.bytes)
