"""Hugging Face pulls without the network: file choice, offline errors, the HF cache, the catalogue."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from lokal.config import Settings
from lokal.errors import DigestMismatch, HubUnreachable, PullError
from lokal.store import ModelStore
from lokal.store.catalogue import CATALOGUE
from lokal.store.sources import huggingface
from lokal.store.sources.huggingface import choose_gguf

REPO = "SomeOrg/Tiny-Model-GGUF"


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(Settings.from_env())


def hf_cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def place_in_hf_cache(repo_id: str, filename: str, data: bytes, *, revision: str = "a" * 40) -> Path:
    """Lay a file out as huggingface_hub does: blobs/<sha256>, snapshots/<rev>/<file> -> blob, refs/main."""
    repo_dir = hf_cache() / f"models--{repo_id.replace('/', '--')}"
    sha = hashlib.sha256(data).hexdigest()
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "blobs" / sha).write_bytes(data)
    link = repo_dir / "snapshots" / revision / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(repo_dir / "blobs" / sha, link.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return repo_dir / "blobs" / sha


FILES = {
    "README.md": 10,
    "tiny-Q2_K.gguf": 100,
    "tiny-Q4_0.gguf": 300,
    "tiny-Q4_K_M.gguf": 400,
    "tiny-Q4_K_S.gguf": 350,
    "tiny-Q8_0.gguf": 800,
    "mmproj-tiny-f16.gguf": 50,
}


@pytest.mark.parametrize(
    ("files", "quant", "expected"),
    [
        (FILES, None, "tiny-Q4_K_M.gguf"),
        ({k: v for k, v in FILES.items() if "K_M" not in k}, None, "tiny-Q4_0.gguf"),
        ({"a-Q8_0.gguf": 800, "a-Q6_K.gguf": 600, "mmproj.gguf": 1}, None, "a-Q6_K.gguf"),  # smallest
        (FILES, "q8_0", "tiny-Q8_0.gguf"),
        (FILES, "Q4_K", "tiny-Q4_K_M.gguf"),  # substring fallback, then smallest name order
        (FILES, "Q4_K_S", "tiny-Q4_K_S.gguf"),
        ({"Phi-3-mini-q4.gguf": 2, "Phi-3-mini-fp16.gguf": 7}, "q4", "Phi-3-mini-q4.gguf"),
        ({"sub/dir/m-Q4_K_M.gguf": 1}, None, "sub/dir/m-Q4_K_M.gguf"),
    ],
)  # fmt: skip
def test_choose_gguf(files: dict, quant: str | None, expected: str) -> None:
    assert choose_gguf(files, quant, REPO) == expected


def test_choose_gguf_errors() -> None:
    with pytest.raises(PullError, match="no GGUF files"):
        choose_gguf({"model.safetensors": 1}, None, REPO)
    with pytest.raises(PullError, match=r"matches 'IQ1_S'; available: .*tiny-Q4_K_M\.gguf"):
        choose_gguf(FILES, "IQ1_S", REPO)
    with pytest.raises(PullError, match="split GGUF"):
        choose_gguf({"big-Q4_K_M-00001-of-00002.gguf": 5, "big-Q4_K_M-00002-of-00002.gguf": 5}, None, REPO)


def test_offline_with_empty_cache_names_the_repo(store: ModelStore) -> None:
    with pytest.raises(HubUnreachable) as info:
        store.pull(f"hf.co/{REPO}:Q4_K_M", progress=False)
    message = str(info.value)
    assert "cannot reach the Hugging Face hub" in message and "HF_HUB_OFFLINE" in message
    assert f"hf.co/{REPO}" in message and "Q4_K_M" in message
    assert isinstance(info.value, ConnectionError)
    assert store.list() == []


def test_offline_uses_the_hf_cache_and_links_its_blob(store: ModelStore, make_gguf) -> None:
    data = make_gguf().read_bytes()
    hf_blob = place_in_hf_cache(REPO, "tiny-Q4_K_M.gguf", data)
    place_in_hf_cache(REPO, "tiny-Q8_0.gguf", data + b"\0")
    model = store.pull(f"hf.co/{REPO}", progress=False)  # default quant: Q4_K_M
    assert model.name == "hf.co/someorg/tiny-model-gguf:latest"
    assert model.source == "huggingface" and model.origin == f"hf.co/{REPO}/tiny-Q4_K_M.gguf"
    assert model.digest == "sha256:" + hf_blob.name
    assert model.path.stat().st_ino == hf_blob.stat().st_ino  # one copy on disk
    assert store.pull(f"hf.co/{REPO}:Q8_0", progress=False).name == "hf.co/someorg/tiny-model-gguf:q8_0"
    assert store.resolve("hf.co/someorg/tiny-model-gguf").digest == model.digest


def test_corrupt_hf_cache_blob_is_refused(store: ModelStore, make_gguf) -> None:
    hf_blob = place_in_hf_cache(REPO, "tiny-Q4_K_M.gguf", make_gguf().read_bytes())
    with hf_blob.open("r+b") as fh:  # flip a byte after the header: still GGUF, wrong sha256
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\xff")
    with pytest.raises(DigestMismatch):
        store.pull(f"hf.co/{REPO}", progress=False)
    assert store.list() == []


def test_catalogue_name_offline_says_what_it_would_fetch(store: ModelStore) -> None:
    with pytest.raises(HubUnreachable) as info:
        store.pull("tinyllama")
    message = str(info.value)
    assert "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf" in message
    assert "hf.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF" in message


def test_catalogue_name_from_cache(store: ModelStore, make_gguf) -> None:
    entry = CATALOGUE["qwen2.5:0.5b"]
    place_in_hf_cache(entry.repo_id, entry.file, make_gguf(arch="qwen2").read_bytes())
    model = store.pull("qwen2.5:0.5b", progress=False)
    assert model.name == "qwen2.5:0.5b" and model.details.family == "qwen2"
    assert store.resolve("qwen2.5:0.5b").source == "huggingface"


def test_catalogue_entries_are_valid() -> None:
    from lokal.store.names import canonical

    for name, entry in CATALOGUE.items():
        assert canonical(name) == name == entry.name
        assert choose_gguf({entry.file: 1, "other-F16.gguf": 2}, entry.quant, entry.repo_id) == entry.file


class _FakeApi:
    files: ClassVar[dict[str, int]] = {}
    error: ClassVar[Exception | None] = None

    def list_repo_tree(self, repo_id: str, recursive: bool = False):
        if self.error is not None:
            raise self.error
        return [SimpleNamespace(path=p, size=s) for p, s in self.files.items()]


def test_online_download_goes_through_the_hf_cache(store, make_gguf, monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    data = make_gguf().read_bytes()
    calls = []

    def fake_download(repo_id: str, filename: str, *, cache_dir, **kwargs):
        calls.append((repo_id, filename, Path(cache_dir), kwargs))
        blob = place_in_hf_cache(repo_id, filename, data)
        return str(next((blob.parent.parent / "snapshots").rglob(filename)))

    monkeypatch.setattr(_FakeApi, "files", {"x-Q4_0.gguf": 10, "x-Q4_K_M.gguf": 20})
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = store.pull(f"hf.co/{REPO}", progress=False)
    assert model.origin == f"hf.co/{REPO}/x-Q4_K_M.gguf"
    (repo_id, filename, cache_dir, kwargs) = calls[0]
    assert (repo_id, filename, cache_dir) == (REPO, "x-Q4_K_M.gguf", hf_cache())
    assert kwargs["tqdm_class"](total=1).disable  # progress=False silences huggingface_hub's bars


def test_network_error_falls_back_to_cache_then_reports(store, make_gguf, monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(_FakeApi, "error", ConnectionError("Name or service not known"))
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    with pytest.raises(HubUnreachable, match=r"ConnectionError: Name or service not known.*hf\.co/SomeOrg"):
        store.pull(f"hf.co/{REPO}:Q4_0", progress=False)
    place_in_hf_cache(REPO, "tiny-Q4_0.gguf", make_gguf().read_bytes())
    assert store.pull(f"hf.co/{REPO}:Q4_0", progress=False).name == "hf.co/someorg/tiny-model-gguf:q4_0"


def test_hub_offline_reads_the_environment_at_call_time(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert huggingface.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not huggingface.hub_offline()
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/else")
    assert huggingface.hub_cache_dir() == Path("/somewhere/else")
