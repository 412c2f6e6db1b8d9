"""Kubernetes Events on the objects kubekeeper changed: best effort, never fatal.

An admin running ``kubectl describe`` on a Deployment or reading the events
of a namespace sees who lowered a limit or deleted a Job, and which policy
rule made it happen, without access to kubekeeper's logs.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from loguru import logger

from agents.actions import Action, Verb
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.resources import RESOURCES
from agents.report import rfc3339

REASONS = {Verb.PATCH: "KubekeeperPatched", Verb.DELETE: "KubekeeperDeleted"}
_MESSAGE_LIMIT = 1000


def event_body(action: Action, now: datetime) -> dict:
    """A core/v1 Event about the action's object; the message names the policy rule."""
    resource = RESOURCES[action.kind]
    stamp = rfc3339(now)
    verb = {Verb.PATCH: "patched", Verb.DELETE: "deleted"}[action.verb]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{action.name[:200]}.", "namespace": action.namespace},
        "involvedObject": {"apiVersion": resource.api_version, "kind": resource.api_kind,
                           "name": action.name, "namespace": action.namespace,
                           "uid": action.id},
        "reason": REASONS[action.verb], "type": "Normal",
        "message": f"kubekeeper {verb} this {resource.api_kind} under policy rule "
                   f"{action.reason}"[:_MESSAGE_LIMIT],
        "source": {"component": "kubekeeper"}, "reportingComponent": "kubekeeper",
        "reportingInstance": os.environ.get("HOSTNAME", "kubekeeper"),
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def record(port: ClusterPort, action: Action) -> bool:
    """Post the Event for a patch or delete; a failure is logged and swallowed."""
    if action.verb not in REASONS:
        return False
    try:
        port.create(RESOURCES["event"], action.namespace or "default",
                    event_body(action, datetime.now(UTC)))
    except ApiError as exc:
        logger.bind(kind=action.kind, name=action.name, id=action.id).warning(
            "event {} not recorded: {}", REASONS[action.verb], exc)
        return False
    return True
