"""The kubekeeper image: built on the private engine, then cleaning that engine from inside.

No registry is reachable, so the base is the local debootstrap image from
scripts/localenv/baseimage.py, passed as BASE_IMAGE; the build runs on the host
network so pip reaches the package index. The node agent then runs in the
image as the DaemonSet runs it: root, no capabilities, read-only root
filesystem, no network, the engine's socket mounted at /var/run/docker.sock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.errors import BuildError, ImageNotFound, NotFound

from scripts.localenv import baseimage, testimages
from scripts.localenv.dockerd import DockerEngine
from tests.installation import REPO

pytestmark = pytest.mark.slow

TAG = "kubekeeper:test"
CLEANUP_POLICY = """\
apiVersion: kubekeeper/v1
dryRun: false
node:
  containers: {olderThan: 0s}
  images:
    dangling: {olderThan: 0s}
    unused: {enabled: false}
"""


@pytest.fixture(scope="module")
def engine(docker_engine: DockerEngine) -> Iterator[docker.DockerClient]:
    """The session's engine, emptied, with the kubekeeper image built on it."""
    client = docker_engine.client(timeout=900)
    testimages.remove_all(client)
    baseimage.ensure_image(client)
    started = time.monotonic()
    try:
        image, _ = client.images.build(
            path=str(REPO), tag=TAG, network_mode="host", rm=True, forcerm=True,
            buildargs={"BASE_IMAGE": baseimage.BASE_TAG})
    except BuildError as err:
        log = "".join(str(entry.get("stream") or entry.get("error") or "")
                      for entry in err.build_log)
        pytest.fail(f"the image did not build: {err}\n{log}", pytrace=False)
    print(f"\n{TAG}: {image.attrs['Size'] / 1e6:.0f} MB, built in "
          f"{time.monotonic() - started:.0f}s")
    yield client
    client.close()


def _run(client: docker.DockerClient, command: list[str], **options: object) -> tuple[int, str]:
    """Run the image to completion; returns its exit code and its stdout."""
    container = client.containers.run(TAG, command, detach=True, network_mode="none",
                                      read_only=True, cap_drop=["ALL"],
                                      security_opt=["no-new-privileges"], **options)
    try:
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs(stdout=True, stderr=False).decode()
    finally:
        container.remove(force=True)


def test_image_runs_kubekeeper_as_its_non_root_user(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    config = engine.images.get(TAG).attrs["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["kubekeeper"]
    (tmp_path / "policies.yaml").write_text((REPO / "policies.yaml").read_text())
    tmp_path.chmod(0o755)

    code, output = _run(engine, ["policy", "show", "--policy=/etc/kubekeeper/policies.yaml"],
                        volumes={str(tmp_path): {"bind": "/etc/kubekeeper", "mode": "ro"}})
    assert code == 0, output
    assert "apiVersion: kubekeeper/v1" in output


def test_node_agent_in_the_image_cleans_up_through_the_mounted_socket(
    engine: docker.DockerClient, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    exited = engine.containers.run(testimages.base_image(engine).id, ["true"],
                                   name="kk-exited", network_mode="none", detach=True)
    exited.wait(timeout=60)
    dangling = testimages.dangling_image(engine, "kk-install/dangling:1")
    (tmp_path / "policies.yaml").write_text(CLEANUP_POLICY)
    tmp_path.chmod(0o755)
    socket = docker_engine.base_url.removeprefix("unix://")
    data_root = str(docker_engine.data_root)

    code, output = _run(
        engine, ["node", "run", "--once", "--host-root=/host", "--log-format=json"],
        user="0", tmpfs={"/tmp": "size=16m"},
        environment={"NODE_NAME": "image-test", "DOCKER_HOST": "unix:///var/run/docker.sock",
                     "KUBEKEEPER_POLICY": "/etc/kubekeeper/policies.yaml"},
        volumes={socket: {"bind": "/var/run/docker.sock", "mode": "rw"},
                 data_root: {"bind": f"/host{data_root}", "mode": "ro"},
                 str(tmp_path): {"bind": "/etc/kubekeeper", "mode": "ro"}})

    lines = [json.loads(line) for line in output.splitlines()]
    assert code == 0, output
    summaries = [line for line in lines if line["event"] == "run.summary"]
    assert [s["task"] for s in summaries] == ["cleanup", "logs"]
    assert all(s["errors"] == 0 and s["aborted"] is None for s in summaries), summaries
    assert all(line["node"] == "image-test" and line["dry_run"] is False for line in lines)
    done = {(line["kind"], line["id"]) for line in lines
            if line["event"] == "action" and line["result"] == "done"}
    assert ("container", exited.id) in done
    assert ("image", dangling) in done
    with pytest.raises(NotFound):
        engine.containers.get(exited.id)
    with pytest.raises(ImageNotFound):
        engine.images.get(dangling)
