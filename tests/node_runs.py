"""Running the node agent in integration tests, in-process or as a daemon subprocess."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import docker
import pytest

from agents.cli import main
from agents.node.inventory import docker_time
from agents.node.state import NodeState, StateFile
from tests import report_lines

REPO = Path(__file__).resolve().parent.parent

POLICY = """\
apiVersion: kubekeeper/v1
dryRun: {dry_run}
maxDeletionsPerRun: {cap}
node:
  schedule: {{cleanup: {{every: {every}}}, logs: {{every: {every}}}, jitter: 0s}}
  parallelism: {parallelism}
  containers:
    olderThan: {older_than}
    keepPerPodContainer: 1
    protect: {{labels: {{tier: db}}, names: ["backup-*"]}}
  images:
    dangling: {{olderThan: {older_than}}}
    unused: {{olderThan: {older_than}}}
    diskPressure: {{enabled: false}}
    protect: ["team/*"]
  volumes:
    olderThan: {older_than}
    protect: {{names: ["keep-*"]}}
  logs: {logs}
"""


def policy_text(dry_run: bool = False, cap: int = 500, older_than: str = "0s",
                parallelism: int = 4, every: str = "1h", logs: str = "{}") -> str:
    return POLICY.format(dry_run=str(dry_run).lower(), cap=cap, older_than=older_than,
                         parallelism=parallelism, every=every, logs=logs)


def write_policy(directory: Path, text: str, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run_once(capsys: pytest.CaptureFixture[str], docker_host: str | None, policy: Path,
             *args: str, command: str = "run",
             state_dir: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
    """``kubekeeper node run --once`` (or ``plan``) in-process; the report's JSON lines.

    The node's first-seen record lives beside the policy unless ``state_dir`` says where.
    Without ``docker_host`` the runtime is what ``args`` say (``--runtime ...``).
    """
    capsys.readouterr()
    docker = ["--docker-host", docker_host] if docker_host else []
    argv = ["node", command, "--policy", str(policy), *docker,
            "--log-format", "json", "--node-name", "test-node",
            "--state-dir", str(state_dir or policy.parent / "state"), *args]
    if command == "run":
        argv.append("--once")
    code = main(argv)
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def actions(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcome lines, each with what its intent line carried."""
    return report_lines.outcomes(lines)


summaries = report_lines.summaries


def changes(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The outcome lines of actions that change something (not findings of verb report)."""
    return [line for line in actions(lines) if line["action"] != "report"]


def watched_since_built(state_dir: Path, client: docker.DockerClient,
                        ago: timedelta | None = None) -> Path:
    """Write the node record of an agent that has watched the engine since before any of
    its objects existed: each first seen when it was created (images: built), or, with
    ``ago``, everything first seen that long ago."""
    now = datetime.now(UTC)
    api = client.api

    def seen(created: datetime | None) -> datetime:
        return now - ago if ago is not None else created or now
    images = {i["Id"]: seen(datetime.fromtimestamp(i["Created"], UTC))
              for i in api.images(all=True)}
    containers = {c["Id"]: seen(datetime.fromtimestamp(c["Created"], UTC))
                  for c in api.containers(all=True)}
    volumes = {v["Name"]: seen(docker_time(v["CreatedAt"]))
               for v in api.volumes().get("Volumes") or []}
    record = NodeState(since=now - timedelta(days=365), images=MappingProxyType(images),
                       containers=MappingProxyType(containers),
                       volumes=MappingProxyType(volumes))
    StateFile(str(state_dir)).save(record)
    return state_dir


def state(client: docker.DockerClient) -> dict[str, set[str]]:
    """Every container id, image id and volume name the engine has."""
    return {
        "container": {c["Id"] for c in client.api.containers(all=True)},
        "image": {i["Id"] for i in client.api.images(all=True)},
        "volume": {v["Name"] for v in client.api.volumes().get("Volumes") or []},
    }


def removed(before: dict[str, set[str]], after: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(kind, ident) for kind, idents in before.items() for ident in idents - after[kind]}


class AgentProcess:
    """``python -m agents node run`` as a subprocess, its stdout lines parsed as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 state_dir: Path | None = None):
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="kk-state-"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents", "node", "run", "--log-format", "json",
             "--state-dir", str(self.state_dir), *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.lines.put(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def next_line(self, timeout: float = 60) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no report line within {timeout}s; stderr:\n"
                                 + "".join(self.stderr[-30:])) from None

    def next_outcome(self, timeout: float = 60) -> dict[str, Any]:
        """The next ``action`` or ``run.summary`` line; intent lines are passed over."""
        while True:
            line = self.next_line(timeout)
            if line["event"] != "action.intent":
                return line

    def lines_until(self, predicate, timeout: float = 60) -> Iterator[dict[str, Any]]:
        """Yield lines up to and including the first that satisfies ``predicate``."""
        while True:
            line = self.next_line(timeout)
            yield line
            if predicate(line):
                return

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code once every line it wrote has been read."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code

    def drain(self) -> list[dict[str, Any]]:
        """Lines written and not yet taken with ``next_line``."""
        out = []
        while not self.lines.empty():
            out.append(self.lines.get_nowait())
        return out
