"""Crash-safe file writes, the one way lokal writes a file that someone else reads.

Why: a model is visible when its manifest exists, a report is opened by a browser that may be refreshing, a result
is collected by a CI job; none of them may ever see half a file. Every write goes to a temp file in the
destination's directory (same file system, so the rename is atomic on POSIX), is fsync'ed, then `os.replace`d
into place, and the directory is fsync'ed so the rename survives a power cut. "No space left on device" becomes
`DiskFull` with the sizes, and the temp file is removed on any failure.

Temp files start with `.tmp-`: every scan of the model store skips names starting with '.', so an interrupted
write is never mistaken for a model, and the store's start-up sweep knows what to delete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lokal.errors import DiskFull

TEMP_PREFIX = ".tmp-"
#: The mode of a new file: results, reports and manifests are meant to be read by others, like any other file.
DEFAULT_MODE = 0o644
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

#: What `write_atomic` writes: the bytes, text (UTF-8), or a function that writes into the open file (a chart's
#: `savefig`), so a large payload need not be built in memory first.
Payload = bytes | str | Callable[[BinaryIO], object]


def temp_path(directory: Path, label: str = "") -> Path:
    """A unique temp path in `directory` (same file system as the destination, so the rename is atomic)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:40]
    return directory / f"{TEMP_PREFIX}{safe}-{uuid.uuid4().hex[:12]}"


def fsync_dir(directory: Path) -> None:
    """Persist a rename in `directory` (best effort: some file systems refuse to open directories)."""
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


def write_atomic(path: str | os.PathLike[str], data: Payload, *, mode: int | None = None) -> Path:
    """Write `data` to `path` so that readers see either the old file or the whole new one; returns the path.

    `mode` None keeps an existing file's permissions (a report someone made group-readable stays so); a new file
    gets 0644 less the umask, as any other file the user creates (not the private 0600 of `tempfile.mkstemp`).
    """
    target = Path(path)
    directory = target.parent
    if isinstance(data, str):
        data = data.encode("utf-8")  # before sizing: DiskFull counts bytes, not characters
    needed = len(data) if isinstance(data, bytes) else None
    with disk_full_is_an_error(directory, needed, f"writing {target.name}"):
        directory.mkdir(parents=True, exist_ok=True)
        keep = target.stat().st_mode & 0o777 if mode is None and target.exists() else None
        tmp = temp_path(directory, target.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DEFAULT_MODE if mode is None else mode)
            with os.fdopen(fd, "wb") as out:
                if keep is not None:
                    os.fchmod(out.fileno(), keep)  # past the umask: the file had these permissions before
                if isinstance(data, bytes):
                    out.write(data)
                else:
                    data(out)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    fsync_dir(directory)
    return target
