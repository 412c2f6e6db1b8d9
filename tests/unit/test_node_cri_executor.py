"""The executor on a CRI runtime: batches of ``parallelism``, intents first, one check each."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agents.actions import Action
from agents.node import cri_inventory, cri_mutations, state
from agents.node.docker_port import DockerDown, DockerError
from agents.node.executor import Execution, execute
from agents.node.host_paths import HostPaths
from agents.node.plan_images import plan_images
from agents.policy import AgeRule, DiskPressure, ImageRules
from agents.report import Reporter
from tests import report_lines
from tests.memory_cri import MemoryCri

NOW = datetime.now(UTC)
RULES = ImageRules(dangling=AgeRule(olderThan=timedelta(0)),
                   unused=AgeRule(olderThan=timedelta(0)),
                   diskPressure=DiskPressure(enabled=False))
IMAGES = ["sha256:" + c * 64 for c in "abcde"]


@dataclass
class WatchedCri(MemoryCri):
    """Records each batch and how many intent lines the report held when it came."""

    out: io.StringIO = field(default_factory=io.StringIO)
    batches: list[tuple[list[str], int]] = field(default_factory=list)
    before_look: list = field(default_factory=list)
    """Called when a batch is checked, before its look: the world changing since planning."""
    down: bool = False

    def remove_images(self, image_ids: Sequence[str]) -> dict[str, DockerError | None]:
        self.batches.append((list(image_ids), self.out.getvalue().count('"action.intent"')))
        for change in self.before_look:
            change(self)
        if self.down:
            raise DockerDown("unix:///memory/cri.sock: connection refused")
        return super().remove_images(image_ids)


def node() -> WatchedCri:
    cri = WatchedCri()
    for n, image_id in enumerate(IMAGES):
        cri.add_image(image_id, f"kubekeeper.test/app{n}:1")
    return cri


def plan(cri: MemoryCri) -> list[Action]:
    snap = cri_inventory.take(cri, HostPaths("/"))
    record = state.observe(state.NodeState(since=NOW), snap, NOW - timedelta(days=30))
    snap = state.annotate(snap, record)
    return [a for a in plan_images(snap, RULES, snap.containers, NOW) if a.mutates]


def run(cri: WatchedCri, parallelism: int = 2,
        stop: threading.Event | None = None) -> list[dict]:
    reporter = Reporter("node", "cleanup", False, node="n1", stream=cri.out)
    execution = Execution(cri, reporter, HostPaths("/"), "", parallelism,
                          stop or threading.Event(), runtime="containerd",
                          mutate_all=lambda actions: cri_mutations.carry_out_all(actions, cri))
    execute(plan(cri), execution, False, 100)
    return report_lines.outcomes(report_lines.parse(cri.out.getvalue()))


def test_removals_go_in_batches_of_parallelism_each_after_its_intent_lines():
    cri = node()
    lines = run(cri, parallelism=2)
    assert [len(ids) for ids, _ in cri.batches] == [2, 2, 1]
    assert [intents for _, intents in cri.batches] == [2, 4, 5]
    assert sorted(cri.removed) == IMAGES
    assert {line["result"] for line in lines} == {"done"}


def test_an_image_put_in_use_after_its_intent_is_kept_and_the_batch_goes_on():
    cri = node()
    cri.before_look.append(lambda c: c.add_container("late", "kubekeeper.test/app0:1"))
    lines = run(cri, parallelism=5)
    kept = [line for line in lines if line["id"] == IMAGES[0]]
    assert kept[0]["result"] == "skipped" and "in use by container late" in kept[0]["error"]
    assert sorted(cri.removed) == IMAGES[1:]


def test_when_the_runtime_goes_away_the_batch_fails_and_the_next_is_not_sent():
    cri = node()
    cri.down = True
    lines = run(cri, parallelism=2)
    assert len(cri.batches) == 1 and cri.removed == []
    assert [line["result"] for line in lines] == ["failed"] * 5
    assert all(line["error"].startswith("containerd unreachable: ") for line in lines)


def test_stop_lets_the_batch_in_flight_finish_and_skips_the_rest():
    cri, stop = node(), threading.Event()
    cri.before_look.append(lambda c: stop.set())
    lines = run(cri, parallelism=2, stop=stop)
    assert len(cri.removed) == 2 and len(cri.batches) == 1
    assert [line["result"] for line in lines].count("skipped") == 3
