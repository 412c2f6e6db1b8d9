"""Adversarial policies: each is refused with located messages, fast and in little memory.

Every file in ``policy_corpus/`` is one case.  Its header lines ``# expect: TEXT``
name substrings that some error must contain (the key path included), or
``# expect: valid`` for a file that must load.  Cases that need a special file
(a FIFO, a device, a directory, a huge file) are built here instead.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents import policy_yaml
from agents.policy import Policy
from agents.policy_loader import MAX_ERRORS, PolicyError, PolicyInvalid, load_policy

CORPUS = Path(__file__).parent / "policy_corpus"
CASES = sorted(CORPUS.glob("*.yaml"))
SECONDS = 0.5
PEAK_BYTES = 50 * 2**20


def expectations(path: Path) -> list[str]:
    lines = path.read_bytes().decode("utf-8", "replace").lstrip("\ufeff").splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def measured(call: Callable[[], Any]) -> tuple[Any, float, int]:
    """(the result or the exception raised, CPU seconds taken, peak bytes allocated).

    CPU time, not wall time, so that a busy machine does not fail the bound.  Two
    calls: tracemalloc slows Python code several times, so the clock runs on the
    first and the allocations are traced on the second.
    """
    started = time.thread_time()
    outcome = _outcome(call)
    seconds = time.thread_time() - started
    tracemalloc.start()
    try:
        _outcome(call)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return outcome, seconds, peak


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc


def assert_located(error: PolicyError) -> None:
    """A problem names line and column, or is about the whole file (and then has no path)."""
    assert (error.line >= 1 and error.column >= 1) or (error.line == 0 and not error.path), error
    assert len(str(error)) < 300, f"message quotes too much: {str(error)[:300]}"


def refused(path: Path) -> list[str]:
    outcome, seconds, peak = measured(lambda: load_policy(path))
    assert isinstance(outcome, PolicyInvalid), outcome
    assert seconds < SECONDS, f"took {seconds:.2f}s"
    assert peak < PEAK_BYTES, f"peak {peak / 2**20:.0f} MB"
    for error in outcome.errors:
        assert_located(error)
    return [str(e) for e in outcome.errors]


def test_the_corpus_covers_every_class():
    assert len(CASES) >= 90
    assert sum(expectations(p) == ["valid"] for p in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_corpus_case(case: Path, tmp_path: Path):
    expected = expectations(case)
    assert expected, f"{case.name} has no '# expect:' line"
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(case.read_bytes())
    if expected == ["valid"]:
        assert isinstance(load_policy(policy_file), Policy)
        return
    found = refused(policy_file)
    for text in expected:
        assert any(text in line for line in found), f"{text!r} not in {found}"


def test_a_tag_never_runs_anything(tmp_path: Path):
    witness = tmp_path / "ran"
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(
        "apiVersion: kubekeeper/v1\n"
        f"dryRun: !!python/object/apply:os.system ['touch {witness}']\n"
        f"node: {{logs: {{action: !!python/object/new:os.system ['touch {witness}']}}}}\n"
        f"cluster: !!python/object/apply:builtins.exec [\"open('{witness}', 'w')\"]\n")
    found = refused(policy_file)
    assert len([line for line in found if "tags (!!python/object" in line]) == 3
    assert not witness.exists()


def test_a_fifo_is_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "policies.yaml"
    os.mkfifo(fifo)
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(_outcome(lambda: load_policy(fifo))),
                              daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the old behaviour's open(), then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert "is not a regular file" in str(result[0])


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_even_through_a_symlink(tmp_path: Path, target: str):
    link = tmp_path / "policies.yaml"
    link.symlink_to(target)
    assert refused(link) == [f"{link}: is not a regular file (a FIFO, socket or device is "
                             "refused)"]


def test_a_directory_is_refused(tmp_path: Path):
    assert refused(tmp_path) == [f"{tmp_path}: is a directory, not a policy file"]


def test_a_configmap_mount_of_symlinks_is_read(tmp_path: Path):
    """kubelet mounts ``policies.yaml -> ..data/policies.yaml``, ``..data -> ..<timestamp>``."""
    version = tmp_path / "..2026_12_02_10_00_00.1"
    version.mkdir()
    (version / "policies.yaml").write_text("apiVersion: kubekeeper/v1\ndryRun: false\n")
    (tmp_path / "..data").symlink_to(version.name)
    (tmp_path / "policies.yaml").symlink_to("..data/policies.yaml")
    assert load_policy(tmp_path / "policies.yaml").dryRun is False


def test_a_file_over_1_mib_is_refused_before_it_is_parsed(tmp_path: Path):
    big = tmp_path / "policies.yaml"
    with big.open("w") as out:  # 10 MB of unknown keys
        out.write("apiVersion: kubekeeper/v1\n")
        out.writelines(f"unknown{i}: {i}\n" for i in range(600_000))
    assert big.stat().st_size > 10 * 10**6
    assert refused(big) == [f"{big}: is larger than 1024 KiB; a policy is a few KB"]


def test_a_file_of_too_many_values_stops_at_the_cap(tmp_path: Path):
    many = tmp_path / "policies.yaml"
    many.write_text("apiVersion: kubekeeper/v1\n"
                    + "".join(f"k{i}: [{i}]\n" for i in range(60_000)))
    assert many.stat().st_size < 2**20
    [error] = refused(many)
    assert "the file holds more than 10000 keys and values" in error


def test_problems_past_the_cap_are_counted_not_listed(tmp_path: Path):
    noisy = tmp_path / "policies.yaml"
    noisy.write_text("apiVersion: kubekeeper/v1\n" + "".join(f"k{i}: 1\n" for i in range(200)))
    found = refused(noisy)
    assert len(found) == MAX_ERRORS + 1
    assert found[-1] == f"{noisy}: and {200 - MAX_ERRORS} more problems, not shown"


@pytest.mark.parametrize("name", ["alias_bomb", "tag_python_object_apply", "merge_key",
                                  "duplicate_override_namespaces", "deep_mapping_nesting",
                                  "non_scalar_key_labels", "two_documents"])
def test_without_libyaml_the_same_problems_are_found(name, monkeypatch):
    """PyYAML built without libyaml falls back to its Python parser: same events, same errors."""
    case = CORPUS / f"{name}.yaml"
    with_libyaml = refused(case)
    monkeypatch.setattr(policy_yaml, "_parser", lambda text: yaml.SafeLoader(text))
    assert refused(case) == with_libyaml
