"""kubekeeper's own manifests on the test control plane, and its accounts' credentials.

The install tests apply the repository's kustomization exactly as an admin would
(`kubectl apply -k .`) and then act as the ServiceAccounts it creates, with real
tokens from the TokenRequest API, so RBAC is checked by the API server itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from scripts.localenv.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
NODE_NAMESPACE = "kubekeeper-node"
SYSTEM_NAMESPACE = "kubekeeper-system"
TASKS = ("requests", "revisions", "jobs")


def rendered(plane: ControlPlane, directory: Path = REPO) -> list[dict]:
    """The objects `kubectl kustomize directory` renders, in its order."""
    output = plane.run_kubectl("kustomize", str(directory)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def find(docs: list[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    """The one rendered object of `kind` named `name` (in `namespace`, when given)."""
    matches = [
        doc for doc in docs
        if doc["kind"] == kind and doc["metadata"]["name"] == name
        and namespace in (None, doc["metadata"].get("namespace"))
    ]
    assert len(matches) == 1, f"{len(matches)} rendered {kind} named {name} in {namespace}"
    return matches[0]


def install(plane: ControlPlane) -> Iterator[list[dict]]:
    """Apply the kustomization for real, yield what it renders, then delete all of it.

    Deletion waits until the namespaces are gone, so later tests on the same
    control plane see a cluster without kubekeeper.
    """
    plane.run_kubectl("apply", "-k", str(REPO))
    try:
        yield rendered(plane)
    finally:
        uninstall(plane)


def uninstall(plane: ControlPlane) -> None:
    """Delete everything the kustomization makes; nothing left is fine."""
    plane.run_kubectl("delete", "-k", str(REPO), "--ignore-not-found", "--wait=true",
                      "--timeout=180s")


def account(namespace: str, name: str) -> str:
    """The user name a ServiceAccount authenticates as, for `--as`."""
    return f"system:serviceaccount:{namespace}:{name}"


def can_i(plane: ControlPlane, user: str, verb: str, resource: str,
          namespace: str | None = None) -> bool:
    """What `kubectl auth can-i` asks, as a SelfSubjectAccessReview for `user`.

    `resource` is `plural[.group][/subresource]`. The review is sent directly
    because kubectl resolves the group through discovery, and a group nobody
    serves yet (metrics.k8s.io before metrics-server runs) would be asked
    about as a core resource named `pods.metrics.k8s.io`.
    """
    named, _, subresource = resource.partition("/")
    plural, _, group = named.partition(".")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": plural,
                                              "subresource": subresource,
                                              "namespace": namespace or ""}}}
    out = plane.run_kubectl("create", "--validate=false", "-f", "-", "-o", "json",
                            f"--as={user}", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


def token_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of ServiceAccount `namespace/name`, and nothing else.

    The token comes from the TokenRequest API, as a projected token in a pod
    would, so every request made with it is authorized as that account.
    """
    token = plane.run_kubectl("create", "token", name, "--namespace", namespace,
                              "--duration=10m").stdout.strip()
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"]}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def kubekeeper(*args: str) -> subprocess.CompletedProcess[str]:
    """`kubekeeper ARGS` in a process of its own, as a CronJob's container runs it."""
    return subprocess.run([sys.executable, "-m", "agents", *args],
                          capture_output=True, text=True, check=False, timeout=300, cwd=REPO)
