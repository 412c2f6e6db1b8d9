"""Which container runtimes a node run cleans: ``--runtime`` resolved to sockets.

``auto`` looks, under ``--host-root``, for the usual sockets in this order and
takes every one that is a socket:

    containerd   /run/containerd/containerd.sock
    k3s          /run/k3s/containerd/containerd.sock
    crio         /run/crio/crio.sock
    cri-dockerd  /run/cri-dockerd.sock
    docker       /var/run/docker.sock

A CI node with Docker and a CRI runtime is cleaned on both, each object once:
two paths that are the same socket (a link) count once, and cri-dockerd is
left out when Docker itself is cleaned, since it fronts the same engine (and
Docker's own API can untag and judge volumes).  ``/var/run`` is ``/run`` on
every current distribution; the DaemonSet mounts only ``/run``, so each
``/var/run`` path is also looked for under ``/run``.

``docker``, ``containerd`` and ``crio`` name one runtime (``containerd`` also
finds k3s's socket); ``cri:<socket>`` names a socket as this process sees it,
like ``--docker-host``.  ``node.runtimes`` in the policy may turn any off.

Nothing here connects: a socket found may still not answer, or (Docker's
own containerd usually runs without its CRI plugin) not serve the CRI; the
agent reports that per runtime.  Every decision that leaves a runtime out is
returned as a note for the report.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from agents.node.host_paths import HostPaths

DOCKER = "docker"


@dataclass(frozen=True)
class Candidate:
    name: str
    path: str
    """The socket's host path."""

    @property
    def kind(self) -> str:
        return DOCKER if self.name == DOCKER else "cri"


SOCKETS = (
    Candidate("containerd", "/run/containerd/containerd.sock"),
    Candidate("k3s", "/run/k3s/containerd/containerd.sock"),
    Candidate("crio", "/run/crio/crio.sock"),
    Candidate("cri-dockerd", "/run/cri-dockerd.sock"),
    Candidate(DOCKER, "/var/run/docker.sock"),
)
_NAMED = {"docker": ("docker",), "containerd": ("containerd", "k3s"), "crio": ("crio",)}
CHOICES = ("auto", *_NAMED, "cri:<socket>")


@dataclass(frozen=True)
class Runtime:
    """One runtime to clean: its report name, ``docker`` or ``cri``, and its endpoint."""

    name: str
    kind: str
    endpoint: str
    explicit: bool = False
    """Named by ``--runtime`` (or ``--docker-host``): not answering is then an error of the run."""

    @property
    def label(self) -> str:
        """The runtime's name in error messages: ``Docker``, ``containerd``, ..."""
        return "Docker" if self.kind == DOCKER else self.name


@dataclass(frozen=True)
class Selection:
    runtimes: tuple[Runtime, ...]
    notes: tuple[tuple[str | None, str], ...] = ()
    """(runtime, why) for each runtime found or named that is not cleaned; runtime None
    when none was found at all."""


def check_spec(spec: str) -> str:
    """``--runtime``'s value as given, or ValueError naming the choices."""
    if spec in ("auto", *_NAMED) or (spec.startswith("cri:") and len(spec) > 4):
        return spec
    raise ValueError(f"{spec!r} is not a runtime: write one of {', '.join(CHOICES)}")


def select(spec: str, paths: HostPaths, allowed: Sequence[str],
           docker_host: str | None = None) -> Selection:
    """The runtimes ``spec`` names, of those the policy allows.

    ``docker_host`` (``--docker-host`` or ``$DOCKER_HOST``) is Docker's endpoint
    when given; otherwise Docker is the socket found under the host root.
    """
    if spec.startswith("cri:"):
        found = [Runtime("cri", "cri", spec[4:], explicit=True)]
    elif spec == DOCKER:
        found = [Runtime(DOCKER, DOCKER, docker_host or _socket_url(paths, SOCKETS[-1]) or
                         f"unix://{paths.local(SOCKETS[-1].path)}", explicit=True)]
    elif spec in _NAMED:
        found = _first(spec, paths)
    else:
        found = _detected(paths, docker_host)
    notes: list[tuple[str | None, str]] = [
        (r.name, f"runtime {r.name} ({r.endpoint}) is turned off by node.runtimes; not cleaned")
        for r in found if r.name not in allowed]
    kept = [r for r in found if r.name in allowed]
    if any(r.kind == DOCKER for r in kept):
        fronting = [r for r in kept if r.name == "cri-dockerd"]
        notes += [(r.name, f"runtime cri-dockerd ({r.endpoint}) fronts the Docker engine "
                           "cleaned through Docker's own socket: not cleaned twice")
                  for r in fronting]
        kept = [r for r in kept if r not in fronting]
    if not found:
        notes.append((None, _none_found(spec, paths)))
    return Selection(tuple(kept), tuple(notes))


def _first(spec: str, paths: HostPaths) -> list[Runtime]:
    """The first socket present of the runtime ``spec`` names; none found is an error later."""
    names = _NAMED[spec]
    for candidate in SOCKETS:
        url = _socket_url(paths, candidate) if candidate.name in names else None
        if url:
            return [Runtime(candidate.name, candidate.kind, url, explicit=True)]
    first = next(c for c in SOCKETS if c.name in names)
    return [Runtime(first.name, first.kind, f"unix://{paths.local(first.path)}", explicit=True)]


def _detected(paths: HostPaths, docker_host: str | None) -> list[Runtime]:
    found: list[Runtime] = []
    seen: set[tuple[int, int]] = set()
    for candidate in SOCKETS:
        if candidate.kind == DOCKER and docker_host:
            found.append(Runtime(DOCKER, DOCKER, docker_host, explicit=True))
            continue
        local = _local_socket(paths, candidate.path)
        if local is None:
            continue
        info = os.stat(local)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        found.append(Runtime(candidate.name, candidate.kind, f"unix://{local}"))
    return found


def _socket_url(paths: HostPaths, candidate: Candidate) -> str | None:
    local = _local_socket(paths, candidate.path)
    return f"unix://{local}" if local else None


def _local_socket(paths: HostPaths, host_path: str) -> str | None:
    """Where the socket at ``host_path`` is seen from here, if it is a socket."""
    tries = [host_path]
    if host_path.startswith("/var/run/"):
        tries.append(host_path.removeprefix("/var"))
    for path in tries:
        local = paths.resolve(path)
        try:
            if local is not None and stat.S_ISSOCK(os.stat(local).st_mode):
                return local
        except OSError:
            continue
    return None


def _none_found(spec: str, paths: HostPaths) -> str:
    where = f" under {paths.root}" if paths.root != "/" else ""
    looked = ", ".join(c.path for c in SOCKETS)
    return (f"no container runtime socket found{where} (looked for {looked}): nothing to "
            f"clean on this node (--runtime {spec})")
