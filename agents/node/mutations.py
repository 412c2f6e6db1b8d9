"""The one change each node action makes, and the truth about what became of it.

An outcome says ``done`` only when the object is really gone: a 404 is
checked with an inspect (an untag's 404 says nothing about the image), and so
is a call that got no answer in time, because Docker may carry it out after
the client gave up (a paused dockerd removes on resume). Since that request
is still queued, an inspect that finds the object there proves nothing, so
the same (never forced) removal is sent once more and its answer is the
truth: done, gone already, a conflict, or still no answer, said as such.

An image with several references is untagged before its removal by id
(Docker refuses that otherwise, short of force).  Should the removal then
meet a conflict (a container started after planning, a child image kept),
the references taken off are put back and the line says which, so a kept
image never loses its tags.  A digest reference of another repository cannot
be re-created without a pull; the check for users made just before
untagging leaves that a window of milliseconds, and a loss is reported as
``failed`` by name.

Truncating a log keeps the file (and Docker's open handle, which appends):
lines written while it happens can be lost.  Only a regular file inside
``<DockerRootDir>/containers`` is truncated, re-checked here with links
resolved inside the host root.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Outcome, Result, Verb
from agents.node.docker_port import (
    Conflict,
    DockerDown,
    DockerError,
    DockerPort,
    Gone,
    Timeout,
    split_tag,
)
from agents.node.host_paths import HostPaths

_STILL_THERE = "; checked: it is still there"
CHECKS = 3
"""Inspects made after a call that got no answer in time, each bounded by the call timeout."""
SETTLE_S = 1.0
"""How long a removal Docker says is in progress gets before each look."""


def carry_out(action: Action, port: DockerPort, paths: HostPaths, docker_root: str) -> Outcome:
    """Make the action's change; raises only ``DockerDown`` (Docker stopped answering)."""
    try:
        if action.kind == "image":
            return _remove_image(action, port)
        if action.kind == "container":
            return removed(action, lambda: port.remove_container(action.id),
                            lambda: port.inspect_container(action.id))
        if action.kind == "volume":
            return removed(action, lambda: port.remove_volume(action.name),
                            lambda: port.inspect_volume(action.name))
        if action.kind == "log" and action.verb is Verb.TRUNCATE:
            freed = truncate_log(paths, docker_root, action.details["path"])
            return Outcome(action, Result.DONE, bytes=freed)
        raise ValueError(f"no way to {action.verb} a {action.kind}")
    except Conflict as exc:
        return Outcome(action, Result.SKIPPED, error=f"conflict: {exc}")
    except DockerDown:
        raise
    except (DockerError, OSError, ValueError) as exc:
        return Outcome(action, Result.FAILED, error=str(exc))


def removed(action: Action, remove: Callable[[], None],
             inspect: Callable[[], Any]) -> Outcome:
    """Remove, then trust a 404 or a late answer only once an inspect confirms it."""
    try:
        remove()
    except Gone:
        return _checked(action, inspect, "Docker answered 404", already_gone=True)
    except Timeout as exc:
        checked = _checked(action, inspect, f"{exc}", already_gone=False)
        if checked.result is Result.FAILED and checked.error.endswith(_STILL_THERE):
            return _again(action, remove, inspect, f"{exc}")
        return checked
    return Outcome(action, Result.DONE, bytes=action.bytes)


def _again(action: Action, remove: Callable[[], None], inspect: Callable[[], Any],
           what: str) -> Outcome:
    """The second removal after a timeout; a conflict surfaces to the caller as usual."""
    try:
        remove()
    except Gone:
        return _checked(action, inspect, f"{what}; sent again: 404", already_gone=False)
    except Conflict as exc:
        if "in progress" not in str(exc):
            raise
        return _finishing(action, inspect, f"{what}; sent again: {exc}")
    except Timeout as exc:
        return Outcome(action, Result.FAILED,
                       error=f"{what}; sent again: {exc}; Docker may still remove it when it "
                             "catches up")
    return Outcome(action, Result.DONE, bytes=action.bytes,
                   details=MappingProxyType({"note": f"{what}; removed when sent again"}))


