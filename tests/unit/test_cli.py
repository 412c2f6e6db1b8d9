"""``main([...])`` returns the documented exit codes without touching any service."""

from __future__ import annotations

from pathlib import Path

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
