"""The node benchmark's measurements, each on a runtime the caller has just restored.

The agent's side is the same for every runtime: ``target`` is the command
line that points the agent at it (``--docker-host URL`` or ``--runtime
cri:SOCKET``), and what is left afterwards is read by the caller's ``remaining``.

- ``agent_run``: ``kubekeeper node run --once --no-dry-run --job cleanup`` as a
  child process, timed from spawn to exit (interpreter start and imports
  included), its report kept; ``compile_agent`` first writes the package's
  bytecode, as installing it into the image does.
- ``baseline``: ``docker container prune``, ``image prune -a``, ``volume prune``
  through the API, timed around the three calls (the CRI's is in ``cri_prune``).
- ``plan_cli`` and ``plan_in_process``: the dry-run plan, as the whole CLI and
  as inventory + plan inside this process.
- ``daemon_rss``: the daemon as a child process, its RSS sampled every 50 ms
  through its first runs and while it idles afterwards;
- ``CpuMeter``: the CPU seconds the runtime and the client side spend meanwhile.
"""

from __future__ import annotations

import compileall
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import psutil

from agents.node import sessions
from agents.node.host_paths import HostPaths
from agents.node.planner import details_needed, plan_cleanup
from agents.node.runtimes import Runtime
from agents.policy_loader import load_policy

REPO = Path(__file__).resolve().parent.parent
_A = TypeVar("_A")
_B = TypeVar("_B")
SAMPLE_EVERY_S = 0.05
IDLE_WINDOW_S = 5.0

POLICY = """\
apiVersion: kubekeeper/v1
dryRun: false
maxDeletionsPerRun: 1000000
node:
  schedule: {{cleanup: {{every: 1h}}, logs: {{every: 1h}}, jitter: 0s}}
  {key}: {parallelism}
  containers: {{olderThan: 0s}}
  images:
    dangling: {{olderThan: 0s}}
    unused: {{olderThan: 0s}}
    diskPressure: {{enabled: false}}
  volumes: {{olderThan: 0s, includeNamed: true}}
"""


@dataclass(frozen=True)
class AgentRun:
    wall_s: float
    exit_code: int
    summary: dict[str, Any]
    results: Counter[str]
    """``kind result`` → lines, from the report."""
    remaining: dict[str, set[str]]
    containers_done_s: float
    """From the run's start (summary time minus its duration) to the last container line."""


@dataclass(frozen=True)
class Baseline:
    wall_s: float
    steps: dict[str, float]
    remaining: dict[str, set[str]]
    removed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    inventory_s: float
    plan_s: float
    actions: int


@dataclass(frozen=True)
class Cpu:
    engine_s: float
    """The runtime's daemon and its children (dockerd and its containerd, or containerd and
    its shims)."""
    client_s: float
    """This process and the children it waited for (the agent's CLI)."""


