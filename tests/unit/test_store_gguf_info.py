"""GGUF header parsing: the fast reader agrees with gguf.GGUFReader and extracts the fields lokal uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lokal.errors import InvalidModelFile
from lokal.store import gguf_info
from lokal.store.gguf_info import check_gguf_magic, format_parameter_count, read_gguf_info
from lokal.store.info import InfoCache
from lokal.store.layout import StoreLayout


def test_reads_the_fields_lokal_needs(make_gguf) -> None:
    info = read_gguf_info(make_gguf())
    assert info.architecture == "llama"
    assert info.name == "Tiny Test Model"
    assert info.context_length == 2048
    assert info.embedding_length == 64
    assert info.block_count == 2
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert (info.key_length, info.value_length) == (16, 16)  # embedding / heads when not given
    assert info.vocab_size == 100  # from the (long, omitted) token array
    assert info.quantization == "Q4_0"
    assert info.parameter_count == 100 * 8 + 8
    assert info.parameters == "0.8K"
    assert info.license == "apache-2.0"
    assert info.chat_template and "add_generation_prompt" in info.chat_template
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.tensor_count == 2
    assert "tokenizer.ggml.tokens" not in info.metadata  # large arrays omitted
    assert info.metadata["llama.context_length"] == 2048
    json.dumps(info.to_json())  # the cache entry is plain JSON


def test_fast_reader_matches_gguf_reader(make_gguf) -> None:
    path = make_gguf(vocab_size=300)
    assert gguf_info._parse_header(path) == gguf_info._parse_with_reader(path)


def test_falls_back_to_gguf_reader(make_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_gguf()

    def broken(_path: Path):
        raise ValueError("pretend this is GGUF v1")

    monkeypatch.setattr(gguf_info, "_parse_header", broken)
    assert read_gguf_info(path).context_length == 2048


def test_quantization_without_file_type_is_guessed_from_tensors(make_gguf) -> None:
    assert read_gguf_info(make_gguf(file_type=None)).quantization == "F32"


def test_size_label_wins_over_count(make_gguf) -> None:
    import gguf

    path = make_gguf()
    # rewrite with a size label
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_size_label("135M")
    writer.add_tensor("w", __import__("numpy").zeros(4, dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_gguf_info(path).parameters == "135M"


@pytest.mark.parametrize(
    ("count", "label"),
    [(134_515_008, "135M"), (1_235_814_400, "1.2B"), (3_212_749_888, "3.2B"), (268_098_176, "268M"),
     (7_241_732_096, "7.2B"), (22_000_000, "22M"), (5_000, "5.0K"), (808, "0.8K")],
)  # fmt: skip
def test_format_parameter_count(count: int, label: str) -> None:
    import gguf.utility

    assert format_parameter_count(count) == label
    assert label == gguf.utility.model_weight_count_rounded_notation(count)


def test_not_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(InvalidModelFile, match="not a GGUF model"):
        check_gguf_magic(bad)
    with pytest.raises(InvalidModelFile, match="no such file"):
        check_gguf_magic(tmp_path / "missing.gguf")
    with pytest.raises(InvalidModelFile, match="not a file"):
        check_gguf_magic(tmp_path)


def test_truncated_gguf_is_invalid(make_gguf, tmp_path: Path) -> None:
    data = make_gguf().read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:40])
    with pytest.raises(InvalidModelFile, match="not a readable GGUF"):
        read_gguf_info(cut)


def test_info_cache_is_written_once_and_reused(make_gguf, tmp_path: Path, monkeypatch) -> None:
    from lokal.store.blobs import hash_file

    path = make_gguf()
    digest = hash_file(path)
    layout = StoreLayout(tmp_path / "home")
    first = InfoCache(layout).get(digest, path)
    assert layout.info_path(digest).is_file()

    def boom(_path: Path):
        raise AssertionError("should have used the cache")

    monkeypatch.setattr("lokal.store.info.read_gguf_info", boom)
    assert InfoCache(layout).get(digest, path) == first  # a new process-level cache reads the JSON


def test_real_bundled_model_header() -> None:
    from lokal.store.sources.bundled import _locate_smollm2

    info = read_gguf_info(_locate_smollm2().parts[0])
    assert (info.architecture, info.parameters, info.quantization) == ("llama", "135M", "Q4_1")
    assert (info.context_length, info.embedding_length, info.block_count) == (8192, 576, 30)
    assert (info.head_count, info.head_count_kv, info.vocab_size) == (9, 3, 49152)
    assert info.license == "apache-2.0" and info.chat_template
