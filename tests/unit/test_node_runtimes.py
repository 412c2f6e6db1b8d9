"""``--runtime`` resolved on a host-root tree holding real (unanswered) socket files."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.checks import RUNTIME_NAMES
from agents.cli import main
from agents.node.host_paths import HostPaths
from agents.node.runtimes import SOCKETS, check_spec, select
from tests.fake_cri import Behaviour, serving

ALL = RUNTIME_NAMES


@pytest.fixture
def host() -> Iterator[Path]:
    """A host root short enough for socket paths (108 bytes), with /var/run -> /run as on a
    host: an absolute link, which only the agent re-roots (``bind`` never follows it)."""
    root = Path(tempfile.mkdtemp(prefix="kk-host-", dir="/tmp"))
    (root / "run").mkdir()
    (root / "var").mkdir()
    (root / "var/run").symlink_to("/run")
    yield root
    shutil.rmtree(root)


def bind(host: Path, host_path: str) -> None:
    """A socket file at ``host_path`` under the host root (nothing listens on it)."""
    local = host / host_path.removeprefix("/var").lstrip("/")
    assert local.resolve().is_relative_to(host)
    local.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(local))
    server.close()


def found(host: Path, spec: str = "auto", allowed=ALL, docker_host=None):
    selection = select(spec, HostPaths(str(host)), allowed, docker_host)
    return [(r.name, r.endpoint.removeprefix(f"unix://{host}")) for r in selection.runtimes], \
        [why for _, why in selection.notes]


def test_auto_finds_every_socket_in_the_issues_order(host):
    for candidate in SOCKETS:
        if candidate.name != "cri-dockerd":
            bind(host, candidate.path)
    runtimes, notes = found(host)
    assert runtimes == [("containerd", "/run/containerd/containerd.sock"),
                        ("k3s", "/run/k3s/containerd/containerd.sock"),
                        ("crio", "/run/crio/crio.sock"),
                        ("docker", "/run/docker.sock")]  # /var/run is a link to /run
    assert notes == []


def test_a_file_or_directory_where_a_socket_belongs_is_not_a_runtime(host):
    (host / "run/containerd").mkdir()
    (host / "run/containerd/containerd.sock").write_text("")
    (host / "run/docker.sock").mkdir()  # what a hostPath of type "" leaves behind
    bind(host, "/run/crio/crio.sock")
    assert found(host)[0] == [("crio", "/run/crio/crio.sock")]


def test_var_run_is_looked_for_under_run_when_only_run_is_mounted(host):
    (host / "var/run").unlink()
    bind(host, "/run/docker.sock")
    assert found(host)[0] == [("docker", "/run/docker.sock")]


def test_one_socket_reached_by_two_paths_is_cleaned_once(host):
    bind(host, "/run/containerd/containerd.sock")
    (host / "run/k3s/containerd").mkdir(parents=True)
    (host / "run/k3s/containerd/containerd.sock").symlink_to("/run/containerd/containerd.sock")
    assert found(host)[0] == [("containerd", "/run/containerd/containerd.sock")]


def test_cri_dockerd_is_left_out_beside_docker_it_fronts(host):
    bind(host, "/run/cri-dockerd.sock")
    bind(host, "/var/run/docker.sock")
    runtimes, notes = found(host)
    assert runtimes == [("docker", "/run/docker.sock")]
    assert len(notes) == 1 and "cri-dockerd" in notes[0] and "not cleaned twice" in notes[0]
    assert found(host, allowed=("cri-dockerd",))[0] == [("cri-dockerd", "/run/cri-dockerd.sock")]


def test_the_policy_turns_a_runtime_off_and_the_report_says_so(host):
    bind(host, "/run/containerd/containerd.sock")
    bind(host, "/var/run/docker.sock")
    runtimes, notes = found(host, allowed=("docker",))
    assert runtimes == [("docker", "/run/docker.sock")]
    assert notes == [f"runtime containerd (unix://{host}/run/containerd/containerd.sock) is "
                     "turned off by node.runtimes; not cleaned"]


def test_no_socket_at_all_is_one_clear_note(host):
    runtimes, notes = found(host)
    assert runtimes == []
    assert len(notes) == 1 and notes[0].startswith(f"no container runtime socket found under "
                                                   f"{host}")


def test_a_named_runtime_takes_its_first_socket_and_is_explicit(host):
    bind(host, "/run/k3s/containerd/containerd.sock")
    bind(host, "/run/crio/crio.sock")
    assert found(host, "containerd")[0] == [("k3s", "/run/k3s/containerd/containerd.sock")]
    assert found(host, "crio")[0] == [("crio", "/run/crio/crio.sock")]
    selection = select("containerd", HostPaths(str(host)), ALL)
    assert selection.runtimes[0].explicit


def test_a_named_runtime_without_its_socket_is_still_tried_so_the_run_fails_loudly(host):
    (runtime,) = select("containerd", HostPaths(str(host)), ALL).runtimes
    assert runtime.explicit and runtime.endpoint == f"unix://{host}/run/containerd/containerd.sock"


def test_docker_host_and_cri_socket_are_taken_as_given(host):
    bind(host, "/run/containerd/containerd.sock")
    assert found(host, docker_host="tcp://127.0.0.1:2375")[0] == [
        ("containerd", "/run/containerd/containerd.sock"), ("docker", "tcp://127.0.0.1:2375")]
    assert found(host, "cri:/elsewhere/cri.sock")[0] == [("cri", "/elsewhere/cri.sock")]
    assert found(host, "docker", docker_host="unix:///d.sock")[0] == [("docker", "unix:///d.sock")]


@pytest.mark.parametrize("spec", ["auto", "docker", "containerd", "crio", "cri:/x.sock"])
def test_the_documented_specs_are_accepted(spec):
    assert check_spec(spec) == spec


@pytest.mark.parametrize("spec", ["cri:", "podman", "CRI:/x"])
def test_other_specs_are_refused_with_the_choices(spec):
    with pytest.raises(ValueError, match="auto, docker, containerd, crio, cri:<socket>"):
        check_spec(spec)


def node_run(capsys, host: Path, *args: str) -> tuple[int, list[dict]]:
    policy = host / "policy.yaml"
    policy.write_text("apiVersion: kubekeeper/v1\ndryRun: false\n")
    capsys.readouterr()
    code = main(["node", "run", "--once", "--policy", str(policy), "--log-format", "json",
                 "--host-root", str(host), "--state-dir", str(host / "state"), *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_node_without_any_runtime_socket_gets_one_line_and_a_clean_exit(capsys, host):
    code, lines = node_run(capsys, host, "--job", "cleanup")

    assert code == 0
    (note, summary) = lines
    assert (note["kind"], note["result"], note["runtime"]) == ("runtime", "done", None)
    assert "no container runtime socket found" in note["reason"]
    assert (summary["error"], summary["runtimes"]) == (None, [])


def test_a_found_socket_that_is_not_a_cri_v1_runtime_is_noted_not_an_error(capsys, host):
    """Docker's own containerd runs without its CRI plugin: nothing to clean there."""
    (host / "run/containerd").mkdir()
    with serving(host / "run/containerd/containerd.sock", Behaviour(), runtime=False):
        code, lines = node_run(capsys, host, "--job", "cleanup")

    assert code == 0
    (note, summary) = lines
    assert (note["kind"], note["runtime"]) == ("runtime", "containerd")
    assert "found, but not cleaned" in note["reason"] and "v1" in note["reason"]
    assert summary["error"] is None


