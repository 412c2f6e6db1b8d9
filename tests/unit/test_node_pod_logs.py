"""The log audit on CRI nodes: the kubelet's config, pod log directories; plain data and a
temporary host root."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from agents.actions import Verb
from agents.node.host_paths import HostPaths
from agents.node.kubelet_config import KubeletLogging, parse_kubelet_logging, read_kubelet_logging
from agents.node.log_inventory import LogFile
from agents.node.pod_log_audit import ORPHAN_GRACE, plan_pod_logs
from agents.node.pod_log_inventory import PodLogDir, PodLogFacts, pod_log_dirs, take_pod_logs
from agents.policy import LogRules

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MI = 2**20
OLD = NOW - timedelta(hours=2)
RULES = LogRules(topN=0)


def pod_dir(uid: str, size: int = MI, logs: int = 1, modified: datetime = OLD) -> PodLogDir:
    return PodLogDir(f"/var/log/pods/shop_web-{uid}_{uid}", "shop", f"web-{uid}", uid, size,
                     logs, modified)


def facts(*dirs: PodLogDir, live: tuple[str, ...] = (), kubelet: KubeletLogging | None = None,
          visible: bool = True, files: tuple[LogFile, ...] = ()) -> PodLogFacts:
    return PodLogFacts(kubelet or KubeletLogging(), visible, dirs, frozenset(live), files)


def findings(f: PodLogFacts, rules: LogRules = RULES) -> list[tuple[str, str]]:
    return [(a.name, a.rule) for a in plan_pod_logs(f, rules, NOW)]


@pytest.mark.parametrize(("config", "size", "files"), [
    ({}, 10 * MI, 5),
    ({"containerLogMaxSize": "50Mi", "containerLogMaxFiles": 3}, 50 * MI, 3),
    ({"containerLogMaxSize": "1G"}, 10**9, 5),
    ({"containerLogMaxSize": "-1"}, -1, 5),
    ({"containerLogMaxSize": 0, "containerLogMaxFiles": 1}, 0, 1),
])
def test_the_kubelet_config_is_read_with_the_kubelets_defaults(config, size, files):
    kubelet = parse_kubelet_logging(config)
    assert (kubelet.max_size, kubelet.max_files, kubelet.problem) == (size, files, None)
    assert kubelet.pod_logs_dir == "/var/log/pods"


@pytest.mark.parametrize(("config", "said"), [
    ({"containerLogMaxSize": "ten megs"}, "cannot use"),
    ({"containerLogMaxSize": "1.5"}, "not a whole number"),
    ({"containerLogMaxFiles": "five"}, "not a number"),
    ({"podLogsDir": "logs"}, "not an absolute path"),
])
def test_values_the_kubelet_cannot_use_are_said_and_the_defaults_assumed(config, said):
    kubelet = parse_kubelet_logging(config)
    assert said in (kubelet.problem or "")
    assert (kubelet.max_size, kubelet.max_files) == (10 * MI, 5)


def test_a_missing_unreadable_or_foreign_config_file_is_said(tmp_path):
    paths = HostPaths(str(tmp_path))
    assert "is not visible here" in read_kubelet_logging(paths).problem
    config = tmp_path / "var/lib/kubelet/config.yaml"
    config.parent.mkdir(parents=True)
    assert "does not exist" in read_kubelet_logging(paths).problem
    config.mkdir()  # a directory where the file belongs: open() fails even for root
    assert "cannot be read" in read_kubelet_logging(paths).problem
    other = tmp_path / "etc/kubelet.yaml"
    other.parent.mkdir()
    other.write_text("[1, 2]\n")
    assert "not a KubeletConfiguration" in read_kubelet_logging(paths, "/etc/kubelet.yaml").problem
    other.write_text("kind: KubeletConfiguration\ncontainerLogMaxSize: 20Mi\n"
                     "podLogsDir: /srv/pods/\n")
    read = read_kubelet_logging(paths, "/etc/kubelet.yaml")
    assert (read.max_size, read.pod_logs_dir, read.problem) == (20 * MI, "/srv/pods", None)


def test_a_config_problem_is_one_line_naming_the_defaults_assumed():
    kubelet = KubeletLogging(problem="kubelet config /var/lib/kubelet/config.yaml does not exist")
    (line,) = plan_pod_logs(facts(kubelet=kubelet), RULES, NOW)
    assert (line.rule, line.verb, line.name) == ("--kubelet-config", Verb.REPORT,
                                                 "/var/lib/kubelet/config.yaml")
    assert "defaults are assumed (containerLogMaxSize 10.0Mi, containerLogMaxFiles 5)" in line.why


@pytest.mark.parametrize(("size", "files", "said"), [
    (-1, 5, "turns the kubelet's log rotation off"),
    (0, 5, "rotates every log at each check"),
    (10 * MI, 1, "refuses a value below 2"),
])
def test_configs_that_disable_rotation_are_reported(size, files, said):
    kubelet = KubeletLogging(max_size=size, max_files=files, written_size=str(size))
    (line,) = plan_pod_logs(facts(kubelet=kubelet), RULES, NOW)
    assert line.rule == "logs.requireRotation" and said in line.why
    assert plan_pod_logs(facts(kubelet=kubelet), LogRules(topN=0, requireRotation=False),
                         NOW) == []


def test_the_directory_of_a_pod_no_sandbox_has_is_reported_once_it_is_quiet():
    live, gone = pod_dir("live"), pod_dir("gone")
    fresh = pod_dir("fresh", modified=NOW - ORPHAN_GRACE + timedelta(seconds=1))
    [line] = plan_pod_logs(facts(live, gone, fresh, live=("live",)), RULES, NOW)
    assert (line.name, line.id, line.rule, line.namespace) == (gone.path, "gone",
                                                               "logs.podLogDirs", "shop")
    assert "no pod sandbox with uid gone" in line.why and "shop/web-gone" in line.why
    assert line.details["size"] == MI


def test_a_directory_over_maxsize_times_maxfiles_per_container_log_is_reported():
    kubelet = KubeletLogging(max_size=10 * MI, max_files=5)
    over = pod_dir("over", size=50 * MI + 1)
    two = pod_dir("two", size=60 * MI, logs=2)  # two container logs: bound 100Mi
    at = pod_dir("at", size=50 * MI)
    [line] = plan_pod_logs(facts(over, two, at, live=("over", "two", "at"), kubelet=kubelet),
                           RULES, NOW)
    assert (line.id, line.rule, line.details["bound"]) == ("over", "logs.podLogDirs", 50 * MI)
    assert "1 container log(s) x containerLogMaxFiles 5 x containerLogMaxSize 10.0Mi" in line.why


def test_without_rotation_no_bound_is_claimed():
    kubelet = KubeletLogging(max_size=-1, written_size="-1")
    lines = findings(facts(pod_dir("big", size=10**12), live=("big",), kubelet=kubelet))
    assert lines == [("/var/lib/kubelet/config.yaml", "logs.requireRotation")]


def test_everything_is_only_reported_even_with_truncate_and_the_switches_hold():
    files = (LogFile("/var/log/pods/shop_web_u/app/0.log", 200 * MI, NOW),)
    f = facts(pod_dir("gone", size=300 * MI), files=files)
    truncate = LogRules(action="truncate", topN=3)
    actions = plan_pod_logs(f, truncate, NOW)
    assert [a.rule for a in actions] == ["logs.podLogDirs", "logs.podLogDirs",
                                         "logs.maxFileSize", "logs.topN"]
    assert {a.verb for a in actions} == {Verb.REPORT} and not any(a.bytes for a in actions)
    assert findings(f, LogRules(topN=0, podLogDirs=False)) == [(files[0].path,
                                                               "logs.maxFileSize")]
    assert plan_pod_logs(f, LogRules(enabled=False), NOW) == []


def test_an_invisible_pod_log_directory_is_said_once():
    assert findings(facts(visible=False)) == [("/var/log/pods", "logs.podLogDirs")]


def test_pod_directories_are_measured_inside_and_each_container_log_counted(tmp_path):
    pods = tmp_path / "var/log/pods"
    web = pods / "shop_web_u1"
    (web / "app").mkdir(parents=True)
    (web / "sidecar").mkdir()
    for name, size in (("app/0.log", 100), ("app/0.log.20260601-120000", 200),
                       ("app/0.log.20260601-110000.gz", 50), ("app/1.log", 10),
                       ("sidecar/0.log", 1)):
        (web / name).write_bytes(b"x" * size)
    outside = tmp_path / "big"
    outside.write_bytes(b"x" * 10_000)
    os.symlink(outside, web / "sidecar/link.log")  # a link is not the kubelet's: not counted
    (pods / "not-a-pod").mkdir()
    (pods / "a_b_c_d").mkdir()
    os.utime(web / "app/1.log", (1e9, 2e9))

    (found,) = pod_log_dirs(str(pods), "/var/log/pods")
    assert (found.path, found.namespace, found.pod, found.uid) == (
        "/var/log/pods/shop_web_u1", "shop", "web", "u1")
    assert (found.size, found.container_logs) == (361, 3)
    assert found.modified == datetime.fromtimestamp(2e9, UTC)


def test_the_sandboxes_are_listed_after_the_directories_were_walked(tmp_path):
    (tmp_path / "var/log/pods/shop_web_u1").mkdir(parents=True)
    seen: list[int] = []

    def live_uids() -> list[str]:
        seen.append(len(os.listdir(tmp_path / "var/log/pods")))
        (tmp_path / "var/log/pods/shop_late_u2").mkdir()  # a pod started during the walk
        return ["u1"]

    taken = take_pod_logs(HostPaths(str(tmp_path)), live_uids)
    assert [d.uid for d in taken.pod_dirs] == ["u1"] and taken.live_uids == {"u1"}
    assert seen == [1] and taken.logs_dir_visible
    assert "is not visible" in taken.kubelet.problem


def test_a_pod_log_path_that_cannot_be_listed_is_not_visible(tmp_path):
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/pods").write_text("not a directory")
    taken = take_pod_logs(HostPaths(str(tmp_path)), lambda: [])
    assert (taken.logs_dir_visible, taken.pod_dirs) == (False, ())
    assert pod_log_dirs(str(tmp_path / "var/log/pods"), "/var/log/pods") is None
