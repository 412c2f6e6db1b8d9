"""The CRI port's faults, against a fake CRI server on a unix socket: version, deadline, down."""

from __future__ import annotations

import time

import grpc
import pytest

from agents.node.cri_port import (
    CriContainer,
    CriImage,
    GrpcCriPort,
    Unsupported,
    cri_time,
    refusals,
)
from agents.node.docker_port import Conflict, DockerDown, DockerError, Gone, InUse, Timeout
from tests.fake_cri import Behaviour, serving


@pytest.fixture
def socket(tmp_path):
    return tmp_path / "cri.sock"


def test_lists_what_the_runtime_answers(socket):
    with serving(socket, Behaviour()):
        port = GrpcCriPort(f"unix://{socket}", timeout=5)
        (image,) = port.images()
    assert (image.id, image.tags, image.size, image.pinned) == (
        "sha256:" + "a" * 64, ("kubekeeper.test/fake:1",), 1, False)


def test_a_bare_socket_path_is_accepted(socket):
    with serving(socket, Behaviour()):
        assert GrpcCriPort(str(socket), timeout=5).version().name == "fake-cri"


@pytest.mark.parametrize("api_version", ["v1alpha2", ""])
def test_a_runtime_reporting_another_cri_version_is_refused(socket, api_version):
    with serving(socket, Behaviour(api_version=api_version)), \
            pytest.raises(Unsupported, match="not v1"):
        GrpcCriPort(f"unix://{socket}", timeout=5)


def test_a_runtime_without_the_v1_service_is_refused(socket):
    with serving(socket, Behaviour(), runtime=False), pytest.raises(Unsupported, match="v1"):
        GrpcCriPort(f"unix://{socket}", timeout=5)


def test_a_slow_answer_is_cut_at_the_call_deadline(socket):
    with serving(socket, Behaviour(delay=3.0)):
        port = GrpcCriPort(f"unix://{socket}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(Timeout, match="no answer in time"):
            port.images()
        assert time.monotonic() - started < 2.0


def test_a_runtime_stopped_mid_run_is_down(socket):
    with serving(socket, Behaviour()) as server:
        port = GrpcCriPort(f"unix://{socket}", timeout=5)
        server.stop(grace=None).wait()
        with pytest.raises(DockerDown, match=r"cri\.sock"):
            port.images()


@pytest.mark.parametrize(("code", "message", "expected"), [
    (grpc.StatusCode.NOT_FOUND, "no such image", Gone),
    (grpc.StatusCode.FAILED_PRECONDITION, "image is used", Conflict),
    (grpc.StatusCode.UNKNOWN, "image is in use by a container", Conflict),
    (grpc.StatusCode.UNAVAILABLE, "address in use", DockerDown),
    (grpc.StatusCode.UNIMPLEMENTED, "unknown method", Unsupported),
    (grpc.StatusCode.INTERNAL, "boom", DockerError),
])
def test_grpc_statuses_become_the_docker_ports_exceptions(socket, code, message, expected):
    with serving(socket, Behaviour(failure=(code, message))):
        port = GrpcCriPort(f"unix://{socket}", timeout=5)
        with pytest.raises(DockerError, match=message) as raised:
            port.images()
    assert type(raised.value) is expected


def test_cri_times_are_nanoseconds_and_zero_is_unknown():
    assert cri_time(0) is None
    assert cri_time(1_767_225_600_123_456_789).isoformat() == "2026-01-01T00:00:00.123457+00:00"


def test_refusals_name_every_user_once_in_listing_order_by_any_name_of_the_image():
    app = CriImage("sha256:" + "a" * 64, ("shop/app:1",), ("shop/app@sha256:" + "d" * 64,))
    images = {i.id: i for i in (app, CriImage("sha256:" + "b" * 64),
                                CriImage("sha256:" + "c" * 64, pinned=True))}
    containers = [_container("by-tag", "", "shop/app:1"),
                  _container("other", "sha256:" + "b" * 63 + "0", "x"),
                  _container("by-id", app.id, "shop/app:1"),
                  _container("by-bare-id", "a" * 64, ""),
                  _container("by-digest", "", "shop/app@sha256:" + "d" * 64)]
    verdicts = refusals([*images, "sha256:gone"], images, containers)

    used = verdicts[app.id]
    assert isinstance(used, InUse) and used.users == ["by-tag", "by-id", "by-bare-id",
                                                      "by-digest"]
    assert verdicts["sha256:" + "b" * 64] is None
    assert isinstance(verdicts["sha256:" + "c" * 64], Conflict)
    assert isinstance(verdicts["sha256:gone"], Gone)


def _container(name: str, image_id: str, image: str) -> CriContainer:
    return CriContainer(id=name, name=name, attempt=0, sandbox_id="", state="exited",
                        created=None, image_id=image_id, image=image)


def test_sandbox_statuses_are_asked_together_a_bounded_number_at_a_time(socket):
    """One after another they cost a round trip per pod; all at once, unbounded answers."""
    fake = Behaviour(status_delay=0.5, workers=300)
    ids = [f"{n:064x}" for n in range(300)]
    with serving(socket, fake):
        found = GrpcCriPort(f"unix://{socket}", timeout=5).sandbox_images(ids)
    assert found == dict.fromkeys(ids)
    assert 64 < fake.statuses_at_once <= 128
