"""The one change a node action makes through the CRI, and the truth about what became of it.

Only images are removed on CRI nodes (containers are the kubelet's, the CRI
has no volumes).  ``RemoveImage`` by id takes every tag and digest of the
image at once, and the CRI has no untag, so nothing is taken off before the
removal and nothing needs putting back: the image either goes whole or stays
whole.  The outcome line lists what went (``removed``: every reference).

A batch is checked and sent by the port at once (``remove_images``); its
users check (any container, any state) and pin check are the only ones, and
its ``InUse`` is reported as Docker's in-use check is (skipped, the users
named, nothing changed).  Each answer is then settled alone: a 404 or a call
with no answer in time is confirmed by an inspect, and sent again where it is
still there, as ``mutations`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from agents.actions import Action, Outcome, Result
from agents.node.docker_port import Conflict, DockerDown, DockerError, InUse
from agents.node.mutations import in_use, removed

if TYPE_CHECKING:
    from agents.node.cri_port import CriPort


def carry_out_all(actions: Sequence[Action], port: CriPort) -> list[Outcome | DockerDown]:
    """Each action's outcome, or the ``DockerDown`` it met (the runtime stopped answering).

    Raises ``DockerDown`` only when the batch's check could not be made: then
    nothing was sent.
    """
    images = [a.id for a in actions if a.kind == "image"]
    verdicts = port.remove_images(images) if images else {}
    results: list[Outcome | DockerDown] = []
    for action in actions:
        try:
            results.append(_settled(action, verdicts, port))
        except DockerDown as exc:
            results.append(exc)
    return results


def _settled(action: Action, verdicts: dict[str, DockerError | None], port: CriPort) -> Outcome:
    """The action's outcome from its batch's answer; raises only ``DockerDown``."""
    first = [verdicts.get(action.id)]

    def remove() -> None:
        """The batch's answer the first time; a removal of its own when sent again."""
        if not first:
            port.remove_image(action.id)
        elif (error := first.pop()) is not None:
            raise error

    try:
        if action.kind != "image":
            raise ValueError(f"no way to {action.verb} a {action.kind} through the CRI")
        return _remove_image(action, port, remove)
    except Conflict as exc:
        return Outcome(action, Result.SKIPPED, error=f"conflict: {exc}")
    except DockerDown:
        raise
    except (DockerError, ValueError) as exc:
        return Outcome(action, Result.FAILED, error=str(exc))


def _remove_image(action: Action, port: CriPort, remove: Callable[[], None]) -> Outcome:
    try:
        outcome = removed(action, remove, lambda: port.inspect_image(action.id))
    except InUse as exc:
        return in_use(action, exc.users, "removing") or Outcome(action, Result.SKIPPED,
                                                                 error=f"conflict: {exc}")
    if outcome.result is not Result.DONE:
        return outcome
    went = [*action.details.get("tags", ()), *action.details.get("digests", ())]
    return Outcome(action, outcome.result, outcome.error, outcome.bytes,
                   MappingProxyType({**outcome.details, "removed": went}))
