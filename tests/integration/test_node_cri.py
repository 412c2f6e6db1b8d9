"""``kubekeeper node run|plan`` on a real containerd, through the CRI, as on a kubelet node."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.node.cri_port import GrpcCriPort
from scripts.localenv import cri_images, testimages
from scripts.localenv.containerd import SANDBOX_IMAGE
from tests.node_runs import actions, changes, policy_text, run_once, summaries, write_policy

APP = cri_images.image(["kubekeeper.test/app:1"], "app 1")
DONE = cri_images.image(["kubekeeper.test/migrate:1"], "migrate 1")
OLD = cri_images.image(["kubekeeper.test/old:1", "kubekeeper.test/old:latest"], "old 1")
STALE = cri_images.image(["kubekeeper.test/stale:1"], "stale 1")
KEPT = cri_images.image(["docker.io/team/tool:1"], "team tool")  # the policy protects team/*


@pytest.fixture
def node(containerd_service, cri_client):
    """A kubelet-like node: a pod running APP, with an exited DONE container beside it;
    OLD and STALE used by nothing; KEPT protected by the policy; the pinned sandbox image."""
    cri_images.import_images(containerd_service, [APP, DONE, OLD, STALE, KEPT])
    pod = cri_client.run_pod("web", namespace="shop")
    cri_client.running_container(pod, "server", APP.tags[0])
    cri_client.exited_container(pod, "migrate", DONE.tags[0])
    return containerd_service


def cri_run(capsys, service, policy: Path, *args: str, command: str = "run",
            job: str = "cleanup"):
    return run_once(capsys, None, policy, "--runtime", f"cri:{service.endpoint}", "--job", job,
                    *args, command=command)


def listed(service) -> dict[str, set[str]]:
    """Image ids, container ids and sandbox ids the CRI lists."""
    port = GrpcCriPort(service.endpoint, timeout=10)
    try:
        return {"image": {i.id for i in port.images()},
                "container": {c.id for c in port.containers()},
                "sandbox": {s.id for s in port.sandboxes()}}
    finally:
        port.close()


def sandbox_image_id(service) -> str:
    port = GrpcCriPort(service.endpoint, timeout=10)
    try:
        return next(i.id for i in port.images() if SANDBOX_IMAGE in i.tags)
    finally:
        port.close()


def test_a_run_removes_unused_images_and_keeps_pinned_used_and_protected_ones(
        capsys, tmp_path, node):
    before = listed(node)
    code, lines = cri_run(capsys, node, write_policy(tmp_path, policy_text()))

    assert code == 0, lines
    after = listed(node)
    assert before["image"] - after["image"] == {OLD.image_id, STALE.image_id}
    assert {APP.image_id, DONE.image_id, KEPT.image_id, sandbox_image_id(node)} <= after["image"]
    assert (after["container"], after["sandbox"]) == (before["container"], before["sandbox"])
    done = {line["id"]: line for line in changes(lines)}
    assert set(done) == {OLD.image_id, STALE.image_id}
    assert {line["result"] for line in done.values()} == {"done"}
    assert done[OLD.image_id]["removed"] == list(OLD.tags)
    assert all(line["runtime"] == "cri" for line in actions(lines))
    (summary,) = summaries(lines)
    assert summary["runtimes"] == ["cri"] and summary["error"] is None


def test_containers_and_volumes_are_said_to_be_out_of_scope_once_per_run(capsys, tmp_path,
                                                                        node):
    code, lines = cri_run(capsys, node, write_policy(tmp_path, policy_text()))

    assert code == 0
    notes = [line for line in actions(lines) if line["kind"] == "runtime"]
    assert [line["reason"].split(":")[0] for line in notes] == ["containers", "volumes"]
    assert "kubelet" in notes[0]["reason"] and "no volumes" in notes[1]["reason"]
    assert not [line for line in actions(lines) if line["kind"] in ("container", "volume")]


KUBELET_CONFIG = ("kind: KubeletConfiguration\ncontainerLogMaxSize: {size}\n"
                  "containerLogMaxFiles: 2\n")
LONG_AGO = 1_700_000_000  # 2023: long past the audit's grace for a quiet directory


def pod_log_dir(root: Path, namespace: str, pod: str, uid: str, sizes: dict[str, int]) -> Path:
    """A kubelet-shaped ``/var/log/pods/<namespace>_<pod>_<uid>`` with these files."""
    directory = root / "var/log/pods" / f"{namespace}_{pod}_{uid}"
    for name, size in sizes.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(b"x" * size)
    return directory


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def log_host(node, cri_client) -> Iterator[tuple[Path, dict[str, str]]]:
    """A host root whose kubelet rotates at 1Ki x 2 files, with the pod log directories of
    the pod the CRI runs (within its bound), of a second live pod over its bound (2Ki per
    container log), and of a pod no sandbox has any more; every file quiet since 2023."""
    root = Path(tempfile.mkdtemp(prefix="kk-logs-", dir="/tmp"))
    (root / "var/lib/kubelet").mkdir(parents=True)
    (root / "var/lib/kubelet/config.yaml").write_text(KUBELET_CONFIG.format(size="1Ki"))
    port = GrpcCriPort(node.endpoint, timeout=10)
    try:
        (web,) = port.sandboxes()
    finally:
        port.close()
    chatty = cri_client.run_pod("chatty", namespace="shop")
    gone = str(uuid.uuid4())
    pod_log_dir(root, "shop", "web", web.uid, {"server/0.log": 1000, "migrate/0.log": 100})
    pod_log_dir(root, "shop", "chatty", chatty.uid, {"app/0.log": 1500, "app/0.log.1": 1000})
    pod_log_dir(root, "shop", "left", gone, {"app/0.log": 10})
    # All quiet since long ago: only the sandboxes the CRI lists tell the live pods apart.
    for path in sorted((root / "var/log/pods").rglob("*"), reverse=True):
        os.utime(path, (LONG_AGO, LONG_AGO))
    yield root, {"web": web.uid, "chatty": chatty.uid, "gone": gone}
    shutil.rmtree(root)


def test_the_log_audit_reports_gone_pods_and_pod_logs_over_the_kubelets_bound(
        capsys, tmp_path, node, log_host):
    root, uids = log_host
    before, sandboxes = tree(root), listed(node)["sandbox"]
    policy = write_policy(tmp_path, policy_text(logs="{action: truncate, topN: 0}"))
    code, lines = cri_run(capsys, node, policy, "--host-root", str(root), job="logs")

    assert code == 0, lines
    found = {(line["id"], line["reason"].split(" ")[1]) for line in actions(lines)}
    assert found == {(uids["gone"], "no"), (uids["chatty"], "pod"), ("", "untouched")}, lines
    by_id = {line["id"]: line for line in actions(lines)}
    assert "pod shop/left is gone from this node" in by_id[uids["gone"]]["reason"]
    assert "2.4Ki > 2.0Ki (1 container log(s) x containerLogMaxFiles 2" in \
        by_id[uids["chatty"]]["reason"]
    stale = {line["name"] for line in actions(lines)
             if line["reason"].startswith("logs.staleAfter")}  # the file checks run here too
    assert stale == {f"/{path}" for path in before if path.startswith("var/log/pods/")}
    assert {(line["kind"], line["action"], line["result"]) for line in actions(lines)} == {
        ("log", "report", "done")}
    assert all(line["runtime"] == "cri" for line in actions(lines))
    assert tree(root) == before and listed(node)["sandbox"] == sandboxes
    (summary,) = summaries(lines)
    assert summary["runtimes"] == ["cri"] and summary["error"] is None


def test_a_kubelet_config_that_turns_rotation_off_is_reported_from_the_path_named(
        capsys, tmp_path, node, log_host):
    root, _ = log_host
    (root / "etc").mkdir()
    (root / "etc/kubelet.yaml").write_text(KUBELET_CONFIG.format(size="-1"))
    policy = write_policy(tmp_path, policy_text(logs="{topN: 0}"))
    code, lines = cri_run(capsys, node, policy, "--host-root", str(root),
                          "--kubelet-config", "/etc/kubelet.yaml", job="logs")

    assert code == 0, lines
    rotation = [line for line in actions(lines) if line["name"] == "/etc/kubelet.yaml"]
    assert [line["reason"].split(":")[0] for line in rotation] == ["logs.requireRotation"]
    assert "turns the kubelet's log rotation off" in rotation[0]["reason"]
    assert all(line["runtime"] == "cri" for line in actions(lines))


def test_a_missing_kubelet_config_is_said_once_and_the_defaults_assumed(
        capsys, tmp_path, node, log_host):
    root, uids = log_host
    (root / "var/lib/kubelet/config.yaml").unlink()
    code, lines = cri_run(capsys, node, write_policy(tmp_path, policy_text(logs="{topN: 0}")),
                          "--host-root", str(root), job="logs")

    assert code == 0, lines
    (said,) = [line for line in actions(lines) if line["reason"].startswith("--kubelet-config")]
    assert "does not exist" in said["reason"] and "defaults are assumed" in said["reason"]
    pods = {line["id"] for line in actions(lines) if line["reason"].startswith("logs.podLogDirs")}
    assert pods == {uids["gone"]}  # chatty's 2.4Ki is within the default 5 x 10Mi
    assert all(line["runtime"] == "cri" for line in actions(lines))


def test_dry_run_changes_nothing_and_plans_exactly_what_the_real_run_then_does(
        capsys, tmp_path, node):
    policy = write_policy(tmp_path, policy_text())
    before = listed(node)
    code, planned = cri_run(capsys, node, policy, command="plan")
    assert code == 0 and listed(node) == before
    code, dry = cri_run(capsys, node, write_policy(tmp_path, policy_text(dry_run=True), "dry.yaml"))
    assert code == 0 and listed(node) == before

    code, real = cri_run(capsys, node, policy)
    as_planned = {(line["kind"], line["id"]) for line in changes(planned)
                  if line["result"] == "planned"}
    assert as_planned == {(line["kind"], line["id"]) for line in changes(dry)
                          if line["result"] == "planned"}
    assert as_planned == {(line["kind"], line["id"]) for line in changes(real)
                          if line["result"] == "done"}
    assert as_planned == {("image", OLD.image_id), ("image", STALE.image_id)}


def test_a_plan_over_the_cap_removes_nothing(capsys, tmp_path, node):
    before = listed(node)
    code, lines = cri_run(capsys, node, write_policy(tmp_path, policy_text(cap=1)))

    assert code == 1
    assert listed(node) == before
    (summary,) = summaries(lines)
    assert "maxDeletionsPerRun=1" in summary["aborted"]
    assert {line["result"] for line in changes(lines)} == {"skipped"}


def test_ages_count_from_the_first_seen_record_of_the_runtime(capsys, tmp_path, node):
    """Built long ago is not old: the first run sees every image for the first time."""
    policy = write_policy(tmp_path, policy_text(older_than="1h"))
    before = listed(node)
    code, lines = cri_run(capsys, node, policy)

    assert code == 0 and listed(node) == before
    assert (tmp_path / "state" / "cri.json").exists()
    said = [line["reason"] for line in actions(lines) if line["kind"] == "state"]
    assert len(said) == 1 and "no record" in said[0]


@pytest.fixture
def host_root(node) -> Iterator[Path]:
    """A host root whose /run/containerd/containerd.sock is the private containerd's socket
    (a hard link: the same socket inode, reachable by another path)."""
    root = Path(tempfile.mkdtemp(prefix="kk-hr-", dir="/tmp"))
    (root / "run/containerd").mkdir(parents=True)
    os.link(node.socket, root / "run/containerd/containerd.sock")
    yield root
    shutil.rmtree(root)


def test_auto_finds_containerd_under_the_host_root_and_cleans_it(capsys, tmp_path, node,
                                                                 host_root):
    code, lines = run_once(capsys, None, write_policy(tmp_path, policy_text()),
                           "--runtime", "auto", "--host-root", str(host_root), "--job", "cleanup")

    assert code == 0, lines
    assert {line["id"] for line in changes(lines)} == {OLD.image_id, STALE.image_id}
    assert {line["runtime"] for line in actions(lines)} == {"containerd"}
    assert summaries(lines)[0]["runtimes"] == ["containerd"]
    assert (tmp_path / "state" / "containerd.json").exists()


def test_the_policy_can_turn_the_runtime_off(capsys, tmp_path, node, host_root):
    text = policy_text().replace("node:\n", "node:\n  runtimes: [docker]\n")
    before = listed(node)
    code, lines = run_once(capsys, None, write_policy(tmp_path, text), "--runtime", "auto",
                           "--host-root", str(host_root), "--job", "cleanup")

    assert code == 0 and listed(node) == before
    (line,) = actions(lines)
    assert (line["kind"], line["runtime"]) == ("runtime", "containerd")
    assert "turned off by node.runtimes" in line["reason"]


def test_disk_pressure_is_measured_on_the_image_filesystem(capsys, tmp_path, node):
    text = policy_text().replace("diskPressure: {enabled: false}",
                                 "diskPressure: {highPercent: 100, lowPercent: 99}")
    code, lines = cri_run(capsys, node, write_policy(tmp_path, text), command="plan")

    assert code == 0
    (disk,) = [line for line in actions(lines) if line["kind"] == "disk"]
    assert disk["name"].startswith(str(node.root)) and disk.get("visible") is not False
    fs = os.statvfs(disk["name"])
    assert disk["capacity"] == fs.f_blocks * fs.f_frsize
    assert "no eviction" in disk["reason"]


def test_a_node_with_docker_and_containerd_is_cleaned_on_both_under_one_cap(
        capsys, tmp_path, node, host_root, docker_client, clean_docker):
    """A CI node: Docker beside the kubelet's containerd, each with unused images (Docker:
    an image and its base)."""
    docker_old = testimages.layered_image(docker_client, "kubekeeper.test/docker-old:1", "d")
    policy = write_policy(tmp_path, policy_text())
    docker_ids = {i["Id"] for i in docker_client.api.images(all=True)}
    runtime = ("--runtime", "auto", "--host-root", str(host_root), "--job", "cleanup")

    code, capped = run_once(capsys, clean_docker.base_url,
                            write_policy(tmp_path, policy_text(cap=2), "capped.yaml"), *runtime)
    assert code == 1 and "maxDeletionsPerRun=2" in summaries(capped)[0]["aborted"]
    assert {i["Id"] for i in docker_client.api.images(all=True)} == docker_ids
    assert {OLD.image_id, STALE.image_id} <= listed(node)["image"]

    code, lines = run_once(capsys, clean_docker.base_url, policy, *runtime)
    assert code == 0, lines
    done = {(line["runtime"], line["id"]) for line in changes(lines)}
    assert docker_old.id in docker_ids and len(docker_ids) == 2
    assert done == {("containerd", OLD.image_id), ("containerd", STALE.image_id),
                    *(("docker", i) for i in docker_ids)}
    assert {line["runtime"] for line in actions(lines)} == {"containerd", "docker"}
    (summary,) = summaries(lines)
    assert summary["runtimes"] == ["containerd", "docker"] and summary["errors"] == 0
    assert not {OLD.image_id, STALE.image_id} & listed(node)["image"]
    assert docker_client.api.images(all=True) == []
    assert {p.name for p in (tmp_path / "state").iterdir()} == {"containerd.json", "docker.json"}


def test_on_a_node_with_docker_too_the_pod_logs_are_audited_once_by_the_cri_runtime(
        capsys, tmp_path, node, host_root, clean_docker):
    gone = str(uuid.uuid4())
    log = pod_log_dir(host_root, "shop", "left", gone, {"app/0.log": 10}) / "app/0.log"
    os.utime(log, (LONG_AGO, LONG_AGO))
    code, lines = run_once(capsys, clean_docker.base_url,
                           write_policy(tmp_path, policy_text(logs="{topN: 5}")),
                           "--runtime", "auto", "--host-root", str(host_root), "--job", "logs")

    assert code == 0, lines
    host_path = f"/var/log/pods/shop_left_{gone}/app/0.log"
    about = [(line["runtime"], line["reason"].split(":")[0]) for line in actions(lines)
             if line["name"] == host_path]
    assert sorted(about) == [("containerd", "logs.staleAfter"), ("containerd", "logs.topN")]
    assert {line["runtime"] for line in actions(lines)} <= {"containerd", "docker"}
    assert summaries(lines)[0]["runtimes"] == ["containerd", "docker"]
