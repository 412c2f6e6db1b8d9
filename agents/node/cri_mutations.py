"""The one change a node action makes through the CRI, and the truth about what became of it.

Only images are removed on CRI nodes (containers are the kubelet's, the CRI
has no volumes).  ``RemoveImage`` by id takes every tag and digest of the
image at once, and the CRI has no untag, so nothing is taken off before the
removal and nothing needs putting back: the image either goes whole or stays
whole.  The outcome line lists what went (``removed``: every reference).

The port checks the users (any container, any state) and the pin just before
its call, and its ``InUse`` is reported as Docker's in-use check is (skipped,
the users named, nothing changed); a second check beforehand would only cost
two more calls per image, since nothing is untagged first.  A 404 or a call
with no answer in time is confirmed by an inspect, as ``mutations`` does.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from agents.actions import Action, Outcome, Result
from agents.node.docker_port import Conflict, DockerDown, DockerError, InUse
from agents.node.mutations import in_use, removed

if TYPE_CHECKING:
    from agents.node.cri_port import CriPort


def carry_out(action: Action, port: CriPort) -> Outcome:
    """Remove the action's image; raises only ``DockerDown`` (the runtime stopped answering)."""
    try:
        if action.kind != "image":
            raise ValueError(f"no way to {action.verb} a {action.kind} through the CRI")
        return _remove_image(action, port)
    except Conflict as exc:
        return Outcome(action, Result.SKIPPED, error=f"conflict: {exc}")
    except DockerDown:
        raise
    except (DockerError, ValueError) as exc:
        return Outcome(action, Result.FAILED, error=str(exc))


def _remove_image(action: Action, port: CriPort) -> Outcome:
    try:
        outcome = removed(action, lambda: port.remove_image(action.id),
                          lambda: port.inspect_image(action.id))
    except InUse as exc:
        return in_use(action, exc.users, "removing") or Outcome(action, Result.SKIPPED,
                                                                 error=f"conflict: {exc}")
    if outcome.result is not Result.DONE:
        return outcome
    went = [*action.details.get("tags", ()), *action.details.get("digests", ())]
    return Outcome(action, outcome.result, outcome.error, outcome.bytes,
                   MappingProxyType({**outcome.details, "removed": went}))
