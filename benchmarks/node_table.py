"""The node benchmark's printout: Markdown, each number as median (min-max) beside its target.

A missed target prints MISSED; nothing here fails the benchmark.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from benchmarks import machine
from benchmarks.node_measure import AgentRun, Baseline, Cpu, Memory, Plan
from benchmarks.node_seed import Scale, Step

MAX_RATIO = 1.0
MAX_PLAN_S = 1.0
MAX_IDLE_MIB = 60.0


@dataclass(frozen=True)
class Setup:
    """What the runtime's benchmark tells the table: the rest of the table is shared."""

    title: str
    header: list[str]
    """The lines after date and machine: runtime, scale, policy, baseline."""
    baseline: str
    """The baseline's row: what it runs."""
    engine: str
    """Whose CPU the runtime side counts (``dockerd + containerd``)."""
    kinds: tuple[str, ...]
    """What is compared after each side (keys of ``remaining``, besides ``tag``)."""
    steps: list[Step]
    """Seeding, not measured."""


@dataclass(frozen=True)
class Trial:
    plan: Plan
    plan_wall_s: float
    agent: AgentRun
    baseline: Baseline
    memory: Memory
    agent_cpu: Cpu
    baseline_cpu: Cpu
    wide: tuple[int, AgentRun] | None = None
    """The agent's run again at another ``node.parallelism``, where the benchmark asks."""

    @property
    def ratio(self) -> float:
        return self.agent.wall_s / self.baseline.wall_s

    @property
    def plan_s(self) -> float:
        return self.plan.inventory_s + self.plan.plan_s

    @property
    def agent_in_process_s(self) -> float:
        return float(self.agent.summary.get("duration_s") or 0.0)


def progress_line(label: str, trial: Trial) -> str:
    """One trial in a line on stderr, while the benchmark runs."""
    return (f"{label}: agent {trial.agent.wall_s:.2f}s, baseline {trial.baseline.wall_s:.2f}s, "
            f"plan {trial.plan_s:.2f}s in-process / {trial.plan_wall_s:.2f}s CLI, RSS idle "
            f"{trial.memory.idle_mib:.1f} MiB, peak {trial.memory.peak_mib:.1f} MiB")


def render(setup: Setup, trials: Sequence[Trial], started: datetime) -> str:
    return "\n\n".join([
        f"## {setup.title} (`benchmarks/node_prune.py`)",
        _header(setup, trials, started),
        _table(("metric", "measured median (min-max)", "target", "result"),
               _rows(setup, trials)),
        "### Where the time goes (medians)",
        _where(setup, trials),
        "### Same set removed? (what is left after each, compared)",
        "\n".join(_same_set(setup.kinds, n, t) for n, t in enumerate(trials, 1)),
        "### Agent report lines (kind result), last trial",
        ", ".join(f"{k} {n:,}" for k, n in sorted(trials[-1].agent.results.items())),
        "### Seeding (not measured)",
        _table(("step", "seconds"), [(s.name, f"{s.seconds:.1f}") for s in setup.steps]),
    ])


def _header(setup: Setup, trials: Sequence[Trial], started: datetime) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join([
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; {len(trials)} trials, each measurement on "
        "the same seeded state",
        f"- Machine: {machine.describe()}; load average at the end {load} (shared with other work)",
        *setup.header,
    ])


def docker_header(scale: Scale, parallelism: int, version: dict[str, Any],
                  counts: dict[str, int], seeded: dict[str, int]) -> list[str]:
    """The Docker benchmark's lines: engine, the seeded scale, the policy."""
    return [
        f"- Docker: {version.get('Version')} (API {version.get('ApiVersion')}), a private "
        "dockerd, overlay2, on the same machine",
        f"- Scale (requested {scale.images} images / {scale.containers} exited containers / "
        f"{scale.volumes} dangling volumes): {seeded['image']:,} images (all, intermediate "
        f"included; {counts['dangling images']} dangling), {seeded['tag']:,} tags, "
        f"{counts['exited containers']:,} exited containers (every 10th with an anonymous "
        f"volume), {counts['dangling volumes']:,} dangling volumes (the standalone ones, half "
        f"named, plus the anonymous ones in use by exited containers: {seeded['volume']:,} in "
        f"all), and {counts['running containers']} running containers that must stay",
        f"- Agent policy: dryRun false, parallelism {parallelism}, every olderThan 0s, "
        "images.unused and images.dangling on, diskPressure off, volumes.includeNamed true "
        "(Docker 20.10, API 1.41, `volume prune` removes named volumes too), job cleanup",
    ]


