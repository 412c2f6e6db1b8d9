"""Host paths through --host-root: links are resolved inside it, never outside."""

from __future__ import annotations

import os

import pytest

from agents.node.host_paths import HostPaths
from agents.node.mutations import truncate_log


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "host"
    (root / "data/docker/containers/abc").mkdir(parents=True)
    (root / "data/docker/containers/abc/abc-json.log").write_bytes(b"z" * 64)
    (root / "var/lib").mkdir(parents=True)
    # On the host /var/lib/docker is a link to /data/docker (absolute, a host path).
    os.symlink("/data/docker", root / "var/lib/docker")
    return root


def test_absolute_links_are_rerooted_under_the_host_root(host):
    paths = HostPaths(str(host))
    assert paths.local("/var/lib/docker") == f"{host}/var/lib/docker"
    assert paths.resolve("/var/lib/docker/containers/abc/abc-json.log") == \
        f"{host}/data/docker/containers/abc/abc-json.log"


def test_a_missing_path_is_not_visible(host):
    paths = HostPaths(str(host))
    assert paths.resolve("/var/lib/kubelet") is None
    assert paths.resolve("/var/lib/docker/containers/zzz/zzz-json.log") is None


def test_dotdot_and_link_loops_cannot_escape_or_hang(host):
    paths = HostPaths(str(host))
    assert paths.resolve("/../../../var/lib/docker") == f"{host}/data/docker"
    os.symlink("/loop-b", host / "loop-a")
    os.symlink("/loop-a", host / "loop-b")
    assert paths.resolve("/loop-a") is None


def test_truncate_empties_a_docker_log_and_reports_the_bytes(host):
    paths = HostPaths(str(host))
    log = "/var/lib/docker/containers/abc/abc-json.log"
    assert truncate_log(paths, "/var/lib/docker", log) == 64
    assert (host / "data/docker/containers/abc/abc-json.log").stat().st_size == 0


def test_truncate_refuses_a_path_leading_outside_the_docker_log_directory(host):
    (host / "etc").mkdir()
    (host / "etc/shadow").write_bytes(b"secret")
    os.symlink("/etc/shadow", host / "data/docker/containers/abc/evil-json.log")
    paths = HostPaths(str(host))
    with pytest.raises(ValueError, match="outside"):
        truncate_log(paths, "/var/lib/docker", "/var/lib/docker/containers/abc/evil-json.log")
    assert (host / "etc/shadow").read_bytes() == b"secret"
