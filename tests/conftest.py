"""Shared fixtures. The autouse `isolated_home` keeps every test away from the real home directory:
lokal's store, Ollama's store and the Hugging Face cache all point into tmp dirs, and the hub is offline."""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from pathlib import Path

import pytest

TINY_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """With LOKAL_CRASH_LOG set (.ci/run sets it), a fatal signal's thread dump also goes to that file, so CI can
    print the crashing thread last: a crash in llama.cpp takes the whole pytest process down, and the dump on
    stderr lists the main thread last, where a log cut to its tail shows only the client waiting."""
    path = os.environ.get("LOKAL_CRASH_LOG")
    if path:
        crash_log = Path(path).open("w")  # noqa: SIM115 (open for the whole session, closed at exit)
        config._lokal_crash_log = crash_log  # type: ignore[attr-defined]  # kept referenced: faulthandler needs the fd
        faulthandler.enable(file=crash_log, all_threads=True)


@pytest.fixture(scope="session")
def transformers_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of dequantized GGUF conversions for the whole session: converting SmolLM2 takes ~30 s."""
    return tmp_path_factory.mktemp("transformers-cache")


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, transformers_cache: Path
) -> Path:
    home = tmp_path_factory.mktemp("lokal-home")
    monkeypatch.setenv("LOKAL_TRANSFORMERS_CACHE", str(transformers_cache))
    monkeypatch.setenv("LOKAL_HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path_factory.mktemp("ollama-models")))
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # No server answers here, so CLI commands work in process unless a test starts one and points at it.
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    monkeypatch.delenv("LOKAL_HOST", raising=False)
    monkeypatch.delenv("LOKAL_API_KEY", raising=False)
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE", "LOKAL_DEBUG", "LOKAL_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    return home


def write_tiny_gguf(
    path: Path,
    *,
    name: str = "Tiny Test Model",
    arch: str = "llama",
    context_length: int = 2048,
    embedding_length: int = 64,
    block_count: int = 2,
    head_count: int = 4,
    head_count_kv: int = 2,
    vocab_size: int = 100,
    file_type: int | None = 2,  # LlamaFileType.MOSTLY_Q4_0
    chat_template: str | None = TINY_TEMPLATE,
    license: str | None = "apache-2.0",
) -> Path:
    """A small but well-formed GGUF (a few KVs, a vocabulary and two f32 tensors): no real model needed."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_uint32(f"{arch}.context_length", context_length)
    writer.add_uint32(f"{arch}.embedding_length", embedding_length)
    writer.add_uint32(f"{arch}.block_count", block_count)
    writer.add_uint32(f"{arch}.attention.head_count", head_count)
    writer.add_uint32(f"{arch}.attention.head_count_kv", head_count_kv)
    if file_type is not None:
        writer.add_file_type(file_type)
    if license:
        writer.add_license(license)
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}" for i in range(vocab_size)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_tensor("token_embd.weight", np.arange(vocab_size * 8, dtype=np.float32).reshape(vocab_size, 8))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `make_gguf("a.gguf", name="A")` writes a tiny GGUF under tmp_path and returns its path."""

    def factory(filename: str = "tiny.gguf", **kwargs: object) -> Path:
        return write_tiny_gguf(tmp_path / filename, **kwargs)  # type: ignore[arg-type]

    return factory


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `hf` need the transformers engine (the `hf` extra). Without it they skip, except where
    LOKAL_REQUIRE_HF is set (CI installs the extra there): then a missing extra fails them."""
    if item.get_closest_marker("hf") is None:
        return
    from lokal.engine_specs import missing_packages

    missing = missing_packages("transformers")
    if missing:
        message = f"needs the hf extra ({', '.join(missing)} missing): pip install 'lokal[hf]'"
        if os.environ.get("LOKAL_REQUIRE_HF"):
            pytest.fail(message + " [LOKAL_REQUIRE_HF is set]", pytrace=False)
        pytest.skip(message)
