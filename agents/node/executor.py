"""The only node code that mutates: applies a plan and reports one outcome per action.

Order and parallelism follow what Docker allows.  Containers go first, in
parallel; then images level by level, children before parents, in parallel
inside a level, with volumes alongside the first level; at most
``parallelism`` calls are in flight.  Per item: Docker's 404 means someone
else already removed it (done, 0 bytes), a 409 means it became needed after
planning (skipped, never forced), anything else is a failure that does not
stop the others.  When Docker stops answering, the items not yet started fail
at once with that error instead of each waiting for a timeout; when ``stop``
is set (SIGTERM), items in flight finish and the rest are skipped.  Every
outcome is written to the report as it happens, so a run cut short still
leaves the record of what it did.

Truncating a log keeps the file (and Docker's open handle, which appends):
lines written while it happens can be lost.  Only a regular file inside
``<DockerRootDir>/containers`` is truncated, re-checked here with links
resolved inside the host root.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from types import MappingProxyType

from loguru import logger

from agents.actions import Action, Outcome, Result, Verb, over_cap, refused
from agents.actions import dry_run as dry_outcome
from agents.node.docker_port import Conflict, DockerDown, DockerError, DockerPort, Gone
from agents.node.host_paths import HostPaths
from agents.report import Reporter

STOPPING = "not started: the agent is stopping (SIGTERM)"


@dataclass
class Execution:
    """What one execution needs besides the plan; ``stop`` is shared with the signal handler."""

    port: DockerPort
    reporter: Reporter
    paths: HostPaths
    docker_root: str
    parallelism: int = 4
    stop: threading.Event = field(default_factory=threading.Event)
    unreachable: str | None = None
    """Docker's connection error, once it stopped answering during this execution."""


def execute(actions: Sequence[Action], run: Execution, dry_run: bool,
            cap: int) -> tuple[list[Outcome], str | None]:
    """Apply (or in dry-run only report) the plan; returns the outcomes and the cap's verdict.

    A plan over the cap changes nothing, in a real run or a dry run alike, so a
    dry run shows what the real one would do.
    """
    aborted = over_cap(actions, cap)
    if aborted:
        return _report_all(actions, run.reporter, lambda a: refused(a, aborted)), aborted
    if dry_run:
        return _report_all(actions, run.reporter, dry_outcome), None
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=run.parallelism, thread_name_prefix="rm") as pool:
        for wave in waves(actions):
            futures = [pool.submit(_attempt, action, run) for action in wave]
            outcomes += [future.result() for future in as_completed(futures)]
    return outcomes, None


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
    if not action.mutates:
        outcome = refused(action, "")
    elif run.stop.is_set():
        outcome = Outcome(action, Result.SKIPPED, error=STOPPING)
    elif run.unreachable:
        outcome = Outcome(action, Result.FAILED, error=f"Docker unreachable: {run.unreachable}")
    else:
        op = run.reporter.intent(action)
        outcome = _carry_out(action, run)
        run.reporter.action(outcome, op=op)
        return outcome
    run.reporter.action(outcome)
    return outcome


def _carry_out(action: Action, run: Execution) -> Outcome:
    log = logger.bind(kind=action.kind, name=action.name, id=action.id)
    try:
        freed = _apply(action, run)
    except Gone:
        return Outcome(action, Result.DONE, bytes=0,
                       details=MappingProxyType({"note": "already gone"}))
    except Conflict as exc:
        log.info("skipped, Docker reports a conflict: {}", exc)
        return Outcome(action, Result.SKIPPED, error=f"conflict: {exc}")
    except DockerDown as exc:
        run.unreachable = str(exc)
        log.error("Docker stopped answering: {}", exc)
        return Outcome(action, Result.FAILED, error=f"Docker unreachable: {exc}")
    except (DockerError, OSError, ValueError) as exc:
        log.error("{} failed: {}", action.verb, exc)
        return Outcome(action, Result.FAILED, error=str(exc))
    return Outcome(action, Result.DONE, bytes=freed)


def _apply(action: Action, run: Execution) -> int | None:
    """Perform one mutation; returns the bytes freed (the plan's estimate for Docker objects)."""
    if action.kind == "container":
        run.port.remove_container(action.id,
                                  with_volumes=not action.details.get("keep_volumes", False))
    elif action.kind == "volume":
        run.port.remove_volume(action.name)
    elif action.kind == "image":
        for reference in extra_references(action.details.get("tags", ()),
                                          action.details.get("digests", ())):
            run.port.untag_image(reference)
        run.port.remove_image(action.id)
    elif action.kind == "log" and action.verb is Verb.TRUNCATE:
        return truncate_log(run.paths, run.docker_root, action.details["path"])
    else:
        raise ValueError(f"no way to {action.verb} a {action.kind}")
    return action.bytes


def extra_references(tags: Sequence[str], digests: Sequence[str]) -> list[str]:
    """References to untag first, so removal by id needs no force.

    Docker removes an image by id without force only when it has at most one
    tag and every digest is in that tag's repository.
    """
    if not tags and not digests:
        return []
    keep_repo = repository(tags[0] if tags else digests[0])
    return [*tags[1:], *(d for d in digests if repository(d) != keep_repo)]


def repository(reference: str) -> str:
    """``registry:5000/team/app:1`` and ``team/app@sha256:..`` → their repository name."""
    name = reference.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def truncate_log(paths: HostPaths, docker_root: str, host_path: str) -> int:
    """Empty a Docker log file in place; returns the bytes freed."""
    local = paths.resolve(host_path)
    if local is None:
        raise ValueError(f"{host_path} is not visible here (under {paths.root})")
    containers_dir = f"{docker_root.rstrip('/')}/containers"
    if not paths.contains(containers_dir, local):
        raise ValueError(f"{host_path} resolves outside {containers_dir}; not touched")
    fd = os.open(local, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{host_path} is not a regular file; not touched")
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    return info.st_size