def _finishing(action: Action, inspect: Callable[[], Any], what: str) -> Outcome:
    """Docker is still carrying out the first removal: give it a moment, then look."""
    for _ in range(CHECKS):
        time.sleep(SETTLE_S)
        try:
            _inspect_patiently(inspect)
        except Gone:
            return Outcome(action, Result.DONE, bytes=action.bytes,
                           details=MappingProxyType({"note": f"{what}; checked: gone"}))
        except DockerError:
            break
    return Outcome(action, Result.FAILED,
                   error=f"{what}; Docker may still finish removing it")


def _checked(action: Action, inspect: Callable[[], Any], what: str,
             already_gone: bool) -> Outcome:
    """Look again before reporting; a daemon that did not answer in time gets a few tries,
    since a paused engine answers (and carries out the removal) when it resumes."""
    try:
        _inspect_patiently(inspect)
    except Gone:
        if already_gone:
            return Outcome(action, Result.DONE, bytes=0,
                           details=MappingProxyType({"note": "already gone"}))
        return Outcome(action, Result.DONE, bytes=action.bytes,
                       details=MappingProxyType({"note": f"{what}; checked: gone"}))
    except DockerError as exc:
        return Outcome(action, Result.FAILED,
                       error=f"{what}; whether it was removed is unknown (checking failed: {exc})")
    return Outcome(action, Result.FAILED, error=f"{what}{_STILL_THERE}")


def _inspect_patiently(inspect: Callable[[], Any]) -> None:
    for attempt in range(CHECKS):
        try:
            inspect()
            return
        except Timeout:
            if attempt == CHECKS - 1:
                raise


def in_use(action: Action, users: Sequence[str], before: str) -> Outcome | None:
    """The outcome for an image a container uses since planning (checked ``before`` any
    change), or None when nothing uses it: no runtime is asked to force."""
    if not users:
        return None
    return Outcome(action, Result.SKIPPED,
                   error=f"conflict: in use by container {', '.join(sorted(users)[:5])} "
                         f"(checked before {before}: nothing was changed)")


def _remove_image(action: Action, port: DockerPort) -> Outcome:
    used = in_use(action, port.image_users(action.id), "untagging")
    if used:
        return used
    untagged: list[str] = []
    try:
        for reference in extra_references(action.details.get("tags", ()),
                                          action.details.get("digests", ())):
            try:
                port.untag_image(reference)
            except Gone:
                continue  # someone else took this reference off: nothing to put back
            untagged.append(reference)
        return removed(action, lambda: port.remove_image(action.id),
                        lambda: port.inspect_image(action.id))
    except (Conflict, DockerError) as exc:
        if isinstance(exc, DockerDown) and not untagged:
            raise
        return _with_tags_back(action, port, untagged, exc)


def _with_tags_back(action: Action, port: DockerPort, untagged: Sequence[str],
                    cause: DockerError) -> Outcome:
    """Put back the references taken off before a removal that did not happen."""
    restored, lost = [], []
    for reference in untagged:
        try:
            if "@" in reference:
                raise DockerError("a digest reference can only come back with a pull")
            port.tag_image(action.id, reference)
            restored.append(reference)
        except DockerError:
            lost.append(reference)
    details = MappingProxyType({"tags_restored": restored, "tags_lost": lost})
    error = f"conflict: {cause}" if isinstance(cause, Conflict) else str(cause)
    if lost:
        return Outcome(action, Result.FAILED, details=details,
                       error=f"{error}; the image stays, but without {', '.join(lost)}")
    result = Result.SKIPPED if isinstance(cause, Conflict) else Result.FAILED
    return Outcome(action, result, error=error, details=details)


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
    return split_tag(reference.split("@", 1)[0])[0]


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
