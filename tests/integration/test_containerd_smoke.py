"""The private containerd behaves as the CRI integration tests assume."""

from __future__ import annotations

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc
from scripts.localenv import containerd, cri_images


def test_containerd_answers_at_the_pinned_version(containerd_service):
    version = containerd_service.ctr("version")
    assert "Server:" in version
    assert "v2.4.2" in version.split("Server:", 1)[1]


def test_sandbox_image_is_imported_and_pinned_by_the_cri(containerd_service):
    listing = containerd_service.ctr("images", "ls")
    (line,) = [row for row in listing.splitlines() if row.startswith(containerd.SANDBOX_IMAGE)]
    assert "io.cri-containerd.pinned=pinned" in line


def test_archive_images_share_their_busybox_layer(containerd_service):
    first = cri_images.image(["kubekeeper.test/smoke:first", "kubekeeper.test/smoke:alias"],
                             "first")
    second = cri_images.image(["kubekeeper.test/smoke:second"], "second")
    cri_images.import_images(containerd_service, [first, second])

    refs = containerd_service.ctr("images", "ls", "-q").split()
    assert {*first.tags, *second.tags} <= set(refs)
    assert first.layers[0] == second.layers[0]
    assert first.image_id != second.image_id


def test_cri_version_answers_through_the_generated_stubs(containerd_service):
    with grpc.insecure_channel(containerd_service.endpoint) as channel:
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        answer = runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=10)
    assert (answer.runtime_name, answer.runtime_version) == ("containerd", "v2.4.2")
    assert answer.runtime_api_version == "v1"
