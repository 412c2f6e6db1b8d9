"""The README's kustomize overlay renders what it promises, on top of the repository's base.

The overlay text below is the README's example, with only the base path adjusted
to where the test writes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.localenv.controlplane import ControlPlane
from tests import installation
from tests.installation import NODE_NAMESPACE, REPO, SYSTEM_NAMESPACE, TASKS, find

OVERLAY = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
images:
  - name: kubekeeper
    newName: registry.example.com/platform/kubekeeper
    newTag: 0.1.0
configMapGenerator:
  - name: kubekeeper-policy
    namespace: kubekeeper-node
    behavior: replace
    files: [policies.yaml]
  - name: kubekeeper-policy
    namespace: kubekeeper-system
    behavior: replace
    files: [policies.yaml]
patches:
  - target: {{kind: CronJob, name: kubekeeper-jobs}}
    patch: |-
      - op: replace
        path: /spec/schedule
        value: "*/15 * * * *"
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {{name: kubekeeper-node, namespace: kubekeeper-node}}
      spec:
        template:
          spec:
            containers:
              - name: node
                volumeMounts:
                  - {{name: docker-root, mountPath: /host/var/lib/docker}}
            volumes:
              - {{name: docker-root, hostPath: {{path: /var/lib/docker, type: Directory}}}}
"""
OWN_POLICY = "apiVersion: kubekeeper/v1\ndryRun: false\n"


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    (tmp_path / "kustomization.yaml").write_text(
        OVERLAY.format(base=os.path.relpath(REPO, tmp_path)))
    (tmp_path / "policies.yaml").write_text(OWN_POLICY)
    return tmp_path


def _pod_specs(docs: list[dict]) -> list[dict]:
    specs = [find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]["spec"]]
    specs += [find(docs, "CronJob", f"kubekeeper-{task}")["spec"]["jobTemplate"]["spec"]
              ["template"]["spec"] for task in TASKS]
    return specs


def test_base_uses_the_image_entry_that_overlays_replace(control_plane: ControlPlane) -> None:
    images = {c["image"] for spec in _pod_specs(installation.rendered(control_plane))
              for c in spec["containers"]}
    assert images == {"kubekeeper:0.1.0"}


def test_overlay_sets_image_schedule_policy_and_writable_docker_root(
    control_plane: ControlPlane, overlay: Path
) -> None:
    base = installation.rendered(control_plane)
    docs = installation.rendered(control_plane, overlay)

    images = {c["image"] for spec in _pod_specs(docs) for c in spec["containers"]}
    assert images == {"registry.example.com/platform/kubekeeper:0.1.0"}

    for task in TASKS:
        schedule = find(docs, "CronJob", f"kubekeeper-{task}")["spec"]["schedule"]
        unchanged = find(base, "CronJob", f"kubekeeper-{task}")["spec"]["schedule"]
        assert schedule == ("*/15 * * * *" if task == "jobs" else unchanged)

    maps = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "ConfigMap"}
    assert sorted(maps) == [NODE_NAMESPACE, SYSTEM_NAMESPACE]
    assert all(m["data"] == {"policies.yaml": OWN_POLICY} for m in maps.values())
    for spec, namespace in zip(_pod_specs(docs), [NODE_NAMESPACE] + [SYSTEM_NAMESPACE] * 3,
                               strict=True):
        volume = next(v for v in spec["volumes"] if v["name"] == "policy")
        assert volume["configMap"]["name"] == maps[namespace]["metadata"]["name"]

    mounts = {m["mountPath"]: m.get("readOnly", False) for m in
              find(docs, "DaemonSet", "kubekeeper-node")["spec"]["template"]["spec"]
              ["containers"][0]["volumeMounts"]}
    assert mounts["/host/var/lib/docker"] is False
    assert mounts["/host/var/log"] is True
    assert mounts["/host/etc/docker"] is True
