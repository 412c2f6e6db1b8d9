"""The chart's generated parts: values.yaml's ``policy:`` block and values.schema.json.

``policy:`` is the shipped policies.yaml, comments and all, indented under the key, so
the chart's default policy is the file and not a copy kept by hand.  The values schema
embeds the policy schema as a resource of its own (its ``$id`` keeps its ``$ref``s local).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from agents.node.runtimes import CHOICES
from agents.policy_schema import policy_schema

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kubekeeper"
POLICY_KEY = "\npolicy:\n"
TASKS = ("requests", "revisions", "jobs")


def values_text() -> str:
    """values.yaml with everything after ``policy:`` replaced by the shipped policy."""
    head = (CHART / "values.yaml").read_text().split(POLICY_KEY)[0]
    policy = (ROOT / "policies.yaml").read_text().split("\n", 1)[1]  # the $schema comment
    return head + POLICY_KEY + textwrap.indent(policy, "  ")


def values_schema_text() -> str:
    return json.dumps(values_schema(), indent=2) + "\n"


def values_schema() -> dict[str, Any]:
    embedded = {k: v for k, v in policy_schema().items() if k != "$schema"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "kubekeeper chart values",
        **_object({
            "image": _object({"repository": _string(), "tag": _string(),
                              "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
            "imagePullSecrets": {"type": "array", "items": _object({"name": _string()})},
            "priorityClassName": {"type": "string"},
            "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "extraArgs": {"type": "array", "items": _string()},
            "node": _object({"enabled": _boolean(), "runtime": _runtime(),
                             "nodeSelector": {"type": "object",
                                              "additionalProperties": {"type": "string"}},
                             "tolerations": {"type": "array", "items": {"type": "object"}},
                             "resources": _resources()}),
            "cluster": _object({"tasks": _object({task: _object({
                "enabled": _boolean(), "schedule": _string(), "resources": _resources()})
                for task in TASKS})}),
            "metrics": _object({"port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                "serviceMonitor": _object({"enabled": _boolean(),
                                                           "interval": _string()}),
                                "prometheusRule": _object({"enabled": _boolean()})}),
            "policy": embedded,
        }),
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _string() -> dict[str, Any]:
    return {"type": "string", "minLength": 1}


def _boolean() -> dict[str, Any]:
    return {"type": "boolean"}


def _runtime() -> dict[str, Any]:
    """``--runtime``'s choices, so a typo fails at install and not in every node's pod."""
    named = [choice for choice in CHOICES if not choice.startswith("cri:")]
    return {"anyOf": [{"enum": named}, {"type": "string", "pattern": "^cri:.+"}],
            "description": "auto, a runtime name, or cri:<socket path>."}


def _resources() -> dict[str, Any]:
    """A container's requests and limits; their quantities are the API server's to check."""
    amounts = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    return _object({"requests": amounts, "limits": amounts})
