"""The inventory's reading of Engine API data, through the in-memory port."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.node import inventory
from agents.node.host_paths import HostPaths
from agents.node.inventory import docker_time, tree_size
from tests.fake_docker import MemoryDocker

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_docker_times_with_nanoseconds_offsets_and_go_zero():
    assert docker_time("2025-06-01T12:00:00.123456789Z") == T0 + timedelta(microseconds=123456)
    assert docker_time("2025-06-01T14:00:00+02:00") == T0
    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time(int(T0.timestamp())) == T0
    assert docker_time(0) is None and docker_time("") is None


def test_take_reads_states_sizes_mounts_and_volume_kinds():
    docker = MemoryDocker()
    docker.add_image("sha256:a", tags=["a:1"], created=T0, size=7, tagged_at=T0)
    docker.add_container("run", state="running", image="sha256:a", created=T0, size=99,
                         volumes=["data"])
    docker.add_container("done", image="sha256:a", created=T0, finished=T0, size=5,
                         volumes=["f" * 64])
    docker.add_volume("data", created=T0)
    docker.add_volume("f" * 64, created=T0)
    docker.add_volume("tmp", created=T0, labels={"com.docker.volume.anonymous": ""})
    snap = inventory.take(docker, HostPaths("/nonexistent-root"))
    by_id = {c.id: c for c in snap.containers}
    assert by_id["run"].size is None  # running containers are not measured
    assert by_id["done"].size == 5 and by_id["done"].volumes == ("f" * 64,)
    assert by_id["done"].finished_at is None  # not fetched yet
    assert [v.anonymous for v in snap.volumes] == [False, True, True]
    assert all(v.size is None for v in snap.volumes)  # not visible here
    assert snap.disk is not None and not snap.disk.visible
    assert snap.image("sha256:a").tags == ("a:1",) and snap.image("sha256:a").tagged_at is None
    detailed = inventory.with_details(docker, snap, ["done"], ["sha256:a"])
    assert {c.id: c.finished_at for c in detailed.containers} == {"run": None, "done": T0}
    assert detailed.image("sha256:a").tagged_at == T0


def test_with_details_skips_objects_that_vanished():
    docker = MemoryDocker()
    docker.add_container("gone-soon", created=T0, finished=T0)
    snap = inventory.take(docker, HostPaths("/"))
    del docker.containers_by_id["gone-soon"]
    assert inventory.with_details(docker, snap, ["gone-soon"], []).containers[0].finished_at \
        is None


def test_tree_size_counts_regular_files_without_following_links(tmp_path):
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/a").write_bytes(b"x" * 10)
    (tmp_path / "d/e/b").write_bytes(b"x" * 5)
    (tmp_path / "big").write_bytes(b"x" * 1000)
    (tmp_path / "d/link").symlink_to(tmp_path / "big")
    assert tree_size(str(tmp_path / "d")) == 15
    assert tree_size(str(tmp_path / "missing")) is None
