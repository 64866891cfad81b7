"""Store atomicity with a real crash: SIGKILL a `lokal pull` half-way and the store stays valid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _pad(path: Path, size: int) -> Path:
    """Pad a valid tiny GGUF to `size` bytes (sparse), so copying it takes long enough to interrupt."""
    with path.open("ab") as f:
        f.truncate(size)
    return path


def _lokal(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lokal", *args], capture_output=True, text=True, timeout=120, **kw)


def test_killed_pull_leaves_no_model_and_a_retry_succeeds(make_gguf, isolated_home):
    source = _pad(make_gguf("big.gguf"), 1_000_000_000)
    blobs = isolated_home / "blobs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokal", "pull", str(source), "--name", "big", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        partial = []
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in blobs.glob(".tmp-*") if p.stat().st_size > 0] if blobs.exists() else []
            if partial:
                break
            time.sleep(0.005)
        assert partial, "the pull finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    listed = _lokal("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"big' not in listed.stdout
    shown = _lokal("show", "big")
    assert shown.returncode == 1 and "not found" in shown.stderr
    # No complete-looking blob was left behind: only the temp file, which the retry ignores.
    assert not [p for p in blobs.iterdir() if p.name.startswith("sha256-")]

    retry = _lokal("pull", str(source), "--name", "big", "--no-progress")
    assert retry.returncode == 0, retry.stderr
    listed = _lokal("list", "--json")
    assert '"big:latest"' in listed.stdout
