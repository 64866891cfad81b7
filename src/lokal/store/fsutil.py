"""The store's JSON writes and inter-process locks.

Why: a model is visible when its manifest exists, so the manifest must only ever appear whole, and only after
its blob is complete: it is written with `lokal.files.write_atomic`, like every file lokal writes. Locks are
`fcntl.flock` on files under `LOKAL_HOME/locks/`: released by the kernel when a process dies, so a crashed pull
never leaves the store locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lokal.files import write_atomic


def atomic_write_json(path: Path, data: Any) -> None:
    """A manifest or cached metadata as sorted, indented JSON, written whole or not at all."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


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
