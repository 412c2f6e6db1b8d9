"""``main([...])`` returns the documented exit codes without touching any service."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from agents.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_policy_check_of_the_shipped_file_succeeds(capsys):
    assert main(["policy", "check", str(ROOT / "policies.yaml")]) == 0
    assert "ok" in capsys.readouterr().err


def test_invalid_policy_exits_2_and_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "policies.yaml"
    bad.write_text("apiVersion: kubekeeper/v1\ndryRun: maybe\nnode: {logs: {action: burn}}\n")
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 problems, nothing was changed" in err
    assert f'{bad}:2:9: dryRun: "maybe" is not a boolean' in err
    assert f'{bad}:3:23: node.logs.action: "burn" is not one of report, truncate' in err


def test_invalid_policy_stops_a_run_before_any_connection(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("apiVersion: kubekeeper/v1\nmaxDeletionsPerRun: lots\n")
    code = main(["node", "run", "--once", "--policy", str(bad), "--docker-host",
                 f"unix://{tmp_path}/never.sock"])
    assert code == 2
    assert "maxDeletionsPerRun" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys):
    assert main(["cluster", "run", "everything"]) == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["node", "run", "--no-such-flag"]) == 2


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "policy" in capsys.readouterr().out


def test_policy_show_applies_namespace_overrides(capsys):
    assert main(["policy", "show", "--policy", str(ROOT / "policies.yaml"),
                 "--namespace", "batch-etl"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["cluster"]["completedJobs"]["succeededTTL"] == "10m"
    assert shown["cluster"]["namespaces"]["inScope"] is True
    assert main(["policy", "show", "--policy", str(ROOT / "policies.yaml"),
                 "--namespace", "kube-system"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["cluster"]["completedJobs"]["succeededTTL"] == "1d"
    assert shown["cluster"]["namespaces"]["inScope"] is False


def test_unreachable_docker_exits_3_and_names_the_endpoint(tmp_path, capsys):
    endpoint = f"unix://{tmp_path}/docker.sock"
    code = main(["node", "run", "--once", "--policy", str(ROOT / "policies.yaml"),
                 "--docker-host", endpoint])
    assert code == 3
    assert endpoint in capsys.readouterr().err


def test_unreachable_api_server_exits_3_and_names_the_endpoint(tmp_path, capsys):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    code = main(["cluster", "run", "jobs", "--policy", str(ROOT / "policies.yaml"),
                 "--kubeconfig", str(kubeconfig)])
    assert code == 3
    assert "https://127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http", "٨٠"])
def test_a_health_port_out_of_range_exits_2(tmp_path, capsys, port):
    code = main(["node", "run", "--policy", str(ROOT / "policies.yaml"), "--docker-host",
                 f"unix://{tmp_path}/none.sock", "--health-port", port])
    assert code == 2
    assert "is not a port (1 to 65535)" in capsys.readouterr().err


def test_a_relative_kubelet_config_exits_2(tmp_path, capsys):
    code = main(["node", "run", "--policy", str(ROOT / "policies.yaml"), "--docker-host",
                 f"unix://{tmp_path}/none.sock", "--kubelet-config", "config.yaml"])
    assert code == 2
    assert "'config.yaml' is not an absolute path on the host" in capsys.readouterr().err


def test_a_health_port_in_use_exits_2_with_a_message(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["node", "run", "--policy", str(ROOT / "policies.yaml"), "--docker-host",
                     f"unix://{tmp_path}/none.sock", "--health-port", str(port)])
    assert code == 2
    assert f"--health-port {port}: cannot listen there (Address already in use)" in \
        capsys.readouterr().err


@pytest.mark.parametrize("endpoint", ["http://[::1", "bogus://x", "tcp://host:99999",
                                      "tcp://:abc"])
def test_a_malformed_docker_host_exits_2_with_a_message(capsys, endpoint):
    code = main(["node", "run", "--once", "--policy", str(ROOT / "policies.yaml"),
                 "--docker-host", endpoint])
    assert code == 2
    assert f"--docker-host (or $DOCKER_HOST): {endpoint!r} is not a Docker endpoint" in \
        capsys.readouterr().err


def test_a_malformed_docker_host_variable_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "http://[::1")
    assert main(["node", "plan", "--policy", str(ROOT / "policies.yaml")]) == 2
    assert "'http://[::1' is not a Docker endpoint" in capsys.readouterr().err


def test_a_cron_that_never_fires_exits_2_at_daemon_start(tmp_path, capsys):
    never = tmp_path / "policies.yaml"
    never.write_text("apiVersion: kubekeeper/v1\nnode: {schedule: {logs: '0 0 30 2 *'}}\n")
    code = main(["node", "run", "--policy", str(never), "--docker-host",
                 f"unix://{tmp_path}/none.sock"])
    assert code == 2
    assert f'{never}:2:25: node.schedule.logs: "0 0 30 2 *" never fires' in \
        capsys.readouterr().err


@pytest.mark.parametrize("special", ["/dev/null", "directory"])
def test_policy_check_refuses_what_is_not_a_regular_file(tmp_path, capsys, special):
    """(test_policy_corpus covers FIFOs and /dev/zero, guarded against a hang.)"""
    path = str(tmp_path) if special == "directory" else special
    assert main(["policy", "check", path]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err or "is not a regular file" in err


@pytest.mark.parametrize("option", ["--deadline", "--runtime-timeout"])
def test_a_duration_option_past_every_limit_exits_2(tmp_path, capsys, option):
    code = main(["node", "run", "--once", "--policy", str(ROOT / "policies.yaml"),
                 "--docker-host", f"unix://{tmp_path}/none.sock", option, "99999999999d"])
    assert code == 2
    assert '"99999999999d" is longer than 3650d' in capsys.readouterr().err