def _rows(setup: Setup, trials: Sequence[Trial]) -> list[tuple[str, str, str, str]]:
    def row(metric: str, value: Callable[[Trial], float], unit: str, limit: float | None,
            fmt: str = ".2f") -> tuple[str, str, str, str]:
        values = [value(t) for t in trials]
        mid = statistics.median(values)
        shown = f"{mid:{fmt}}{unit and ' ' + unit} ({min(values):{fmt}}-{max(values):{fmt}})"
        if limit is None:
            return metric, shown, "-", "-"
        return metric, shown, f"≤ {limit:g} {unit}".rstrip(), "pass" if mid <= limit else "MISSED"

    return [
        row("(a) agent full run: `node run --once`, spawn to exit", lambda t: t.agent.wall_s,
            "s", None),
        row(f"(a) baseline: {setup.baseline}", lambda t: t.baseline.wall_s, "s", None),
        row("(a) **ratio agent / baseline** (full run wall time)", lambda t: t.ratio, "",
            MAX_RATIO),
        row("(a) ratio, agent's own run.summary duration / baseline",
            lambda t: t.agent_in_process_s / t.baseline.wall_s, "", None),
        *_wide_rows(trials, row),
        row("(b) **dry-run plan, in-process** (inventory + plan)", lambda t: t.plan_s, "s",
            MAX_PLAN_S),
        row("(b) dry-run plan, whole `node plan` command (spawn to exit)",
            lambda t: t.plan_wall_s, "s", MAX_PLAN_S),
        row("(c) **daemon RSS, idle** (after its first runs)", lambda t: t.memory.idle_mib,
            "MiB", MAX_IDLE_MIB, ".1f"),
        row("(c) daemon RSS, peak during its runs (cleanup + log audit)",
            lambda t: t.memory.peak_mib, "MiB", None, ".1f"),
    ]


def _wide_rows(trials: Sequence[Trial], row: Callable[..., tuple[str, str, str, str]]
               ) -> list[tuple[str, str, str, str]]:
    """The agent at the most CRI removals in flight, when every trial measured it."""
    wide = [t.wide for t in trials]
    if not all(wide):
        return []
    parallelism = wide[0][0] if wide[0] else 0
    return [
        row(f"(a) agent full run at node.criParallelism {parallelism}",
            lambda t: t.wide[1].wall_s, "s", None),
        row(f"(a) ratio agent at parallelism {parallelism} / baseline",
            lambda t: t.wide[1].wall_s / t.baseline.wall_s, "", None),
    ]


def _where(setup: Setup, trials: Sequence[Trial]) -> str:
    def med(value: Callable[[Trial], float]) -> float:
        return statistics.median(value(t) for t in trials)

    startup = med(lambda t: t.agent.wall_s - t.agent_in_process_s)
    inventory, plan = med(lambda t: t.plan.inventory_s), med(lambda t: t.plan.plan_s)
    steps = trials[0].baseline.steps
    base = ", ".join(f"{name} {med(lambda t, n=name: t.baseline.steps[n]):.2f}s"
                     for name in steps)
    return "\n".join([
        f"- agent: interpreter start, imports and connect {startup:.2f}s; inventory "
        f"{inventory:.2f}s; plan {plan:.3f}s; {_removals(trials, med)} (from the report's "
        f"timestamps; inventory and plan timed in-process); "
        f"{med(lambda t: t.plan.actions):,.0f} actions",
        f"- baseline: {base}",
        f"- CPU seconds while removing ({setup.engine} / client side): agent "
        f"{med(lambda t: t.agent_cpu.engine_s):.1f} / {med(lambda t: t.agent_cpu.client_s):.1f}"
        f", baseline {med(lambda t: t.baseline_cpu.engine_s):.1f} / "
        f"{med(lambda t: t.baseline_cpu.client_s):.1f}",
    ])


def _removals(trials: Sequence[Trial], med: Callable[[Callable[[Trial], float]], float]) -> str:
    """Containers apart from the rest where the agent removed any (it does on Docker only)."""
    rest = med(lambda t: t.agent_in_process_s - max(t.agent.containers_done_s, t.plan_s))
    if not any(t.agent.containers_done_s for t in trials):
        return f"removals ≈ {rest:.2f}s"
    containers = med(lambda t: t.agent.containers_done_s - t.plan_s)
    return f"containers ≈ {containers:.2f}s; images and volumes ≈ {rest:.2f}s"


def _same_set(kinds: Sequence[str], n: int, trial: Trial) -> str:
    agent, base = trial.agent.remaining, trial.baseline.remaining
    verdicts = []
    for kind in kinds:
        only_agent, only_base = agent[kind] - base[kind], base[kind] - agent[kind]
        same = not only_agent and not only_base
        verdicts.append(f"{kind}s {'same' if same else 'DIFFERENT'} ({len(agent[kind])} left"
                        + ("" if same else f"; {len(only_agent)} only after the agent, "
                           f"{len(only_base)} only after prune") + ")")
    tags = f"tags left: agent {len(agent['tag'])}, prune {len(base['tag'])}"
    failed = sum(v for k, v in trial.agent.results.items() if not k.endswith(" done"))
    return (f"- trial {n}: " + "; ".join(verdicts) + f"; {tags}; agent exit code "
            f"{trial.agent.exit_code}, {failed} actions not done")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)



