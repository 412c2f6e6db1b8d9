"""What keeps a Docker object, whatever the age rules say, and the kubelet's labels.

Kept here once so the container, image and volume planners cannot disagree
about the keep label or about what a pod sandbox is.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from agents.policy import KEEP_LABEL, Protect

POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
DOCKER_TYPE = "io.kubernetes.docker.type"
SANDBOX = "podsandbox"
SANDBOX_IMAGE_GLOBS = ("registry.k8s.io/pause*", "k8s.gcr.io/pause*")


def keep_labelled(labels: Mapping[str, str]) -> bool:
    """``kubekeeper.keep=true`` protects an object always, in every policy."""
    return labels.get(KEEP_LABEL, "").lower() == "true"


def protected(protect: Protect, name: str, labels: Mapping[str, str]) -> str | None:
    """Why ``protect`` (or the keep label) keeps this object, or None."""
    if keep_labelled(labels):
        return f"label {KEEP_LABEL}=true"
    if protect.labels and all(labels.get(k) == v for k, v in protect.labels.items()):
        return "protect.labels"
    glob = first_match(name, protect.names)
    return f"protect.names {glob}" if glob else None


def first_match(name: str, globs: Iterable[str]) -> str | None:
    return next((g for g in globs if fnmatch.fnmatchcase(name, g)), None)


def familiar(reference: str) -> str:
    """A reference as Docker shows it: ``docker.io/library/nginx:1`` → ``nginx:1``.

    The CRI lists Docker Hub images by their full name, Docker by the short
    one; globs written for either match both.
    """
    for prefix in ("docker.io/library/", "docker.io/"):
        if reference.startswith(prefix):
            return reference[len(prefix):]
    return reference


def is_sandbox(labels: Mapping[str, str]) -> bool:
    return labels.get(DOCKER_TYPE) == SANDBOX
