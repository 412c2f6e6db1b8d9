"""Which volumes to remove, judged on the containers that will remain; pure.

Never planned, whatever the snapshot: a volume any remaining container mounts,
a named volume unless ``includeNamed`` (named volumes hold data), a volume with
the keep label or matching ``protect``, and a volume younger than ``olderThan``
by its ``CreatedAt``.  Anonymous volumes that ``docker rm -v`` removes with a
planned container are reported on that container's line, not twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from agents.actions import Action, Verb
from agents.node.inventory import Container, Snapshot
from agents.node.protection import protected
from agents.policy import VolumeRules
from agents.units import format_age, format_duration


def plan_volumes(snap: Snapshot, rules: VolumeRules, remaining: Iterable[Container],
                 now: datetime, removed_with_containers: frozenset[str] = frozenset()
                 ) -> list[Action]:
    """Removal actions for dangling volumes, oldest first."""
    if not rules.enabled:
        return []
    mounted = {v for c in remaining for v in c.volumes}
    chosen = [v for v in snap.volumes
              if v.name not in mounted and v.name not in removed_with_containers
              and (v.anonymous or rules.includeNamed)
              and protected(rules.protect, v.name, v.labels) is None
              and now - v.created >= rules.olderThan]
    chosen.sort(key=lambda v: (v.created, v.name))
    threshold = f"olderThan {format_duration(rules.olderThan)}"
    return [Action(kind="volume", name=v.name, id=v.name, verb=Verb.DELETE, rule="volumes",
                   why=(f"{'anonymous' if v.anonymous else 'named'}, used by no container, "
                        f"created {format_age(now - v.created)} ago ({threshold})"),
                   bytes=v.size)
            for v in chosen]