def test_a_named_runtime_that_is_missing_is_unreachable(capsys, host):
    code, lines = node_run(capsys, host, "--runtime", "containerd")
    assert code == 3 and lines == []


def test_a_found_socket_nobody_answers_on_is_unreachable_when_it_is_the_only_one(capsys,
                                                                                host):
    bind(host, "/run/crio/crio.sock")
    code, lines = node_run(capsys, host, "--job", "cleanup", "--runtime-timeout", "2s")
    assert code == 3 and lines == []


def _loaded(imports: str, wanted: str) -> str:
    """The modules matching the expression ``wanted`` (on ``m``) once ``imports`` are done,
    in a fresh interpreter."""
    probe = f"import sys, {imports}; print(sorted(m for m in sys.modules if {wanted}))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2]).stdout.strip()


def test_the_grpc_stack_is_imported_only_when_a_cri_socket_is_used():
    """The idle agent on a Docker node stays small: grpc and the stubs are ~17 MiB."""
    assert _loaded("agents.cli, agents.node.agent, agents.node.daemon",
                   "m == 'grpc' or m.startswith('agents.node.cri') and m != "
                   "'agents.node.cri_inventory' and m != 'agents.node.cri_mutations'") == "[]"


def test_the_docker_sdk_is_imported_only_when_docker_is_used():
    """An agent cleaning only a CRI runtime stays small: the SDK and requests are ~7 MiB
    of its idle RSS (the CRI port raises ``docker_port``'s exceptions, not its SDK's)."""
    assert _loaded("agents.cli, agents.node.agent, agents.node.daemon, agents.node.cri_port",
                   "m.split('.')[0] in ('docker', 'requests', 'urllib3')") == "[]"


def test_a_found_runtime_that_does_not_answer_in_time_is_a_failure_not_a_note(capsys, host):
    (host / "run/containerd").mkdir()
    with serving(host / "run/containerd/containerd.sock", Behaviour(version_delay=3)):
        code, lines = node_run(capsys, host, "--job", "cleanup", "--runtime-timeout", "1s")
    assert code == 3 and lines == []
