"""The Helm chart on the test control plane, with a real helm built from the Go module proxy.

Like tests/installation.py for the kustomization: install, upgrade and remove the chart
as an admin would, and render it for comparison with `kubectl kustomize .`.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

import yaml

from scripts.localenv.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubekeeper"
BUILD = REPO / "tests" / "helm" / "build"
RELEASE = "kubekeeper"
HELM_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart")
"""The labels the chart adds that the kustomization does not: Helm's usual ones."""


@cache
def helm_binary() -> Path:
    """tests/helm/build's helm (built once, minutes when cold; then cached)."""
    path = os.environ.get("PATH", "")
    env = {**os.environ, "PATH": f"/usr/local/go/bin:{path}"}
    out = subprocess.run([str(BUILD)], stdout=subprocess.PIPE, text=True, check=True, env=env)
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"


def run_helm(plane: ControlPlane | None, *args: str,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """helm against the control plane; its own state in a private directory under /tmp."""
    home = Path("/tmp/kubekeeper-helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    if plane is not None:
        env["KUBECONFIG"] = str(plane.kubeconfig)
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                          check=check, env=env)


def template(*args: str) -> list[dict]:
    """The objects `helm template` renders with the chart's defaults and ``args``."""
    out = run_helm(None, "template", RELEASE, str(CHART), *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def uninstall(plane: ControlPlane) -> None:
    """Remove the release and wait until its namespaces are gone; no release is fine."""
    run_helm(plane, "uninstall", RELEASE, "--wait", "--timeout=180s", check=False)
    for namespace in ("kubekeeper-node", "kubekeeper-system"):
        plane.run_kubectl("wait", "--for=delete", f"namespace/{namespace}", "--timeout=180s",
                          check=False)
