"""The node's first-seen record on disk: atomic, bounded to what exists, and a record we
cannot use is "no record" (everything first seen now), never a failed run."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.node.inventory import Image, Snapshot
from agents.node.state import NodeState, StateFile, observe

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=9)


def img(name: str) -> Image:
    return Image(id=f"sha256:{name}", created=EARLIER, size=1)


@pytest.mark.parametrize("text", [
    '{"version":1,"since":1,"images":{"a":[1]},"containers":{},"volumes":{}}',
    '{"version":1,"since":1,"images":[],"containers":{},"volumes":{}}',
    '{"version":1,"since":1,"images":{"a":"x"},"containers":[1],"volumes":{}}',
    '{"version":1,"since":"yesterday","images":{},"containers":{},"volumes":{}}',
    '{"version":1}',
    "[" * 100_000 + "]" * 100_000,
    "\xff\xfe not json",
    "",
], ids=["short-entry", "list-for-map", "wrong-types", "bad-time", "missing-keys",
        "deep-nesting", "binary", "empty"])
def test_a_record_we_did_not_write_is_reported_and_counts_as_no_record(tmp_path, text):
    store = StateFile(str(tmp_path))
    Path(store.path).write_bytes(text.encode("utf-8", "surrogateescape"))
    record = store.load(NOW)
    assert (record.found, record.since, dict(record.images)) == (False, NOW, {})
    assert record.problem and store.path in record.problem


def test_a_saved_record_reads_back_and_leaves_no_temporary_file(tmp_path):
    store = StateFile(str(tmp_path), runtime="containerd")
    record = NodeState(since=EARLIER, images={"sha256:a": EARLIER}, image_use={"sha256:a": NOW},
                       containers={"c1": NOW}, volumes={"v1": EARLIER})
    store.save(record)
    assert os.listdir(tmp_path) == ["containerd.json"]
    back = store.load(NOW)
    assert (back.found, back.problem, back.since) == (True, None, EARLIER)
    assert (dict(back.images), dict(back.image_use)) == ({"sha256:a": EARLIER},
                                                         {"sha256:a": NOW})
    assert (dict(back.containers), dict(back.volumes)) == ({"c1": NOW}, {"v1": EARLIER})


def test_a_crash_before_the_rename_keeps_the_old_record_whole(tmp_path, monkeypatch):
    store = StateFile(str(tmp_path))
    store.save(NodeState(since=EARLIER, images={"sha256:old": EARLIER}))

    def crash(*_args):
        raise OSError("killed between write and rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save(NodeState(since=NOW, images={"sha256:new": NOW}))
    assert os.listdir(tmp_path) == ["docker.json"]
    assert dict(store.load(NOW).images) == {"sha256:old": EARLIER}


def test_observing_drops_what_is_gone_and_keeps_first_seen_of_what_stays():
    record = NodeState(since=EARLIER, images={"sha256:kept": EARLIER, "sha256:gone": EARLIER},
                       image_use={"sha256:gone": EARLIER}, volumes={"gone-volume": EARLIER})
    snap = Snapshot(docker_root="/var/lib/docker", images=(img("kept"), img("new")))
    after = observe(record, snap, NOW)
    assert dict(after.images) == {"sha256:kept": EARLIER, "sha256:new": NOW}
    assert dict(after.image_use) == {}
    assert dict(after.volumes) == {} and dict(after.containers) == {}
