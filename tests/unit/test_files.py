"""lokal.files.write_atomic: the one writer of files others read (manifests, results, reports, charts)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from lokal import files
from lokal.errors import DiskFull
from lokal.files import TEMP_PREFIX, write_atomic


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX))


def test_bytes_text_and_a_writer_function_all_land_whole(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert write_atomic(tmp_path / "b.txt", "é\n").read_bytes() == "é\n".encode()
    assert write_atomic(tmp_path / "c.png", lambda out: out.write(b"PNG")).read_bytes() == b"PNG"
    assert _leftovers(tmp_path) == []


def test_missing_parent_folders_are_made(tmp_path: Path) -> None:
    target = tmp_path / "x" / "y" / "result.json"
    assert write_atomic(target, "{}") == target
    assert target.read_text() == "{}"


def test_a_new_file_is_readable_by_others_and_an_old_files_mode_is_kept(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        new = write_atomic(tmp_path / "new.html", "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # not mkstemp's private 0600
        kept = tmp_path / "kept.html"
        kept.write_text("old")
        kept.chmod(0o664)
        write_atomic(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o664
        assert kept.read_text() == "new"
    finally:
        os.umask(old_umask)


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")

    def broken(out) -> None:
        out.write(b"half a page")
        raise RuntimeError("the chart could not be drawn")

    with pytest.raises(RuntimeError, match="could not be drawn"):
        write_atomic(target, broken)
    assert target.read_text() == "old report"
    assert _leftovers(tmp_path) == []


def test_no_space_left_is_disk_full_with_the_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(out) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "free_bytes", lambda directory: 100)
    with pytest.raises(DiskFull, match=r"writing out\.json .*100 B is free"):
        write_atomic(tmp_path / "out.json", full)
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "out.json").exists()
