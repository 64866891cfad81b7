"""Put a file into the content-addressed blob directory: hardlink when possible, copy otherwise.

Either way the bytes land in a temp file inside `blobs/`, are hashed, compared with the digest the source
published (if any), and only then renamed to `sha256-<hex>`. So a blob file under its final name is
always complete and always has the content its name says; a half-written copy is a `.tmp-*` file that
listing ignores and garbage collection deletes.

Why hardlink: the bundled model lives in site-packages and Hugging Face models in the HF cache. A hardlink
costs no space and no time, and survives the original being deleted (pip uninstall, `hf cache delete`).
It fails across filesystems (EXDEV) or where the kernel forbids linking other users' files (EPERM with
`fs.protected_hardlinks`); then we copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from lokal.errors import DigestMismatch
from lokal.files import check_free_space, disk_full_is_an_error, fsync_dir, temp_path
from lokal.store.layout import StoreLayout, digest_hex
from lokal.store.types import Progress

CHUNK_SIZE = 1 << 20
_PROGRESS_MIN_BYTES = 32 * 1024 * 1024  # no progress bar for files that copy in a blink


class _Bar(Protocol):
    """What `_copy_chunks` reports progress to: a tqdm bar, or `_CallbackProgress`."""

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


def _link(src: Path, dst: Path) -> None:
    """`os.link`, as a seam tests can replace to force the copy path."""
    os.link(src, dst)


def _copy_chunks(src: BinaryIO, dst: BinaryIO, hasher: hashlib._Hash, bar: _Bar | None = None) -> None:
    """Copy `src` to `dst` in chunks, hashing as we go (one read of the data, not two)."""
    while chunk := src.read(CHUNK_SIZE):
        dst.write(chunk)
        hasher.update(chunk)
        if bar is not None:
            bar.update(len(chunk))


def hash_file(path: Path) -> str:
    """`sha256:<hex>` of a file."""
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def _place(layout: StoreLayout, tmp: Path, digest: str, expected: str | None, what: str) -> tuple[str, int]:
    """Rename a verified temp file to its content address (or drop it if that blob already exists)."""
    if expected is not None and digest_hex(expected) != digest_hex(digest):
        tmp.unlink(missing_ok=True)
        raise DigestMismatch(
            f"{what}: sha256 is {digest_hex(digest)[:12]}… but {digest_hex(expected)[:12]}… was expected; "
            "the file is corrupt or changed while it was read, so it was not added"
        )
    size = tmp.stat().st_size
    final = layout.blob_path(digest)
    if final.is_file() and final.stat().st_size == size:
        tmp.unlink()  # content-addressed: an existing blob with this digest is this content
    else:
        tmp.replace(final)
        fsync_dir(final.parent)
    return digest, size


class _CallbackProgress:
    """The part of tqdm's interface `_copy_chunks` uses, reporting to a callable instead of a terminal."""

    def __init__(self, total: int, report: Callable[[int, int], None]) -> None:
        self.total, self.done, self.report = total, 0, report

    def update(self, n: int) -> None:
        self.done += n
        self.report(self.done, self.total)

    def close(self) -> None:
        pass


def _progress_bar(total: int, label: str, enabled: Progress) -> _Bar | None:
    if callable(enabled):
        return _CallbackProgress(total, enabled)
    if not enabled or total < _PROGRESS_MIN_BYTES:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)


def import_parts(
    layout: StoreLayout,
    parts: Sequence[Path],
    *,
    expected: str | None = None,
    progress: Progress = False,
    label: str = "copying",
) -> tuple[str, int]:
    """Concatenate `parts` into one new blob (copying), verify it, and return `(digest, size)`."""
    total = sum(p.stat().st_size for p in parts)
    with disk_full_is_an_error(layout.blobs, total, label):
        layout.blobs.mkdir(parents=True, exist_ok=True)
        check_free_space(layout.blobs, total, label)  # refuse before writing, not half-way through
        tmp = temp_path(layout.blobs, "copy")
        hasher = hashlib.sha256()
        bar = _progress_bar(total, label, progress)
        try:
            with tmp.open("xb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        _copy_chunks(src, out, hasher, bar)
                out.flush()
                os.fsync(out.fileno())
            return _place(layout, tmp, f"sha256:{hasher.hexdigest()}", expected, label)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            if bar is not None:
                bar.close()


def import_file(
    layout: StoreLayout,
    src: Path,
    *,
    expected: str | None = None,
    link: bool = True,
    progress: Progress = False,
    label: str = "copying",
) -> tuple[str, int]:
    """Add `src` to the blobs (hardlink if `link` and possible, else copy); return `(digest, size)`."""
    layout.blobs.mkdir(parents=True, exist_ok=True)
    if link:
        tmp = temp_path(layout.blobs, "link")
        try:
            _link(src, tmp)
        except OSError:
            pass  # other filesystem, or linking forbidden: copy instead
        else:
            try:
                return _place(layout, tmp, hash_file(tmp), expected, label)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
    return import_parts(layout, [src], expected=expected, progress=progress, label=label)
