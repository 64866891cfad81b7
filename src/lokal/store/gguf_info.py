"""GGUF metadata: architecture, size, quantization, context, attention shape, chat template, licence.

Why not only `gguf.GGUFReader`: it decodes every element of every array (the tokenizer's vocabulary and
merges, about 100k strings for SmolLM2), which takes about 3 s per file. The header is all we need, so
`_parse_header` walks it with `struct` over an mmap and skips large arrays by length (~50 ms for the same
file). The layout is GGUF v2/v3 as specified by ggml (little-endian); anything else (v1, big-endian, a
value type we do not know) falls back to `gguf.GGUFReader`, which stays the reference implementation:
the unit tests check both agree. Parsed results are cached per blob digest by the store (`InfoCache`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import struct
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lokal.errors import InvalidModelFile

GGUF_MAGIC = b"GGUF"
#: Arrays up to this many elements are kept in `metadata`; longer ones (vocabularies) only count.
MAX_KEPT_ARRAY = 64
#: Bump when `GGUFInfo` changes, so stale cache entries are re-parsed instead of misread.
INFO_VERSION = 1

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclasses.dataclass(frozen=True)
class GGUFInfo:
    """What lokal reads from a GGUF header. Missing keys are None (older or unusual converters)."""

    architecture: str
    parameter_count: int
    parameters: str  # "135M", "1.2B": general.size_label when present, else from parameter_count
    quantization: str  # "Q4_1", "Q4_K_M", "F16"
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None  # per-layer arrays are reduced to their maximum (a safe over-estimate)
    key_length: int | None
    value_length: int | None
    vocab_size: int | None
    chat_template: str | None
    license: str | None
    name: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    file_type: int | None
    tensor_count: int
    version: int
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["metadata"] = dict(self.metadata)
        return {"info_version": INFO_VERSION, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GGUFInfo:
        if data.get("info_version") != INFO_VERSION:
            raise ValueError("stale GGUF info cache entry")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def format_parameter_count(count: int, min_digits: int = 2) -> str:
    """Format a parameter count as "135M", "1.2B" (gguf's `model_weight_count_rounded_notation` rounding)."""
    scale, suffix = next(
        ((s, x) for limit, s, x in ((1e12, 1e-12, "T"), (1e9, 1e-9, "B"), (1e6, 1e-6, "M")) if count > limit),
        (1e-3, "K"),
    )
    scaled = count * scale
    decimals = max(min_digits - len(str(round(scaled)).lstrip("0")), 0)
    return f"{scaled:.{decimals}f}{suffix}"


def check_gguf_magic(path: Path) -> None:
    """Raise `InvalidModelFile` unless `path` is a readable file that starts with the GGUF magic."""
    if not path.exists():
        raise InvalidModelFile(f"no such file: {path}")
    if not path.is_file():
        raise InvalidModelFile(f"{path} is not a file")
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InvalidModelFile(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != GGUF_MAGIC:
        raise InvalidModelFile(
            f"{path} is not a GGUF model (it starts with {head!r}, a GGUF file starts with b'GGUF'); "
            "lokal runs GGUF files: download a .gguf or convert with llama.cpp's convert_hf_to_gguf.py"
        )


class _Cursor:
    """Little-endian reads over a memory map; raises ValueError on anything out of bounds."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError("truncated GGUF header")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated GGUF header")
        self.pos += n

    def string(self) -> str:
        n = self.unpack("<Q")
        start = self.pos
        self.skip(n)
        return bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> tuple[Any, int | None]:
        """(value, None), or (None, length) for an array too long to keep."""
        if vtype == _STRING:
            return self.string(), None
        if vtype != _ARRAY:
            if vtype not in _SCALARS:
                raise ValueError(f"unknown GGUF value type {vtype}")
            return self.unpack(_SCALARS[vtype]), None
        etype, count = self.unpack("<I"), self.unpack("<Q")
        if count <= MAX_KEPT_ARRAY:
            return [self.value(etype)[0] for _ in range(count)], None
        if etype == _STRING:
            for _ in range(count):
                self.skip(self.unpack("<Q"))
        elif etype in _SCALARS:
            self.skip(count * struct.calcsize(_SCALARS[etype]))
        else:
            for _ in range(count):
                self.value(etype)
        return None, count


def _parse_header(path: Path) -> tuple[int, dict[str, Any], dict[str, int], list[tuple[int, int]]]:
    """(version, small KVs, lengths of large arrays, [(ggml_type, n_elements)] per tensor)."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        if bytes(buf[:4]) != GGUF_MAGIC:
            raise ValueError("not a GGUF file")
        cur.skip(4)
        version = cur.unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not handled by the fast reader")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        kv: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for _ in range(n_kv):
            key = cur.string()
            value, length = cur.value(cur.unpack("<I"))
            if length is None:
                kv[key] = value
            else:
                lengths[key] = length
        tensors = []
        for _ in range(n_tensors):
            cur.string()  # tensor name
            n_dims = cur.unpack("<I")
            if n_dims > 8:
                raise ValueError("implausible tensor rank")
            dims = [cur.unpack("<Q") for _ in range(n_dims)]
            ggml_type = cur.unpack("<I")
            cur.unpack("<Q")  # data offset
            tensors.append((ggml_type, math.prod(dims)))
        return version, kv, lengths, tensors


def _parse_with_reader(path: Path) -> tuple[int, dict[str, Any], dict[str, int], list[tuple[int, int]]]:
    """The same result through `gguf.GGUFReader` (slow on big vocabularies, but handles every variant)."""
    import gguf

    reader = gguf.GGUFReader(path)
    kv: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    version = 3
    for key, field in reader.fields.items():
        if key == "GGUF.version":
            version = int(field.contents())
        if key.startswith("GGUF."):
            continue
        if field.types and field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > MAX_KEPT_ARRAY:
            lengths[key] = len(field.data)
        else:
            kv[key] = field.contents()
    tensors = [(int(t.tensor_type), int(t.n_elements)) for t in reader.tensors]
    return version, kv, lengths, tensors


def _int(value: Any) -> int | None:
    if isinstance(value, list):
        value = max(value) if value else None  # per-layer values (e.g. OpenELM head counts)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _quantization(file_type: int | None, tensors: list[tuple[int, int]]) -> str:
    import gguf

    if file_type is not None:
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No (or an unknown) file_type: name it after the type holding most of the weights.
    counts: Counter[int] = Counter()
    for ggml_type, n in tensors:
        counts[ggml_type] += n
    if not counts:
        return "unknown"
    try:
        return gguf.GGMLQuantizationType(counts.most_common(1)[0][0]).name
    except ValueError:
        return "unknown"


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header of a GGUF file. Raises `InvalidModelFile` if it is not one."""
    check_gguf_magic(path)
    try:
        version, kv, lengths, tensors = _parse_header(path)
    except (ValueError, OSError, struct.error):
        try:
            version, kv, lengths, tensors = _parse_with_reader(path)
        except Exception as exc:
            raise InvalidModelFile(f"{path} is not a readable GGUF file: {exc}") from None
    arch = str(kv.get("general.architecture", "") or "")

    def arch_key(suffix: str) -> Any:
        return kv.get(f"{arch}.{suffix}")

    head_count = _int(arch_key("attention.head_count"))
    embedding = _int(arch_key("embedding_length"))
    head_dim = embedding // head_count if embedding and head_count else None
    key_length = _int(arch_key("attention.key_length")) or head_dim
    vocab = _int(arch_key("vocab_size")) or lengths.get("tokenizer.ggml.tokens")
    if vocab is None and isinstance(kv.get("tokenizer.ggml.tokens"), list):
        vocab = len(kv["tokenizer.ggml.tokens"])
    count = sum(n for _, n in tensors)
    size_label = kv.get("general.size_label")
    file_type = _int(kv.get("general.file_type"))
    template = kv.get("tokenizer.chat_template")
    return GGUFInfo(
        architecture=arch,
        parameter_count=count,
        parameters=str(size_label) if size_label else format_parameter_count(count),
        quantization=_quantization(file_type, tensors),
        context_length=_int(arch_key("context_length")),
        embedding_length=embedding,
        block_count=_int(arch_key("block_count")),
        head_count=head_count,
        head_count_kv=_int(arch_key("attention.head_count_kv")) or head_count,
        key_length=key_length,
        value_length=_int(arch_key("attention.value_length")) or key_length,
        vocab_size=vocab,
        chat_template=template if isinstance(template, str) and template else None,
        license=str(kv["general.license"]) if kv.get("general.license") else None,
        name=str(kv["general.name"]) if kv.get("general.name") else None,
        bos_token_id=_int(kv.get("tokenizer.ggml.bos_token_id")),
        eos_token_id=_int(kv.get("tokenizer.ggml.eos_token_id")),
        file_type=file_type,
        tensor_count=len(tensors),
        version=version,
        metadata={k: v for k, v in kv.items() if _is_simple(v)},
    )


def _is_simple(value: Any) -> bool:
    """JSON-safe and small: what `show` prints as metadata (Ollama's non-verbose `model_info`)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str | int | bool):
        return True
    return isinstance(value, list) and all(_is_simple(v) and not isinstance(v, list) for v in value)


def load_cached_info(cache_file: Path) -> GGUFInfo | None:
    try:
        return GGUFInfo.from_json(json.loads(cache_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
