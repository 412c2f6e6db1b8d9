"""The log-rotation audit on plain data, and the kubelet log walk on a temporary host root."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from agents.actions import Verb
from agents.node.host_paths import HostPaths
from agents.node.log_audit import plan_logs
from agents.node.log_inventory import ContainerLog, DaemonLogging, LogFacts, LogFile, kubelet_files
from agents.policy import LogRules

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MI = 2**20
ROOT = "/var/lib/docker"


def log(cid: str, size: int | None = MI, driver: str = "json-file", **opts: str) -> ContainerLog:
    path = f"{ROOT}/containers/{cid}/{cid}-json.log" if driver == "json-file" else ""
    return ContainerLog(cid, f"name-{cid}", driver,
                        MappingProxyType({k.replace("_", "-"): v for k, v in opts.items()}),
                        path, size if path else None, "shop")


def facts(*containers: ContainerLog, daemon_opts: dict | None = None,
          files: tuple[LogFile, ...] = (), visible: bool = True) -> LogFacts:
    daemon = DaemonLogging("json-file", None if daemon_opts is None
                           else MappingProxyType(daemon_opts))
    return LogFacts(ROOT, ROOT if visible else None, daemon, containers, files)


NO_TOP = LogRules(topN=0)


def findings(f: LogFacts, rules: LogRules = NO_TOP) -> list[tuple[str, str, str]]:
    return [(a.name, a.rule, str(a.verb)) for a in plan_logs(f, rules, NOW)]


def test_unbounded_json_file_logs_are_reported_but_local_rotates_by_default():
    f = facts(log("a"), log("b", max_size="10m"), log("c", max_size="-1"),
              log("d", driver="local"), daemon_opts={"max-size": "10m"})
    assert findings(f) == [("name-a", "logs.requireRotation", "report"),
                           ("name-c", "logs.requireRotation", "report")]


def test_the_daemon_default_is_reported_when_unbounded_or_unknown():
    assert findings(facts(daemon_opts={})) == [("dockerd", "logs.requireRotation", "report")]
    [unknown] = plan_logs(facts(), LogRules(topN=0), NOW)
    assert "not visible" in unknown.why


def test_oversized_logs_are_reported_or_truncated_only_inside_the_docker_root():
    rules = LogRules(maxFileSize=100 * MI, topN=0, requireRotation=False)
    big, small = log("big", 150 * MI, max_size="1g"), log("small", MI, max_size="1g")
    assert findings(facts(big, small, daemon_opts={}), rules) == \
        [("name-big", "logs.maxFileSize", "report")]
    truncate = LogRules(maxFileSize=100 * MI, topN=0, requireRotation=False, action="truncate")
    [action] = plan_logs(facts(big, small, daemon_opts={}), truncate, NOW)
    assert action.verb is Verb.TRUNCATE and action.bytes == 150 * MI
    assert action.details["path"] == f"{ROOT}/containers/big/big-json.log"
    elsewhere = ContainerLog("x", "x", "json-file", MappingProxyType({"max-size": "1g"}),
                             "/srv/logs/x.log", 150 * MI)
    [report] = plan_logs(facts(elsewhere, daemon_opts={}), truncate, NOW)
    assert report.verb is Verb.REPORT


def test_an_invisible_docker_root_is_said_once():
    f = facts(log("a", None, max_size="1m"), daemon_opts={"max-size": "1m"}, visible=False)
    [finding] = plan_logs(f, LogRules(topN=3), NOW)
    assert finding.name == ROOT and "not visible" in finding.why


def test_kubelet_files_oversized_or_stale_and_the_largest_n_with_their_total():
    files = (LogFile("/var/log/pods/ns_p_u/app/0.log", 300 * MI, NOW - timedelta(days=30)),
             LogFile("/var/log/pods/ns_p_u/app/1.log", 2 * MI, NOW))
    f = facts(log("a", 50 * MI, max_size="1g"), log("b", 10, max_size="1g"),
              daemon_opts={"max-size": "1g"}, files=files)
    actions = plan_logs(f, LogRules(maxFileSize=100 * MI, topN=2, staleAfter=timedelta(days=7)),
                        NOW)
    rules = [(a.name, a.rule) for a in actions]
    assert rules == [("/var/log/pods/ns_p_u/app/0.log", "logs.maxFileSize"),
                     ("/var/log/pods/ns_p_u/app/0.log", "logs.staleAfter"),
                     ("/var/log/pods/ns_p_u/app/0.log", "logs.topN"),
                     ("name-a", "logs.topN")]
    assert actions[-1].details["rank"] == 2
    assert actions[-1].details["top_total"] == 350 * MI
    assert all(a.verb is Verb.REPORT for a in actions)


def test_kubelet_walk_counts_each_file_once_through_links_rerooted_under_host_root(tmp_path):
    host = tmp_path / "host"
    pod_dir = host / "var/log/pods/ns_pod_uid/app"
    pod_dir.mkdir(parents=True)
    (pod_dir / "0.log").write_bytes(b"x" * 100)
    docker_log = host / "var/lib/docker/containers/abc/abc-json.log"
    docker_log.parent.mkdir(parents=True)
    docker_log.write_bytes(b"y" * 50)
    # dockershim style: a pod log linking (absolute, host path) to Docker's file.
    os.symlink("/var/lib/docker/containers/abc/abc-json.log", pod_dir / "1.log")
    containers = host / "var/log/containers"
    containers.mkdir(parents=True)
    os.symlink("/var/log/pods/ns_pod_uid/app/0.log", containers / "pod_ns_app-abc.log")
    paths = HostPaths(str(host))
    found = kubelet_files(paths, already_counted={str(docker_log)})
    assert [(f.path, f.size) for f in found] == [("/var/log/pods/ns_pod_uid/app/0.log", 100)]
    assert [f.path for f in kubelet_files(paths, set())] == \
        ["/var/log/pods/ns_pod_uid/app/0.log", "/var/log/pods/ns_pod_uid/app/1.log"]


def test_empty_log_files_never_fill_the_largest_n():
    f = facts(log("a", 0, max_size="1g"), log("b", 5, max_size="1g"),
              daemon_opts={"max-size": "1g"}, files=(LogFile("/var/log/pods/x/0.log", 0, NOW),))
    assert findings(f, LogRules(topN=5)) == [("name-b", "logs.topN", "report")]
