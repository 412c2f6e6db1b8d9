"""kubekeeper installed on the local node, once per session (the image takes minutes).

The DaemonSet tests and the CronJob tests share the installation: each module
uninstalling would leave the next one waiting on terminating namespaces.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.localenv import dockerd, kubekeeper_image, node_install
from scripts.localenv.dockerd import DockerEngine
from scripts.localenv.node import Node


@dataclass(frozen=True)
class Installed:
    """The node with kubekeeper applied; ``agent_engine`` is the Docker engine whose socket
    the DaemonSet pod finds beside containerd's (a CI node), ``host`` the host tree."""

    node: Node
    agent_engine: DockerEngine
    image_overlay: Path
    host: Path
    work: Path

    def node_overlay(self, policies: Mapping[str, str] | None = None,
                     name: str = "node-overlay") -> Path:
        """The overlay as installed, with the policy replaced in the namespaces that
        ``policies`` names (``{namespace: text}``)."""
        stores = [self.node.runtime.root, self.agent_engine.data_root]
        return node_install.write_node_overlay(self.work / name, self.image_overlay,
                                               self.host, stores, policies)


@pytest.fixture(scope="session")
def agent_engine() -> Iterator[DockerEngine]:
    """A Docker engine of the DaemonSet's own to clean: never the session's shared one."""
    state_dir = Path(tempfile.mkdtemp(prefix="kk-dsd-", dir="/tmp"))
    try:
        engine = dockerd.start(state_dir)
    except Exception as err:
        dockerd.stop(state_dir)
        pytest.fail(f"the DaemonSet's Docker engine did not start: {err}", pytrace=False)
    yield engine
    dockerd.stop(state_dir)


@pytest.fixture(scope="session")
def installed(kube_node: Node, docker_engine: DockerEngine, agent_engine: DockerEngine,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The image (built, or cached for these sources) imported into the node's containerd,
    the host tree made, nothing applied: each module applies the overlay (``kubectl apply``
    is idempotent)."""
    client = docker_engine.client(timeout=900)
    try:
        kubekeeper_image.import_into(kube_node.runtime, kubekeeper_image.archive(client))
    except kubekeeper_image.ImageBuildError as err:
        pytest.fail(str(err), pytrace=False)
    finally:
        client.close()
    work = tmp_path_factory.mktemp("install")
    host = node_install.make_host_tree(kube_node, agent_engine)
    image_overlay = node_install.write_image_overlay(work / "image-overlay")
    yield Installed(kube_node, agent_engine, image_overlay, host, work)
    overlay = work / "node-overlay"
    if overlay.exists():
        kube_node.plane.run_kubectl("delete", "-k", str(overlay), "--ignore-not-found",
                                    "--wait=true", "--timeout=90s", check=False)
    node_install.unmount_host_tree(host)
