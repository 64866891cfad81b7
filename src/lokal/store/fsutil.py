"""Crash-safe file writes and inter-process locks.

Why: a model is visible when its manifest exists, so the manifest must only ever appear whole, and only
after its blob is complete. Every write goes to a temp file in the destination directory, is fsync'ed and
then `os.replace`d into place (atomic on POSIX); the directory is fsync'ed so the rename survives a power
cut. Locks are `fcntl.flock` on files under `LOKAL_HOME/locks/`: released by the kernel when a process
dies, so a crashed pull never leaves the store locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lokal.errors import DiskFull
from lokal.store.layout import temp_path


def fsync_dir(directory: Path) -> None:
    """Persist a rename in `directory` (best effort: some filesystems refuse to open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(directory: Path) -> int | None:
    """Free space where `directory` is (or would be created); None when the file system cannot tell."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Raise `DiskFull` before writing `needed` bytes under `directory` if they cannot fit."""
    free = free_bytes(directory)
    if free is not None and needed > free:
        raise DiskFull(directory, needed, free, what)


@contextlib.contextmanager
def disk_full_is_an_error(directory: Path, needed: int | None, what: str) -> Iterator[None]:
    """Turn "no space left on device" (or over quota) inside the block into `DiskFull`, with the sizes.
    The block must clean up its own temp files: every writer here removes them on any exception."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        raise DiskFull(directory, needed, free_bytes(directory), what) from None


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    with disk_full_is_an_error(path.parent, len(data), f"writing {path.name}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path.parent, path.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False, wait: bool = True) -> Iterator[bool]:
    """Hold an flock on `path` (created if needed) for the duration of the block; yields whether it is held.

    Shared locks let many pulls run at once; the exclusive lock (taken by removal and garbage
    collection) waits for them, so a blob being imported is never collected before its manifest exists.
    With `wait=False` the block runs at once either way, and the yielded value says if the lock was free.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty directories from `path.parent` up to (not including) `stop`."""
    current = path.parent
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
