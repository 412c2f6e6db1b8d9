"""The private containerd behaves as the CRI integration tests assume."""

from __future__ import annotations

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
