"""Reading models from Ollama's store: listed and resolvable read-only, never written to."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lokal.config import Settings
from lokal.errors import ModelNotFound, ReadOnlyModel
from lokal.store import ModelStore

PARAMS = {"stop": ["<|im_end|>"], "num_ctx": 4096, "temperature": 0.6}


def _blob(root: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_ollama_model(root: Path, rel: str, gguf: bytes, *, extra_layers: bool = True) -> Path:
    """Write an Ollama manifest + blobs exactly as Ollama lays them out (see ollama-api.md section 3)."""
    config = _blob(root, json.dumps({"model_format": "gguf", "model_family": "llama", "file_type": "Q4_0"}).encode())
    layers = [{"mediaType": "application/vnd.ollama.image.model", **_blob(root, gguf)}]
    if extra_layers:
        layers += [
            {"mediaType": "application/vnd.ollama.image.template", **_blob(root, b"{{ .Prompt }}")},
            {
                "mediaType": "application/vnd.ollama.image.license",
                **_blob(root, b"MIT License\n\nCopyright..."),
            },
            {"mediaType": "application/vnd.ollama.image.params", **_blob(root, json.dumps(PARAMS).encode())},
            {"mediaType": "application/vnd.ollama.image.system", **_blob(root, b"You are a pirate.")},
        ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
        "layers": layers,
    }
    path = root / "manifests" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, float, str]]:
    return {
        str(p.relative_to(root)): (
            p.stat().st_size,
            p.stat().st_mtime,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def ollama_root() -> Path:
    return Path(os.environ["OLLAMA_MODELS"])


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(Settings.from_env())


def test_ollama_models_are_listed_read_only(store: ModelStore, ollama_root: Path, make_gguf) -> None:
    manifest = build_ollama_model(ollama_root, "registry.ollama.ai/library/tiny/latest", make_gguf().read_bytes())
    build_ollama_model(ollama_root, "hf.co/Org/Repo-GGUF/Q4_K_M", make_gguf("b.gguf", name="B").read_bytes())
    models = store.list()
    assert [m.name for m in models] == ["hf.co/org/repo-gguf:q4_k_m", "tiny:latest"]
    tiny = models[1]
    assert tiny.source == "ollama" and tiny.read_only
    assert tiny.manifest_digest == "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert tiny.list_digest == tiny.manifest_digest != tiny.digest
    assert tiny.path.parent == ollama_root / "blobs"
    assert dict(tiny.params) == PARAMS and tiny.system == "You are a pirate."
    assert tiny.details.context_length == 2048 and tiny.details.family == "llama"


def test_ollama_model_resolves_and_shows(store: ModelStore, ollama_root: Path, make_gguf) -> None:
    build_ollama_model(ollama_root, "registry.ollama.ai/library/tiny/latest", make_gguf().read_bytes())
    build_ollama_model(ollama_root, "hf.co/Org/Repo-GGUF/Q4_K_M", make_gguf("b.gguf", name="B").read_bytes())
    assert store.resolve("Tiny").read_only
    assert store.resolve("library/tiny:latest").name == "tiny:latest"
    assert store.resolve("hf.co/org/repo-gguf:Q4_K_M").name == "hf.co/org/repo-gguf:q4_k_m"
    info = store.show("tiny")
    assert info.read_only and info.license.startswith("MIT License") and info.params["temperature"] == 0.6


def test_ollama_store_is_never_written(store: ModelStore, ollama_root: Path, make_gguf) -> None:
    build_ollama_model(ollama_root, "registry.ollama.ai/library/tiny/latest", make_gguf().read_bytes())
    before = _snapshot(ollama_root)
    store.list()
    store.show("tiny")
    with pytest.raises(ReadOnlyModel, match="ollama rm tiny:latest"):
        store.remove("tiny")
    copied = store.copy("tiny", "mytiny")
    assert not copied.read_only and copied.path.parent == store.layout.blobs
    assert copied.digest == store.resolve("tiny").digest and dict(copied.params) == PARAMS
    store.remove("mytiny")
    assert _snapshot(ollama_root) == before
    assert [m.name for m in store.list()] == ["tiny:latest"]


def test_lokal_name_shadows_ollama(store: ModelStore, ollama_root: Path, make_gguf) -> None:
    build_ollama_model(ollama_root, "registry.ollama.ai/library/tiny/latest", make_gguf().read_bytes())
    store.pull(str(make_gguf("mine.gguf", name="Mine")), name="tiny", progress=False)
    models = store.list()
    assert len(models) == 1 and models[0].source == "file"
    assert store.resolve("tiny").source == "file"


def test_unusable_ollama_entries_become_warnings(store: ModelStore, ollama_root: Path, make_gguf) -> None:
    build_ollama_model(ollama_root, "registry.ollama.ai/library/ok/latest", make_gguf().read_bytes())
    broken = build_ollama_model(ollama_root, "registry.ollama.ai/library/broken/latest", b"GGUF-but-missing")
    data = json.loads(broken.read_text())
    (ollama_root / "blobs" / data["layers"][0]["digest"].replace(":", "-")).unlink()
    safetensors = ollama_root / "manifests/registry.ollama.ai/library/st/latest"
    safetensors.parent.mkdir(parents=True)
    safetensors.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.tensor"}]}))
    (ollama_root / "manifests/registry.ollama.ai/library/ok/.tmp-latest").write_text("partial")
    assert [m.name for m in store.list()] == ["ok:latest"]
    assert len(store.warnings) == 2
    with pytest.raises(ModelNotFound, match="Ollama's store but unusable"):
        store.resolve("st")


def test_unknown_name_hints(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound) as info:
        store.resolve("gemma3")
    assert "did you mean" in str(info.value) and "gemma3:270m" in str(info.value)
    with pytest.raises(ModelNotFound, match=r"lokal pull tinyllama:latest \(fetches hf\.co/TheBloke/"):
        store.resolve("tinyllama")
    with pytest.raises(ModelNotFound, match="lokal can pull"):
        store.resolve("no-such-model")
    with pytest.raises(ModelNotFound, match="lokal can pull"):
        store.pull("no-such-model")