class CpuMeter:
    """CPU seconds spent inside the ``with`` block by the engine and by the client side.

    Wall time on a shared 2-core machine swings with the other load; CPU
    seconds show what each side costs regardless.
    """

    def __init__(self, runtime_pid: int):
        self._runtime = psutil.Process(runtime_pid)
        self.used = Cpu(0.0, 0.0)

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._read()
        self.used = Cpu(end.engine_s - self._start.engine_s, end.client_s - self._start.client_s)

    def _read(self) -> Cpu:
        engine = 0.0
        for proc in [self._runtime, *self._runtime.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                engine += times.user + times.system
        client = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            client += usage.ru_utime + usage.ru_stime
        return Cpu(engine, client)


@dataclass(frozen=True)
class Memory:
    idle_mib: float
    peak_mib: float
    samples: int


def in_turn(n: int, agent_side: Callable[[], _A], baseline_side: Callable[[], _B]
            ) -> tuple[_A, _B]:
    """Both sides of trial ``n``; odd trials measure the baseline first, so that neither
    side always meets the caches (and the machine's other load) the other left."""
    if n % 2:
        base = baseline_side()
        return agent_side(), base
    agent = agent_side()
    return agent, baseline_side()


def write_policy(work: Path, parallelism: int, name: str = "policy",
                 key: str = "parallelism") -> Path:
    """The benchmark's policy; ``key`` is ``criParallelism`` for a CRI runtime's removals."""
    path = work / f"{name}.yaml"
    path.write_text(POLICY.format(parallelism=parallelism, key=key))
    return path


def state(client: docker.DockerClient) -> dict[str, set[str]]:
    """Every container id, image id, image tag and volume name the engine has."""
    images = client.api.images(all=True)
    return {
        "container": {c["Id"] for c in client.api.containers(all=True)},
        "image": {i["Id"] for i in images},
        "tag": {t for i in images for t in i.get("RepoTags") or [] if "<none>" not in t},
        "volume": {v["Name"] for v in client.api.volumes().get("Volumes") or []},
    }


def compile_agent() -> None:
    """The agent's bytecode, written once before anything is timed.

    The image's ``pip install`` compiles the package; a checkout run with
    ``PYTHONDONTWRITEBYTECODE`` (as the image's environment, and often a shell's, sets)
    would otherwise compile every module at every spawn: 50 ms of each run measured.
    """
    if not compileall.compile_dir(str(REPO / "agents"), quiet=1):
        raise RuntimeError(f"{REPO / 'agents'} does not compile")


def docker_target(docker_host: str) -> list[str]:
    return ["--docker-host", docker_host]


def cri_target(socket: Path) -> list[str]:
    return ["--runtime", f"cri:{socket}"]


def _agent_argv(command: str, policy: Path, target: list[str], work: Path,
                label: str) -> list[str]:
    """Each run its own (empty) first-seen record, as on a node the agent meets first."""
    return [sys.executable, "-m", "agents", "node", command, "--policy", str(policy), *target,
            "--log-format", "json", "--node-name", "bench",
            "--state-dir", str(work / f"{label}.state")]


def agent_run(remaining: Callable[[], dict[str, set[str]]], target: list[str], policy: Path,
              work: Path, label: str) -> AgentRun:
    argv = [*_agent_argv("run", policy, target, work, label), "--job", "cleanup", "--once",
            "--no-dry-run"]
    out = work / f"{label}.report.jsonl"
    wall, code = _timed_child(argv, out, work / f"{label}.stderr")
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    summary = next((x for x in lines if x["event"] == "run.summary"), {})
    results = Counter(f"{x['kind']} {x['result']}" for x in lines if x["event"] == "action")
    return AgentRun(wall, code, summary, results, remaining(), _containers_done(lines))


def _containers_done(lines: list[dict[str, Any]]) -> float:
    """Seconds from the run's start until its last container line (0 without either)."""
    ends = [x["ts"] for x in lines if x.get("kind") == "container"]
    summary = next((x for x in lines if x["event"] == "run.summary"), None)
    if not ends or summary is None:
        return 0.0
    start = _when(summary["ts"]) - float(summary["duration_s"])
    return _when(max(ends)) - start


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def plan_cli(target: list[str], policy: Path, work: Path, label: str) -> float:
    """Wall time of ``kubekeeper node plan --job cleanup`` (JSON lines to a file)."""
    argv = [*_agent_argv("plan", policy, target, work, f"{label}.plan"), "--job", "cleanup"]
    wall, code = _timed_child(argv, work / f"{label}.plan.jsonl", work / f"{label}.plan.stderr")
    if code != 0:
        print(f"warning: node plan exited {code}", file=sys.stderr)
    return wall


def plan_in_process(runtime: Runtime, policy_path: Path) -> Plan:
    """Inventory (both steps) and the pure plan, timed apart, as ``node run`` does them.

    Connecting is not timed: on the CRI it includes the ``Version`` call, on Docker nothing.
    """
    policy = load_policy(str(policy_path)).node
    session = sessions.connect(runtime, policy.parallelism, timeout=30)
    rules = session.rules(policy)
    try:
        started = time.perf_counter()
        now = datetime.now(UTC)
        snap = session.take(HostPaths("/"))
        containers, images = details_needed(snap, rules, now)
        snap = session.with_details(snap, containers, images)
        listed = time.perf_counter()
        actions = plan_cleanup(snap, rules, now)
        planned = time.perf_counter()
    finally:
        session.close()
    return Plan(listed - started, planned - listed, len(actions))


def baseline(client: docker.DockerClient) -> Baseline:
    """``docker container prune -f && docker image prune -af && docker volume prune -f``."""
    calls = {
        "container prune": client.containers.prune,
        "image prune -a": lambda: client.images.prune(filters={"dangling": False}),
        "volume prune": client.volumes.prune,
    }
    steps: dict[str, float] = {}
    removed: dict[str, int] = {}
    for name, call in calls.items():
        started = time.perf_counter()
        answer = call()
        steps[name] = time.perf_counter() - started
        listed = (answer.get("ContainersDeleted") or answer.get("ImagesDeleted")
                  or answer.get("VolumesDeleted") or [])
        removed[name] = len(listed)
    return Baseline(sum(steps.values()), steps, state(client), removed)


def daemon_rss(target: list[str], policy: Path, work: Path, runs: int = 2) -> Memory:
    """Peak RSS until ``runs`` summaries are written, then the highest RSS while idle.

    The daemon runs every job once at start, so "idle" is measured after those
    runs: the state a DaemonSet pod spends its time in.
    """
    out = work / "daemon.report.jsonl"
    argv = [*_agent_argv("run", policy, target, work, "daemon")]
    with open(out, "w") as stdout, open(work / "daemon.stderr", "w") as stderr:
        child = subprocess.Popen(argv, cwd=REPO, stdout=stdout, stderr=stderr)
    try:
        proc = psutil.Process(child.pid)
        busy = _sample_until(proc, lambda: _summaries(out) >= runs or child.poll() is not None)
        idle_until = time.monotonic() + IDLE_WINDOW_S
        idle = _sample_until(proc, lambda: time.monotonic() >= idle_until)
    finally:
        child.terminate()
        child.wait(60)
    return Memory(max(idle) / 2**20, max(busy + idle) / 2**20, len(busy) + len(idle))


def _sample_until(proc: psutil.Process, done: Callable[[], bool]) -> list[int]:
    """RSS samples until ``done()`` (checked after each); stops early if the process exits."""
    samples: list[int] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        while True:
            samples.append(proc.memory_info().rss)
            if done():
                break
            time.sleep(SAMPLE_EVERY_S)
    return samples or [0]


def _summaries(report: Path) -> int:
    return report.read_text().count('"event": "run.summary"')


def _timed_child(argv: list[str], stdout_path: Path, stderr_path: Path) -> tuple[float, int]:
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        started = time.perf_counter()
        code = subprocess.run(argv, cwd=REPO, stdout=stdout, stderr=stderr).returncode
        return time.perf_counter() - started, code
