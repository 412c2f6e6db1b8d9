"""The JSON Schema of policies.yaml, built from the same declarations as the loader.

Editors validate and complete the file with it (the shipped policy names it in a
``yaml-language-server`` comment) and the Helm chart embeds it, so ``helm install``
refuses a bad policy before anything reaches the cluster.  Each check in
``agents.checks`` carries the schema of what it accepts; this module only walks
the dataclasses.  ``policy check`` stays the authority: what a schema cannot say
(``lowPercent < highPercent``, a key given twice, a cron that never fires) only it
catches, as the README lists.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from agents import checks
from agents.policy import OVERRIDABLE, ClusterPolicy, Policy

SCHEMA_ID = "urn:kubekeeper:policies.schema.json"
"""A name, not an address: nothing is fetched; it scopes the $refs when the chart embeds it."""


def policy_schema() -> dict[str, Any]:
    """The whole schema, draft 2020-12; the cluster sections overrides reuse sit in ``$defs``."""
    defaults = ClusterPolicy()
    defs = {name: _section(getattr(defaults, name), _doc(ClusterPolicy, name))
            for name in OVERRIDABLE}
    body = _section(Policy(), "kubekeeper's policy: what the node agent and the cluster tasks "
                    "may do. Check it with: kubekeeper policy check FILE.", defs)
    body["required"] = ["apiVersion"]
    body["properties"]["overrides"] = _overrides()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "kubekeeper policies.yaml", **body, "$defs": defs}


def schema_text() -> str:
    """The schema as committed in schemas/policies.schema.json."""
    return json.dumps(policy_schema(), indent=2) + "\n"


def _section(obj: Any, doc: str, refs: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema for one dataclass: its declared keys and nothing else."""
    properties: dict[str, Any] = {}
    for f in fields(obj):
        if not f.compare or f.name == "overrides":
            continue
        value = getattr(obj, f.name)
        if refs and f.name in refs:
            properties[f.name] = {"$ref": f"#/$defs/{f.name}"}
        elif is_dataclass(value) and "check" not in f.metadata:
            properties[f.name] = _section(value, f.metadata["doc"])
        else:
            properties[f.name] = _leaf(f, value)
    return {"type": "object", "description": doc, "properties": properties,
            "additionalProperties": False}


def _leaf(f: Any, value: Any) -> dict[str, Any]:
    check = f.metadata["check"]
    bounds = getattr(check, "bounds", None)
    doc = f"{f.metadata['doc']} Range: {bounds}." if bounds else f.metadata["doc"]
    render = f.metadata.get("render")
    default = render(value) if render else value
    if isinstance(default, tuple):
        default = list(default)
    elif hasattr(default, "items"):
        default = dict(default)
    return {"description": doc, "default": default, **check.schema}


def _overrides() -> dict[str, Any]:
    entry = {
        "type": "object",
        "description": "Settings for the namespaces matching namespaces; later entries win, "
                       "mappings merge, lists replace.",
        "properties": {
            "namespaces": {**checks.GLOBS_SCHEMA, "minItems": 1,
                           "description": "The namespaces (globs) this entry applies to."},
            **{name: {"$ref": f"#/$defs/{name}"} for name in OVERRIDABLE}},
        "required": ["namespaces"], "additionalProperties": False}
    return {"type": "array", "default": [], "items": entry,
            "description": "Per-namespace changes to " + ", ".join(OVERRIDABLE) + "."}


def _doc(cls: type, name: str) -> str:
    return {f.name: f for f in fields(cls)}[name].metadata["doc"]
