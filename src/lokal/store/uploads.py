"""Blobs a client uploads over HTTP (`POST /api/blobs/sha256:<hex>`, how Ollama's clients import a local GGUF).

Why a folder of their own (`uploads/`): an upload is not a model yet. Kept apart from `blobs/`, it can never be
mistaken for a model's weights, and garbage collection can tell an upload no model took from a blob a manifest
still needs. `/api/create` with `files` moves the upload into `blobs/` (a rename, same file system) when it
writes the manifest.

The bytes go to a temp file in `uploads/` while they are hashed and, only if they match the digest they were
sent under, are renamed to `uploads/sha256-<hex>`: a half-sent or wrong upload never appears under a digest.
The upload holds an flock on its own temp file, not the store lock: a slow client streaming gigabytes must not
hold up `lokal rm` for minutes, and garbage collection skips temp files that are locked (`gc.unlink_if_unused`).
A server killed mid-upload leaves a `.tmp-` file whose lock died with it, which the next sweep removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from typing import BinaryIO

from lokal.errors import InvalidBlob
from lokal.files import check_free_space, disk_full_is_an_error, fsync_dir, temp_path
from lokal.store.fsutil import file_lock
from lokal.store.layout import StoreLayout, digest_hex


def parse_digest(text: str) -> str:
    """`sha256:<hex>` (or Ollama's `sha256-<hex>`) as `sha256:<hex>`; `InvalidBlob` otherwise."""
    try:
        return f"sha256:{digest_hex(text)}"
    except ValueError:
        raise InvalidBlob(f"invalid digest {text[:80]!r}: expected sha256:<64 hex digits>") from None


class BlobUpload:
    """One upload on its way into `uploads/`: `write()` chunks, then `commit()`, or `abort()` to drop it.

    Blocking file I/O: call it from a worker thread, never on the event loop."""

    def __init__(self, layout: StoreLayout, digest: str, *, expected_size: int | None = None) -> None:
        self.layout = layout
        self.digest = parse_digest(digest)
        self.size = 0
        self._what = f"uploading {self.digest[:19]}…"
        self._hasher = hashlib.sha256()
        self._file: BinaryIO | None = None
        with disk_full_is_an_error(layout.uploads, expected_size, self._what):
            layout.uploads.mkdir(parents=True, exist_ok=True)
            if expected_size is not None:
                check_free_space(layout.uploads, expected_size, self._what)
            # Created and locked under the store lock (shared, for a moment): a sweep (exclusive) cannot take the
            # file between its creation and its flock. Then the flock alone says "in use".
            with file_lock(layout.lock_path("store"), shared=True):
                self._tmp = temp_path(layout.uploads, "upload")
                self._file = self._tmp.open("xb")
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "write() after commit() or abort()"
        try:
            with disk_full_is_an_error(self.layout.uploads, None, self._what):
                self._file.write(chunk)
        except BaseException:
            self.abort()
            raise
        self._hasher.update(chunk)
        self.size += len(chunk)

    def commit(self) -> bool:
        """Verify and keep the upload; True when it was new, False when the store already had this blob."""
        assert self._file is not None, "commit() after commit() or abort()"
        try:
            with disk_full_is_an_error(self.layout.uploads, self.size, self._what):
                self._file.flush()
                os.fsync(self._file.fileno())
            # Renamed while still open and locked: no sweep can take the temp file between the check and the rename.
            actual = f"sha256:{self._hasher.hexdigest()}"
            if actual != self.digest:
                raise InvalidBlob(
                    f"the uploaded bytes do not match their digest: they hash to {actual[:19]}…, the URL says "
                    f"{self.digest[:19]}…; nothing was stored (send the file again, unchanged)"
                )
            if has_blob(self.layout, self.digest):
                self.abort()
                return False
            self._tmp.replace(self.layout.upload_path(self.digest))
            fsync_dir(self.layout.uploads)
            self._file.close()
            self._file = None
            return True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop what was written (a client that left, a failed write). Safe to call more than once."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def has_blob(layout: StoreLayout, digest: str) -> bool:
    """Whether the store holds this blob, as a model's weights or as an upload waiting for /api/create."""
    return layout.blob_path(digest).is_file() or layout.upload_path(digest).is_file()
