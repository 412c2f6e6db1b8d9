"""Which volumes to remove, judged on the containers that will remain; pure.

Never planned, whatever the snapshot: a volume any remaining container mounts,
a named volume unless ``includeNamed`` (named volumes hold data), a volume with
the keep label or matching ``protect``, and a volume idle for less than
``olderThan``: since its ``CreatedAt``, and never since before the node's record
first saw it.  A volume whose age is unknown is kept and reported (``skip``).
The anonymous volumes of containers removed in this run are judged here like
any other (containers are removed without ``-v``), each a counted deletion.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from agents.actions import Action, Verb
from agents.node.ages import volume_idle_since
from agents.node.inventory import Container, Snapshot, Volume
from agents.node.protection import protected
from agents.policy import VolumeRules
from agents.units import format_age, format_duration


def plan_volumes(snap: Snapshot, rules: VolumeRules, remaining: Iterable[Container],
                 now: datetime) -> list[Action]:
    """Removal actions for dangling volumes, oldest first, then those kept for an unknown age."""
    if not rules.enabled:
        return []
    mounted = {v for c in remaining for v in c.volumes}
    candidates = [v for v in snap.volumes
                  if v.name not in mounted and (v.anonymous or rules.includeNamed)
                  and protected(rules.protect, v.name, v.labels) is None]
    chosen: list[tuple[datetime, Volume]] = []
    unknown: list[Action] = []
    for v in candidates:
        since, why_unknown = volume_idle_since(v)
        if rules.olderThan <= timedelta(0):
            since = now  # every age qualifies, a known one or not
        if since is None:
            unknown.append(_removal(v, rules, f"age unknown: {why_unknown}; kept", now, None))
        elif now - since >= rules.olderThan:
            chosen.append((since, v))
    chosen.sort(key=lambda pair: (pair[0], pair[1].name))
    return [_removal(v, rules, None, now, since) for since, v in chosen] + unknown


def _removal(v: Volume, rules: VolumeRules, skip: str | None, now: datetime,
             since: datetime | None) -> Action:
    threshold = f"olderThan {format_duration(rules.olderThan)}"
    what = f"{'anonymous' if v.anonymous else 'named'}, used by no container"
    if since is None:
        why = f"{what} ({threshold})"
    elif rules.olderThan <= timedelta(0):
        why = f"{what}, any age qualifies ({threshold})"
    else:
        seen = "first seen" if since == v.first_seen else "created"
        why = f"{what}, {seen} {format_age(now - since)} ago ({threshold})"
    return Action(kind="volume", name=v.name, id=v.name, verb=Verb.DELETE, rule="volumes",
                  why=why, bytes=v.size, skip=skip)
