"""kubekeeper installed on the local node: the overlays and the host tree (tests and demo).

The image overlay changes the image reference and the pull policy, nothing else.
The node overlay builds on it and points the
DaemonSet's host paths at a tree inside the node's state dir instead of the
machine's own ``/run``, ``/var/lib``, ``/var/log`` and ``/etc/docker``. The test
node's runtime is private (its socket under a temp dir, never in ``/run``), so
this is where "the host" keeps its sockets, its kubelet config and its pod logs;
what the agent does with them is unchanged, and it never sees, nor creates
anything in, the machine's own directories.

The tree (``<node>/host``) holds bind mounts of the node's containerd socket at
``run/containerd/containerd.sock``, the private Docker engine's socket at
``run/docker.sock`` (a CI node: Docker beside the kubelet's containerd), the
kubelet's config at ``var-lib/kubelet/config.yaml`` and its pod logs at
``var-log/pods``. The runtimes' image stores are mounted into the pod at their
own paths under ``/host``, where the agent looks for the filesystem that their
``ImageFsInfo`` and ``docker info`` name.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import yaml

from scripts.localenv import mounts
from scripts.localenv.dockerd import DockerEngine
from scripts.localenv.node import Node

REPO = Path(__file__).resolve().parents[2]
IMAGE_OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: kubekeeper
    newName: docker.io/library/kubekeeper
    newTag: test
patches:
  - target: {{kind: CronJob}}
    patch: |-
      - op: replace
        path: /spec/jobTemplate/spec/template/spec/containers/0/imagePullPolicy
        value: Never
  - target: {{kind: DaemonSet}}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: Never
"""


def write_image_overlay(directory: Path) -> Path:
    """The overlay that changes only the image and its pull policy."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(
        IMAGE_OVERLAY.format(base=os.path.relpath(REPO, directory)))
    return directory


def write_node_overlay(directory: Path, image_overlay: Path, host: Path,
                       stores: list[Path], policies: Mapping[str, str] | None = None) -> Path:
    """The image overlay with the DaemonSet's host paths in ``host`` (see the module doc);
    ``policies`` replaces the policy ConfigMap's file in the namespaces it names."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"run": host / "run", "var-lib": host / "var-lib", "var-log": host / "var-log",
             "docker-config": host / "etc-docker", "state": host / "kubekeeper"}
    volumes = [{"name": name, "hostPath": {"path": str(path)}} for name, path in paths.items()]
    volumes += [{"name": f"store-{i}", "hostPath": {"path": str(p), "type": "Directory"}}
                for i, p in enumerate(stores)]
    store_mounts = [{"name": f"store-{i}", "mountPath": f"/host{p}", "readOnly": True}
                    for i, p in enumerate(stores)]
    patch = {"apiVersion": "apps/v1", "kind": "DaemonSet",
             "metadata": {"name": "kubekeeper-node", "namespace": "kubekeeper-node"},
             "spec": {"template": {"spec": {"volumes": volumes, "containers": [
                 {"name": "node", "volumeMounts": store_mounts}]}}}}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [os.path.relpath(image_overlay, directory)],
                     "patches": [{"patch": yaml.safe_dump(patch)}]}
    kustomization["configMapGenerator"] = []
    for namespace, text in (policies or {}).items():
        (directory / f"{namespace}.yaml").write_text(text)
        kustomization["configMapGenerator"].append({
            "name": "kubekeeper-policy", "namespace": namespace, "behavior": "replace",
            "files": [f"policies.yaml={namespace}.yaml"]})
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def make_host_tree(node: Node, engine: DockerEngine) -> Path:
    """``<node>/host``, its bind mounts made (node.stop unmounts whatever is below)."""
    host = node.state_dir / "host"
    for directory in ("run/containerd", "var-lib/kubelet", "var-log/pods", "etc-docker",
                      "kubekeeper"):
        (host / directory).mkdir(parents=True, exist_ok=True)
    binds = {node.runtime.socket: host / "run/containerd/containerd.sock",
             Path(engine.base_url.removeprefix("unix://")): host / "run/docker.sock",
             node.state_dir / "kubelet-config.yaml": host / "var-lib/kubelet/config.yaml",
             node.state_dir / "pod-logs": host / "var-log/pods"}
    mounted = set(map(str, mounts.mounts_under(host)))
    for source, target in binds.items():
        if str(target) in mounted:
            continue
        if not source.is_dir():
            target.touch()
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    return host


def unmount_host_tree(host: Path) -> None:
    mounts.unmount_all_under(host)
