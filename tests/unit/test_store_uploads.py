"""Uploads (POST /api/blobs), models created from them, name-only pulls and the sweep of temp files."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path

import pytest

from lokal.config import Settings
from lokal.errors import DiskFull, InvalidBlob, InvalidModelFile, InvalidModelName, InvalidOptions, ModelNotFound
from lokal.store import ModelStore
from lokal.store.fsutil import file_lock
from lokal.store.gc import STALE_UPLOAD_SECONDS
from lokal.store.store import Layers
from lokal.store.uploads import BlobUpload, has_blob, parse_digest


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(Settings.from_env())


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def upload(store: ModelStore, data: bytes, digest: str | None = None, *, pieces: int = 3) -> bool:
    up = BlobUpload(store.layout, digest or sha(data), expected_size=len(data))
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        up.write(data[start : start + step])
    return up.commit()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_parse_digest_takes_both_spellings_and_nothing_else():
    hexes = "ab" * 32
    assert parse_digest(f"sha256:{hexes}") == parse_digest(f"sha256-{hexes}") == f"sha256:{hexes}"
    for bad in ("sha256:abc", "md5:" + hexes, "../../etc/passwd", f"sha256:{hexes}/x"):
        with pytest.raises(InvalidBlob, match="invalid digest"):
            parse_digest(bad)


def test_an_upload_is_kept_under_its_digest_once(store: ModelStore, make_gguf):
    data = make_gguf().read_bytes()
    assert upload(store, data) is True
    assert leftovers(store.layout.uploads) == [f"sha256-{hashlib.sha256(data).hexdigest()}"]
    assert has_blob(store.layout, sha(data))
    assert upload(store, data) is False  # already there: nothing new written
    assert leftovers(store.layout.uploads) == [f"sha256-{hashlib.sha256(data).hexdigest()}"]


def test_bytes_that_do_not_match_their_digest_leave_nothing(store: ModelStore):
    with pytest.raises(InvalidBlob, match="do not match their digest: they hash to sha256:2cf24dba5fb0"):
        upload(store, b"hello", "sha256:" + "0" * 64)
    assert leftovers(store.layout.uploads) == []
    assert not has_blob(store.layout, "sha256:" + "0" * 64)


def test_an_aborted_upload_leaves_nothing(store: ModelStore):
    up = BlobUpload(store.layout, sha(b"abcdef"))
    up.write(b"abc")
    up.abort()
    up.abort()
    assert leftovers(store.layout.uploads) == []


def test_an_upload_larger_than_the_free_space_is_refused_before_writing(store: ModelStore, monkeypatch):
    from lokal import files

    monkeypatch.setattr(files, "free_bytes", lambda directory: 900)
    with pytest.raises(DiskFull, match=r"uploading sha256:.* \(it needs 5\.0 KB and 900 B is free\); nothing was"):
        BlobUpload(store.layout, sha(b"x"), expected_size=5000)
    assert leftovers(store.layout.uploads) == []


def test_a_disk_that_fills_during_an_upload_is_a_disk_full_error(store: ModelStore, monkeypatch):
    up = BlobUpload(store.layout, sha(b"abcdef"))

    class FullFile:
        def __init__(self, real):
            self.real = real

        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.real, name)

    up._file = FullFile(up._file)
    with pytest.raises(DiskFull, match=r"not enough disk space in .*uploads for uploading sha256:"):
        up.write(b"abc")
    assert leftovers(store.layout.uploads) == []  # the temp file went with the error


def test_a_model_is_created_from_an_upload_with_its_layers(store: ModelStore, make_gguf):
    data = make_gguf().read_bytes()
    upload(store, data)
    layers = Layers(system="You are terse.", params={"temperature": 0.2}, license="MIT")
    model = store.create_from_blob("mine", "model.gguf", sha(data), layers=layers)
    assert model.name == "mine:latest" and model.source == "upload" and model.origin == "uploaded as model.gguf"
    assert (model.system, dict(model.params), model.license) == ("You are terse.", {"temperature": 0.2}, "MIT")
    assert model.path == store.layout.blob_path(sha(data)) and model.path.read_bytes() == data
    assert leftovers(store.layout.uploads) == []  # moved into blobs/, not copied
    again = store.create_from_blob("mine2", "model.gguf", sha(data))  # the blob is in the store now
    assert again.digest == model.digest and again.system is None


def test_creating_from_a_missing_or_non_gguf_blob_says_what_to_do(store: ModelStore):
    with pytest.raises(InvalidOptions, match=r"no blob sha256:000000000000… for 'a.gguf': upload it first"):
        store.create_from_blob("x", "a.gguf", "sha256:" + "0" * 64)
    upload(store, b"root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(InvalidModelFile, match=r"'a.gguf' is not a GGUF model .*the upload was deleted") as info:
        store.create_from_blob("x", "a.gguf", sha(b"root:x:0:0:root:/root:/bin/bash\n"))
    assert "root" not in str(info.value)  # no file contents in the message
    assert leftovers(store.layout.uploads) == [] and store.list() == []


def test_copy_with_layers_replaces_only_what_is_given(store: ModelStore, make_gguf):
    store.pull(str(make_gguf()), name="base", progress=False)
    store.copy("base", "base", layers=Layers(system="first"))  # onto its own name: the layers still apply
    assert store.resolve("base").system == "first"
    made = store.copy("base", "derived", layers=Layers(params={"top_k": 5}))
    assert made.system == "first" and dict(made.params) == {"top_k": 5}


def test_garbage_collection_removes_uploads_no_model_took_once_they_are_stale(store: ModelStore, make_gguf):
    upload(store, b"orphan")
    upload(store, b"waiting for its create")
    stale = time.time() - STALE_UPLOAD_SECONDS - 1
    os.utime(store.layout.upload_path(sha(b"orphan")), (stale, stale))
    store.pull(str(make_gguf()), name="a", progress=False)
    store.remove("a")
    assert leftovers(store.layout.uploads) == [f"sha256-{hashlib.sha256(b'waiting for its create').hexdigest()}"]


@pytest.mark.parametrize("ref", ["/etc/passwd", "./model.gguf", "~/secret", "../up", "model.gguf", "\\\\host\\x"])
def test_a_name_only_pull_refuses_paths_without_touching_the_disk(store: ModelStore, ref, monkeypatch):
    monkeypatch.setattr(Path, "is_file", lambda self: pytest.fail(f"looked at {self}"))
    monkeypatch.setattr(Path, "exists", lambda self: pytest.fail(f"looked at {self}"))
    with pytest.raises(InvalidModelName, match="looks like a file path: the server imports no files by path"):
        store.pull(ref, local_paths=False)


def test_a_name_only_pull_still_takes_names(store: ModelStore):
    assert store.pull("smollm2", local_paths=False, progress=False).name == "smollm2:135m"
    with pytest.raises(ModelNotFound):
        store.pull("etc/passwd", local_paths=False)


def test_the_sweep_waits_for_no_writer_and_skips_while_one_works(store: ModelStore, make_gguf):
    store.pull(str(make_gguf()), name="a", progress=False)
    for folder in (store.layout.blobs, store.layout.manifests, store.layout.uploads):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".tmp-copy-abc").write_bytes(b"partial")
    with file_lock(store.layout.lock_path("store"), shared=True):  # another pull is under way
        assert store.sweep_temp_files() == 0
    assert len(list(store.layout.iter_temp_files())) == 3
    assert store.sweep_temp_files() == 3
    assert list(store.layout.iter_temp_files()) == [] and [m.name for m in store.list()] == ["a:latest"]


def test_an_import_sweeps_what_an_interrupted_one_left(store: ModelStore, make_gguf):
    store.layout.blobs.mkdir(parents=True)
    (store.layout.blobs / ".tmp-copy-dead").write_bytes(b"x" * 1000)
    store.pull(str(make_gguf()), name="a", progress=False)
    assert list(store.layout.iter_temp_files()) == []


def test_an_upload_in_progress_holds_no_store_lock_and_survives_sweeps_and_garbage_collection(store, make_gguf):
    up = BlobUpload(store.layout, sha(b"abcdef"))
    up.write(b"abc")
    with file_lock(store.layout.lock_path("store"), wait=False) as free:
        assert free  # `lokal rm` is not held up by a slow upload
    assert store.sweep_temp_files() == 0
    store.pull(str(make_gguf()), name="a", progress=False)
    store.remove("a")  # garbage collection
    up.write(b"def")
    assert up.commit() is True and has_blob(store.layout, sha(b"abcdef"))
