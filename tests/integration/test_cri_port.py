"""The CRI port against a real containerd: sandboxes and containers made through the CRI."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from agents.cli import main
from agents.errors import EXIT_UNREACHABLE, EXIT_UNSUPPORTED
from agents.node.cri_port import GrpcCriPort
from agents.node.docker_port import Conflict, DockerDown, Gone, Timeout
from scripts.localenv import containerd, cri_images, processes
from scripts.localenv.containerd import SANDBOX_IMAGE
from tests.fake_cri import Behaviour, serving
from tests.node_runs import policy_text, write_policy
from tests.polling import wait_for

APP = cri_images.image(["kubekeeper.test/app:1", "kubekeeper.test/app:stable"], "app 1")
OTHER = cri_images.image(["kubekeeper.test/other:1"], "other 1")


@pytest.fixture
def port(containerd_service, cri_client) -> Iterator[GrpcCriPort]:
    """The port on an emptied containerd holding APP and OTHER (and the sandbox image)."""
    cri_images.import_images(containerd_service, [APP, OTHER])
    port = GrpcCriPort(containerd_service.endpoint, timeout=10)
    yield port
    port.close()


def test_version_is_containerd_speaking_cri_v1(port):
    version = port.version()
    assert (version.name, version.version, version.api_version) == ("containerd", "v2.4.2", "v1")


def test_lists_the_sandboxes_and_containers_the_cri_made(port, cri_client):
    pod = cri_client.run_pod("web", namespace="shop")
    exited = cri_client.exited_container(pod, "migrate", APP.tags[0])
    running = cri_client.running_container(pod, "server", OTHER.tags[0])

    (sandbox,) = port.sandboxes()
    assert (sandbox.id, sandbox.name, sandbox.namespace, sandbox.uid, sandbox.state) == (
        pod.id, "web", "shop", pod.uid, "ready")
    assert sandbox.created is not None
    by_id = {c.id: c for c in port.containers()}
    assert set(by_id) == {exited, running}
    assert (by_id[exited].name, by_id[exited].state, by_id[exited].image_id) == (
        "migrate", "exited", APP.image_id)
    assert (by_id[running].name, by_id[running].state, by_id[running].image_id) == (
        "server", "running", OTHER.image_id)
    assert {c.sandbox_id for c in by_id.values()} == {pod.id}
    assert by_id[exited].labels["io.kubernetes.pod.uid"] == pod.uid


def test_inspect_container_gives_its_finish_exit_code_and_log(port, cri_client):
    pod = cri_client.run_pod("batch")
    exited = cri_client.exited_container(pod, "once", APP.tags[0])

    status = port.inspect_container(exited)
    assert status.state == "exited" and status.exit_code == 0
    assert status.created is not None and status.finished_at is not None
    assert status.finished_at >= status.created
    assert status.log_path.endswith("once/0.log")
    assert port.containers()[0].finished_at is None  # not in a listing


def test_sandbox_image_is_pinned_in_use_and_never_removed(port, cri_client):
    pod = cri_client.run_pod("web")

    pause = {i.id: i for i in port.images() if SANDBOX_IMAGE in i.tags}
    ((pause_id, image),) = pause.items()
    assert image.pinned
    assert not any(i.pinned for i in port.images() if i.id != pause_id)
    gone = "0" * 64
    assert port.sandbox_images([pod.id, gone]) == {pod.id: SANDBOX_IMAGE, gone: None}
    with pytest.raises(Conflict, match="pinned"):
        port.remove_image(pause_id)
    assert pause_id in cri_client.image_ids()


def test_image_of_any_container_is_in_use_and_kept(port, cri_client):
    pod = cri_client.run_pod("web")
    cri_client.exited_container(pod, "migrate", APP.tags[0])
    cri_client.running_container(pod, "server", OTHER.tags[0])

    assert port.image_users(APP.image_id) == ["migrate"]
    assert port.image_users(OTHER.image_id) == ["server"]
    for image in (APP, OTHER):
        with pytest.raises(Conflict, match="used by container"):
            port.remove_image(image.image_id)
    assert {APP.image_id, OTHER.image_id} <= cri_client.image_ids()


def test_removes_an_unused_image_with_all_its_tags(port, cri_client):
    assert port.inspect_image(APP.image_id).tags == APP.tags

    port.remove_image(APP.image_id)

    assert APP.image_id not in cri_client.image_ids()
    assert not {*APP.tags} & {t for i in port.images() for t in i.tags}
    with pytest.raises(Gone):
        port.inspect_image(APP.image_id)
    assert port.image_users(APP.image_id) == []
    with pytest.raises(Gone):
        port.remove_image(APP.image_id)


def test_an_image_sharing_layers_with_a_removed_one_still_runs(port, cri_client):
    assert APP.layers[0] == OTHER.layers[0]  # both start from the busybox layer
    port.remove_image(APP.image_id)

    pod = cri_client.run_pod("web")
    container = cri_client.exited_container(pod, "check", OTHER.tags[0])
    assert port.inspect_container(container).exit_code == 0


def test_only_exited_containers_are_removed(port, cri_client):
    pod = cri_client.run_pod("web")
    exited = cri_client.exited_container(pod, "migrate", APP.tags[0])
    running = cri_client.running_container(pod, "server", OTHER.tags[0])

    with pytest.raises(Conflict, match="running"):
        port.remove_container(running)
    port.remove_container(exited)

    assert [c.id for c in port.containers()] == [running]
    assert port.inspect_container(running).state == "running"
    with pytest.raises(Gone):
        port.inspect_container(exited)
    with pytest.raises(Gone):
        port.remove_container(exited)


def test_image_fs_is_the_snapshotter_under_the_root(port, containerd_service):
    (filesystem,) = port.image_fs()
    assert filesystem.mountpoint.startswith(f"{containerd_service.root}/")
    assert filesystem.used_bytes is not None


def test_a_socket_nobody_serves_is_runtime_down(tmp_path):
    with pytest.raises(DockerDown, match=r"missing\.sock"):
        GrpcCriPort(f"unix://{tmp_path}/missing.sock", timeout=5)


def test_an_image_put_in_use_after_planning_is_kept(port, cri_client):
    planned = [i.id for i in port.images() if not i.pinned and i.id == APP.image_id]
    pod = cri_client.run_pod("late")
    cri_client.create_container(pod, "latecomer", APP.tags[1], ["true"])  # created, not started

    for image_id in planned:
        with pytest.raises(Conflict, match="latecomer"):
            port.remove_image(image_id)
    assert APP.image_id in cri_client.image_ids()


def test_a_containerd_stopped_mid_run_is_runtime_down():
    state_dir = Path(tempfile.mkdtemp(prefix="kk-ctrd-stop-", dir="/tmp"))
    try:
        service = containerd.start(state_dir)
        port = GrpcCriPort(service.endpoint, timeout=10)
        assert port.images()
        containerd.stop(state_dir)
        with pytest.raises(DockerDown):
            port.images()
        port.close()
    finally:
        containerd.stop(state_dir)


@contextmanager
def paused(service: containerd.Containerd) -> Iterator[None]:
    """containerd frozen (SIGSTOP): its socket still takes connections, nothing answers.
    It is always thawed, so the session's containerd serves the tests after this one."""
    pid = processes.read_pid(service.pid_file)
    assert pid is not None and processes.is_alive(pid), "the private containerd is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
                 "the private containerd to stop on SIGSTOP", timeout=10, interval=0.05)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def node_run(capsys, endpoint: str, policy: Path, *args: str) -> tuple[int, str, str]:
    """``kubekeeper node run --once`` on one CRI socket: exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["node", "run", "--once", "--policy", str(policy), "--runtime", f"cri:{endpoint}",
                 "--log-format", "json", "--state-dir", str(policy.parent / "state"), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_slow_answer_from_containerd_is_a_timeout_and_it_answers_again_after(
        containerd_service, cri_client):
    port = GrpcCriPort(containerd_service.endpoint, timeout=1)
    try:
        assert port.images()
        with paused(containerd_service), pytest.raises(Timeout, match="no answer in time"):
            port.images()
        assert port.images()
    finally:
        port.close()


def test_a_run_on_a_containerd_that_does_not_answer_in_time_exits_3_and_changes_nothing(
        capsys, tmp_path, containerd_service, cri_client):
    cri_images.import_images(containerd_service, [APP])
    before = cri_client.image_ids()
    policy = write_policy(tmp_path, policy_text())
    with paused(containerd_service):
        code, out, err = node_run(capsys, containerd_service.endpoint, policy,
                                  "--runtime-timeout", "1s", "--job", "cleanup")

    assert code == EXIT_UNREACHABLE, (out, err)
    assert "no answer in time" in err and containerd_service.endpoint in err
    assert "Traceback" not in err
    assert cri_client.image_ids() == before


@pytest.mark.parametrize("behaviour", [
    pytest.param({"runtime": False}, id="no-runtime.v1"),
    pytest.param({"api_version": "v1alpha2"}, id="v1alpha2"),
])
def test_a_runtime_that_is_not_cri_v1_is_said_plainly_exit_4_and_nothing_removed(
        capsys, tmp_path, behaviour):
    """A gRPC server on the socket that does not serve runtime.v1 (or says another version):
    removals would be refused by it anyway, but the agent must not even plan."""
    socket = tmp_path / "cri.sock"
    fake = Behaviour(api_version=behaviour.get("api_version", "v1"))
    with serving(socket, fake, runtime=behaviour.get("runtime", True)):
        code, out, err = node_run(capsys, f"unix://{socket}",
                                  write_policy(tmp_path, policy_text()), "--job", "all")

    assert code == EXIT_UNSUPPORTED, (out, err)
    assert "is not a CRI v1 runtime, nothing was changed" in err
    assert "Traceback" not in err
    assert fake.calls == ["/runtime.v1.RuntimeService/Version"]  # asked nothing else
    assert '"event": "action' not in out
