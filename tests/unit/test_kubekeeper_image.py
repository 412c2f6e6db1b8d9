"""The image cache's key: a change to anything the build reads builds anew, nothing else."""

from __future__ import annotations

from pathlib import Path

from scripts.localenv.kubekeeper_image import cached_archive, source_hash


def _repo(root: Path) -> Path:
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "agents/cli.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    return root


def test_the_key_follows_what_the_build_reads_and_only_that(tmp_path: Path):
    repo = _repo(tmp_path)
    first = source_hash(repo)
    (repo / "agents/__pycache__").mkdir()
    (repo / "agents/__pycache__/cli.cpython-311.pyc").write_bytes(b"\0")
    (repo / "tests").mkdir()
    (repo / "tests/test_x.py").write_text("x")
    assert source_hash(repo) == first
    for changed in ("agents/cli.py", "README.md", "Dockerfile", ".dockerignore", "pyproject.toml"):
        (repo / changed).write_text("changed")
        assert source_hash(repo) != first, changed
        first = source_hash(repo)
    (repo / "agents/node").mkdir()
    (repo / "agents/node/new.py").write_text("")
    assert source_hash(repo) != first


def test_the_archive_is_kept_in_the_kubekeeper_cache(tmp_path: Path):
    assert cached_archive(tmp_path) == tmp_path / "image" / f"kubekeeper-{source_hash()}.tar"
