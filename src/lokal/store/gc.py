"""Garbage collection of lokal's store: blobs no manifest uses, uploads no model took, and temp files.

Why apart from `ModelStore`: deleting is the one thing in the store that must never touch what it does not own.
Only `blobs/`, `uploads/`, `manifests/` and the info cache are looked at, so a checkpoint folder a manifest
points at (outside all of them) can never be deleted here. The callers hold the store lock exclusively (see
`ModelStore`): no pull is then between its blob and its manifest, and no upload is half-written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from pathlib import Path

from lokal.store.fsutil import file_lock
from lokal.store.info import InfoCache
from lokal.store.layout import StoreLayout
from lokal.store.manifest import ManifestError, read_manifest

_DIGEST_IN_TEXT = re.compile(r"sha256[:-]([0-9a-f]{64})")
#: An upload no model was created from is kept this long: Ollama's clients upload, then create, and another
#: client's `lokal rm` in between must not take the blob from under them.
STALE_UPLOAD_SECONDS = 3600.0


def is_stale_upload(path: Path, now: float | None = None) -> bool:
    try:
        modified = path.stat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - modified >= STALE_UPLOAD_SECONDS


def referenced_digests(layout: StoreLayout) -> set[str]:
    """Digests used by any manifest. One this lokal cannot parse (a newer schema) still protects every digest
    that appears in its text."""
    referenced: set[str] = set()
    for _, path in layout.iter_manifests():
        try:
            referenced.add(read_manifest(path).digest)
        except ManifestError:
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                referenced |= {f"sha256:{h}" for h in _DIGEST_IN_TEXT.findall(text)}
    return referenced


def collect_garbage(layout: StoreLayout, infos: InfoCache) -> None:
    """Delete unreferenced blobs (and their cached GGUF info), uploads no /api/create took within
    `STALE_UPLOAD_SECONDS`, and temp files no writer holds. The caller holds the store lock exclusively."""
    referenced = referenced_digests(layout)
    for digest, blob in layout.iter_blobs():
        if digest not in referenced:
            blob.unlink(missing_ok=True)
            infos.forget(digest)
    for _digest, upload in layout.iter_uploads():
        if is_stale_upload(upload):
            upload.unlink(missing_ok=True)
    for tmp in layout.iter_temp_files():
        unlink_if_unused(tmp)


def unlink_if_unused(path: Path) -> bool:
    """Delete a temp file unless a writer holds an flock on it (an upload in progress, which does not hold the
    store lock: see `uploads`). True when it was deleted."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def sweep_temp_files(layout: StoreLayout) -> int:
    """Delete the `.tmp-*` files interrupted writes left (a killed pull, copy or upload) if no write is under way
    in any process; otherwise leave them for a later sweep. Returns how many were deleted.

    Called where a server starts and before each import, so a crash's leftovers (up to a whole GGUF) do not wait
    for the next `lokal rm`. Non-blocking: a sweep never waits for another process's pull to finish."""
    with file_lock(layout.lock_path("store"), wait=False) as free:
        if not free:
            return 0
        return sum(unlink_if_unused(tmp) for tmp in layout.iter_temp_files())
