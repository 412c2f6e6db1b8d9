"""The only node code that mutates: applies a plan and reports one outcome per action.

Order and parallelism follow what the runtime allows.  On Docker, containers
go first, in parallel; then images level by level, children before parents,
in parallel inside a level, with volumes alongside the first level; at most
``parallelism`` calls are in flight.  Each change is made by
``mutations.carry_out``, which verifies what it reports.  On a CRI runtime
(``mutate_all``) the removals go in batches of ``parallelism``, each checked
on one look and sent at once by ``cri_mutations.carry_out_all``, because
containerd's removals share a garbage collection when they overlap.  A
parent image whose planned child stayed is skipped without being touched.  When Docker
stops answering, the items not yet started fail at once with that error
instead of each waiting for a timeout; when ``stop`` is set (SIGTERM) or
the run's deadline has passed, items in flight finish and the rest are
skipped.  Every change is preceded by its flushed intent line and followed by
its outcome line, so a run cut short still leaves the record of what it did.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

from agents.actions import Action, Outcome, Result, over_cap, refused
from agents.actions import dry_run as dry_outcome
from agents.node.docker_port import DockerDown, DockerPort

if TYPE_CHECKING:
    from agents.node.cri_port import CriPort
from agents.node.host_paths import HostPaths
from agents.node.mutations import carry_out
from agents.report import Reporter

STOPPING = "not started: the agent is stopping (SIGTERM)"
PAST_DEADLINE = "not started: the run's deadline had passed"


@dataclass
class Execution:
    """What one execution needs besides the plan; ``stop`` is shared with the signal handler."""

    port: DockerPort | CriPort
    reporter: Reporter
    paths: HostPaths
    docker_root: str
    parallelism: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    """``time.monotonic()`` after which no new action starts; None for no deadline."""
    unreachable: str | None = None
    """Docker's connection error, once it stopped answering during this execution."""
    mutate_all: Callable[[Sequence[Action]], list[Outcome | DockerDown]] | None = None
    """How a CRI runtime's batch is carried out; None for Docker's one at a time."""
    runtime: str = "Docker"
    """The runtime's name in error lines."""
    kept_images: set[str] = field(default_factory=set)
    """Planned images that stayed: their planned parents are skipped."""
    children: dict[str, list[str]] = field(default_factory=dict)


def execute(actions: Sequence[Action], run: Execution, dry_run: bool,
            cap: int) -> tuple[list[Outcome], str | None]:
    """Apply (or in dry-run only report) the plan; returns the outcomes and the cap's verdict.

    A plan over the cap changes nothing, in a real run or a dry run alike, so a
    dry run shows what the real one would do.
    """
    return execute_all([(run, actions)], dry_run, cap)


def execute_all(plans: Sequence[tuple[Execution, Sequence[Action]]], dry_run: bool,
                cap: int) -> tuple[list[Outcome], str | None]:
    """Each runtime's plan through its own execution, one after the other, under one cap.

    The cap judges the run's whole plan (every runtime's together), so a node
    with two runtimes removes no more in a run than a node with one.
    """
    aborted = over_cap([a for _, actions in plans for a in actions], cap)
    outcomes: list[Outcome] = []
    for run, actions in plans:
        if aborted:
            outcomes += _report_all(actions, run.reporter, lambda a: refused(a, aborted))
        elif dry_run:
            outcomes += _report_all(actions, run.reporter, dry_outcome)
        else:
            outcomes += _apply(actions, run)
    return outcomes, aborted


def _apply(actions: Sequence[Action], run: Execution) -> list[Outcome]:
    if run.mutate_all is not None:
        size = run.parallelism
        return [outcome for wave in waves(actions) for start in range(0, len(wave), size)
                for outcome in _attempt_batch(wave[start:start + size], run)]
    run.children = _planned_children(actions)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=run.parallelism, thread_name_prefix="rm") as pool:
        for wave in waves(actions):
            futures = [pool.submit(_attempt, action, run) for action in wave]
            outcomes += [future.result() for future in as_completed(futures)]
    return outcomes


