"""The Go toolchain fetcher of scripts/setup: checksum first, exec bits kept, all or nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from scripts.localenv import gotoolchain

PREFIX = "golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64"
FILES = {f"{PREFIX}/bin/go": (b"ELF\n", 0o755),
         f"{PREFIX}/VERSION": (b"go1.26.8\n", 0o644)}


def module_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (data, mode) in FILES.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def test_the_hash_is_go_sums_h1_over_files_sorted_by_name():
    archive = zipfile.ZipFile(io.BytesIO(module_zip()))
    # Computed with sha256sum, xxd and base64 in the shell: "<sha256>  <name>\n" per file,
    # sorted by name (VERSION before bin/go; sorting the lines would put bin/go first),
    # hashed again, base64 (Go's dirhash.Hash1).
    assert gotoolchain.dirhash(archive) == "h1:vV8AKaxgsqXd0Iwn+eU0DDy2cniftUj7q8DL1Q7P7cQ="


def test_a_checked_zip_is_unpacked_with_its_modes(tmp_path: Path):
    data = module_zip()
    expected = gotoolchain.dirhash(zipfile.ZipFile(io.BytesIO(data)))

    gotoolchain.unpack(data, expected, PREFIX, tmp_path / "go")

    assert (tmp_path / "go" / "bin" / "go").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "go" / "VERSION").read_text() == "go1.26.8\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go"]


def test_a_zip_that_does_not_match_the_pinned_sum_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(RuntimeError, match="checksum"):
        gotoolchain.unpack(module_zip(), "h1:not-the-sum=", PREFIX, tmp_path / "go")
    assert list(tmp_path.iterdir()) == []
