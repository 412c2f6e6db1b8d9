"""Kubernetes Events on the objects kubekeeper acted on: best effort, never fatal.

An admin running ``kubectl describe`` on a Deployment or reading the events
of a namespace sees who lowered a limit or deleted a Job, which policy rule
made it happen, and (as a ``Warning``) what kubekeeper failed to do or chose
to keep, without access to kubekeeper's logs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from loguru import logger

from agents.actions import Action, Outcome, Result, Verb
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.resources import RESOURCES
from agents.report import rfc3339

DONE_REASONS = {Verb.PATCH: "KubekeeperPatched", Verb.DELETE: "KubekeeperDeleted"}
_PAST = {Verb.PATCH: "patched", Verb.DELETE: "deleted"}
_WARNINGS = {Result.FAILED: ("KubekeeperFailed", "could not"),
             Result.SKIPPED: ("KubekeeperSkipped", "did not")}
_MESSAGE_LIMIT = 1000


def about(outcome: Outcome) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event an outcome deserves, or None.

    Reports that were only reports, creates done, and deletes of what was already
    gone (a ``note`` says so) deserve none.
    """
    action = outcome.action
    if outcome.result is Result.DONE and action.mutates and action.verb in DONE_REASONS:
        if outcome.details.get("note"):
            return None
        return ("Normal", DONE_REASONS[action.verb],
                f"kubekeeper {_PAST[action.verb]} this {_what(action)} under policy rule "
                f"{action.reason}")
    if outcome.result in _WARNINGS:
        reason, verb = _WARNINGS[outcome.result]
        return ("Warning", reason, f"kubekeeper {verb} {action.verb} this {_what(action)} "
                f"(policy rule {action.reason}): {outcome.error}")
    return None


def _what(action: Action) -> str:
    """Computed only for an Event: a run's own notes (kind ``usage``) are no API kind."""
    return RESOURCES[action.kind].api_kind


def event_body(outcome: Outcome, now: datetime) -> dict | None:
    """A core/v1 Event about the outcome's object, or None when it deserves none."""
    said = about(outcome)
    if said is None:
        return None
    kind, reason, message = said
    action, stamp = outcome.action, rfc3339(now)
    resource = RESOURCES[action.kind]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{action.name[:200]}.", "namespace": action.namespace},
        "involvedObject": {"apiVersion": resource.api_version, "kind": resource.api_kind,
                           "name": action.name, "namespace": action.namespace,
                           "uid": action.id},
        "reason": reason, "type": kind, "message": message[:_MESSAGE_LIMIT],
        "source": {"component": "kubekeeper"}, "reportingComponent": "kubekeeper",
        "reportingInstance": os.environ.get("HOSTNAME", "kubekeeper"),
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def record(port: ClusterPort, outcome: Outcome) -> bool:
    """Post the outcome's Event, if it deserves one; a failure is logged and swallowed."""
    body = event_body(outcome, datetime.now(UTC))
    if body is None:
        return False
    action = outcome.action
    try:
        port.create(RESOURCES["event"], action.namespace or "default", body)
    except ApiError as exc:
        logger.bind(kind=action.kind, name=action.name, id=action.id).warning(
            "event {} not recorded: {}", body["reason"], exc)
        return False
    return True