def _planned_children(actions: Sequence[Action]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = defaultdict(list)
    for action in actions:
        if action.kind == "image" and action.mutates and action.details.get("parent"):
            children[action.details["parent"]].append(action.id)
    return dict(children)


def waves(actions: Sequence[Action]) -> list[list[Action]]:
    """Groups that may run in parallel, in the order the groups must run."""
    images = [a for a in actions if a.kind == "image"]
    levels = _image_levels(images)
    first = [a for a in actions if a.kind not in ("image", "volume")]
    later: list[list[Action]] = [[] for _ in range(max(levels.values(), default=0) + 1)]
    for action in images:
        later[levels[action.id]].append(action)
    later[0] += [a for a in actions if a.kind == "volume"]
    return [w for w in [first, *later] if w]


def _image_levels(images: Sequence[Action]) -> dict[str, int]:
    """0 for an image with no planned child, else one more than its highest child."""
    planned = {a.id for a in images}
    level = {a.id: 0 for a in images}
    by_id = {a.id: a for a in images}
    for action in images:
        child, depth = action, 0
        while True:
            parent = child.details.get("parent")
            if parent not in planned:
                break
            depth += 1
            if level[parent] >= depth:
                break
            level[parent] = depth
            child = by_id[parent]
    return level


def _report_all(actions: Sequence[Action], reporter: Reporter,
                decide: Callable[[Action], Outcome]) -> list[Outcome]:
    outcomes = [decide(a) for a in actions]
    for outcome in outcomes:
        reporter.action(outcome)
    return outcomes


def _attempt(action: Action, run: Execution) -> Outcome:
    """One action, its outcome reported, its failure contained; never raises.

    The intent line is flushed before the call, so a run killed during the
    call still leaves a record of what it was doing.
    """
    refusal = _refusal(action, run)
    if refusal is not None:
        outcome = refusal
        run.reporter.action(outcome)
    else:
        op = run.reporter.intent(action)
        outcome = _carry_out(action, run)
        run.reporter.action(outcome, op=op)
    if action.kind == "image" and outcome.result is not Result.DONE:
        run.kept_images.add(action.id)
    return outcome


def _attempt_batch(batch: Sequence[Action], run: Execution) -> list[Outcome]:
    """A batch at once: refusals reported, every intent line flushed, then all sent together.

    The port's check runs after the intent lines, so it sees what changed since planning.
    """
    outcomes: dict[int, Outcome] = {}
    going: list[tuple[int, Action, int]] = []
    for n, action in enumerate(batch):
        refusal = _refusal(action, run)
        if refusal is not None:
            outcomes[n] = refusal
            run.reporter.action(refusal)
        else:
            going.append((n, action, run.reporter.intent(action)))
    results = _carry_out_all([action for _, action, _ in going], run)
    for (n, _, op), outcome in zip(going, results, strict=True):
        outcomes[n] = outcome
        run.reporter.action(outcome, op=op)
    return [outcomes[n] for n in range(len(batch))]


def _carry_out_all(actions: Sequence[Action], run: Execution) -> list[Outcome]:
    if not actions or run.mutate_all is None:
        return []
    try:
        results = run.mutate_all(actions)
    except DockerDown as exc:
        results = [exc] * len(actions)
    return [_down(action, result, run) if isinstance(result, DockerDown)
            else _logged(action, result) for action, result in zip(actions, results, strict=True)]


def _down(action: Action, exc: DockerDown, run: Execution) -> Outcome:
    """The runtime stopped answering: remembered, so what has not started fails at once."""
    if run.unreachable is None:
        logger.error("{} stopped answering: {}", run.runtime, exc)
    run.unreachable = run.unreachable or str(exc)
    return Outcome(action, Result.FAILED, error=f"{run.runtime} unreachable: {exc}")


def _logged(action: Action, outcome: Outcome) -> Outcome:
    if outcome.result is not Result.DONE:
        logger.bind(kind=action.kind, name=action.name, id=action.id).info(
            "{} {}: {}", action.verb, outcome.result, outcome.error)
    return outcome


def _refusal(action: Action, run: Execution) -> Outcome | None:
    """Why the action is not attempted at all, as its outcome; None to go ahead."""
    if not action.mutates:
        return refused(action, "")
    if run.stop.is_set():
        return Outcome(action, Result.SKIPPED, error=STOPPING)
    if run.deadline is not None and time.monotonic() > run.deadline:
        return Outcome(action, Result.SKIPPED, error=PAST_DEADLINE)
    if run.unreachable:
        return Outcome(action, Result.FAILED,
                       error=f"{run.runtime} unreachable: {run.unreachable}")
    stayed = [c for c in run.children.get(action.id, ()) if c in run.kept_images]
    if stayed:
        return Outcome(action, Result.SKIPPED,
                       error=f"an image built on it stayed ({stayed[0][:19]}): not touched")
    return None


def _carry_out(action: Action, run: Execution) -> Outcome:
    try:
        outcome = carry_out(action, run.port, run.paths, run.docker_root)
    except DockerDown as exc:
        return _down(action, exc, run)
    return _logged(action, outcome)
