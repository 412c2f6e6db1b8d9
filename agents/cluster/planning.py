"""What the three cluster planners share: scope checks and building actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Verb
from agents.cluster.records import Meta
from agents.policy import ClusterPolicy


def rules_for(meta: Meta, policies: Mapping[str, ClusterPolicy]) -> ClusterPolicy | None:
    """The settings for an object, or None when it is out of scope or opted out.

    ``policies`` holds only the namespaces in scope (see ``inventory.scope``),
    so this one check covers the globs, the namespace annotation and the
    object's own ``kubekeeper/ignore: "true"``. An object already being deleted is
    left to the deletion: patching it races its finalizers and is answered with 404.
    """
    if meta.ignored or meta.deleting:
        return None
    return policies.get(meta.namespace)


def act(meta: Meta, verb: Verb, rule: str, why: str, skip: str | None = None,
        **details: Any) -> Action:
    """An action on ``meta``; with ``skip`` the planner keeps the object and says why."""
    return Action(kind=meta.kind, name=meta.name, verb=verb, rule=rule, why=why, id=meta.uid,
                  namespace=meta.namespace, details=MappingProxyType(details), skip=skip)


def deletion(meta: Meta, rule: str, why: str, manifest: str) -> Action:
    """A delete of exactly the version planned on, carrying its complete manifest sealed:
    the executor puts it (redacted) in the report and in the recycle bin."""
    return replace(act(meta, Verb.DELETE, rule, why,
                       preconditions={"uid": meta.uid, "resourceVersion": meta.resource_version}),
                   sealed=manifest)


def guarded(meta: Meta, patch: dict) -> dict:
    """A patch that applies only to the version that was planned on (else 409, re-plan)."""
    return {**patch, "metadata": {**patch.get("metadata", {}),
                                  "resourceVersion": meta.resource_version}}
