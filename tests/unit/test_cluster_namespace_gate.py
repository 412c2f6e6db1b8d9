"""The namespace opt-out re-read during a run: how often, and what it answers."""

from __future__ import annotations

from agents.cluster.namespace_gate import NamespaceGate
from tests.memory_port import MemoryPort


def test_the_runs_own_list_is_trusted_for_max_age_then_read_again():
    port = MemoryPort({"kind": "Namespace", "metadata": {"name": "apps"}})
    now = [100.0]
    gate = NamespaceGate(port, ["apps"], listed_at=100.0, max_age=2, clock=lambda: now[0])
    assert gate.closed("apps") is None and port.counter.total == 0
    port.add({"kind": "Namespace", "metadata": {
        "name": "apps", "annotations": {"kubekeeper/ignore": "true"}}})
    now[0] = 101.9
    assert gate.closed("apps") is None and port.counter.total == 0
    now[0] = 102.0
    assert gate.closed("apps") == "namespace apps opted out (kubekeeper/ignore) during the run"
    assert gate.closed("apps") and port.counter.by_request == {"get namespaces": 1}


def test_a_namespace_that_cannot_be_read_is_left_to_the_mutation():
    port = MemoryPort()
    gate = NamespaceGate(port, [], listed_at=0.0, clock=lambda: 0.0)
    assert gate.closed("gone") is None and port.counter.by_request == {"get namespaces": 1}
