"""Transformers checkpoint folders (config.json + *.safetensors + tokenizer files): identity, size and details.

A folder model is never copied into lokal's store: a manifest points at the folder (a local checkpoint, an HF
cache snapshot, or the bundled all-MiniLM package directory), and everything here only reads it.

Why lokal parses safetensors headers itself instead of calling the `safetensors` package: that package is not
a core dependency (it comes with the `hf` extra, through transformers), and `lokal list` / `lokal show` must
describe a folder model in the core install too. The header is specified as an 8-byte little-endian length and
then that many bytes of JSON (`{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}`), so reading
it is one `struct.unpack` and one `json.loads`; the unit tests check the result against `safetensors.safe_open`.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import struct
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lokal.errors import InvalidModelFile
from lokal.store.gguf_info import format_parameter_count
from lokal.store.names import sanitise
from lokal.store.sources import FetchedFolder

CONFIG_FILE = "config.json"
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MODULES_FILE = "modules.json"  # sentence-transformers: the pipeline (transformer, pooling, normalize...)
#: safetensors refuses headers above 100 MB; so do we (a corrupt length must not make us read gigabytes).
MAX_HEADER_BYTES = 100_000_000
_CONFIG_MAX_BYTES = 10_000_000
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)

#: config.json keys that mean the same thing across architectures, most common first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HEAD_KEYS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
_KV_HEAD_KEYS = ("num_key_value_heads", "n_kv_heads", "num_kv_heads")


# --- the folder's files, identity and size ---------------------------------------------------------------------


def folder_files(folder: Path) -> list[Path]:
    """Every regular file under `folder` (symlinks to files followed, as HF snapshots are made of them), sorted.

    Hidden names are skipped at any depth: `.gitattributes`, and the `.cache/huggingface/` bookkeeping that
    `hf download --local-dir` leaves, are not part of the model.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def folder_digest(folder: Path) -> tuple[str, int]:
    """`("sha256:<hex>", total bytes)` identifying the folder's current state.

    The digest is the sha256 of the sorted `(relative path, size, mtime_ns)` of its files, one line each: the
    identity of what is on disk now, not a hash of the contents (hashing gigabytes at every `lokal list` is not
    affordable). Any file added, removed, resized or rewritten changes it; a byte-identical copy elsewhere has a
    different mtime and so a different digest. Files are stat'ed through symlinks.
    """
    hasher = hashlib.sha256()
    total = 0
    for path in folder_files(folder):
        st = path.stat()
        total += st.st_size
        rel = path.relative_to(folder).as_posix()
        hasher.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"sha256:{hasher.hexdigest()}", total


# --- what a checkpoint is ---------------------------------------------------------------------------------------


def is_sentence_transformers(path: Path) -> bool:
    """True for a sentence-transformers folder (`modules.json` present): an embedding model, not a generator.

    The transformers engine loads such a folder with `sentence_transformers.SentenceTransformer` so that its
    pooling and normalisation modules apply; generate/chat on it are `Unsupported`.
    """
    return (Path(path) / MODULES_FILE).is_file()


def looks_like_checkpoint(path: Path) -> bool:
    """A directory with a config.json: what `lokal pull PATH` treats as a checkpoint folder (checked fully later)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > _CONFIG_MAX_BYTES:
            raise InvalidModelFile(f"{path} is too large for a {what}")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelFile(f"cannot read the {what} {path}: {exc}") from None


def _module_paths(modules: object) -> list[str]:
    """Sub-folders of a sentence-transformers pipeline (`1_Pooling`, `2_Dense`...); the transformer is ""."""
    if not isinstance(modules, list):
        return []
    return [str(m["path"]) for m in modules if isinstance(m, dict) and isinstance(m.get("path"), str) and m["path"]]


def select_weight_files(present: Collection[str], index: object, modules: object = None) -> list[str]:
    """The safetensors files that hold a checkpoint's weights, as paths relative to its folder (pure).

    `present` is what the folder (or the hub repository) holds. With a shard index, exactly the shards it
    names (some repositories also carry a `consolidated.safetensors` copy that must not be counted twice);
    else `model.safetensors`; else every top-level `*.safetensors`. Sentence-transformers modules with their
    own weights (`2_Dense/model.safetensors`) are added. Files the index names may be missing from `present`:
    the caller decides whether that is an incomplete folder or files still to download. `index` and `modules`
    are the parsed JSON files (None when absent), checked here.
    """
    if index is not None:
        weight_map = index.get("weight_map") if isinstance(index, Mapping) else None
        if not isinstance(weight_map, Mapping) or not weight_map:
            raise InvalidModelFile(f"{INDEX_FILE} has no weight_map")
        main = sorted({str(v) for v in weight_map.values()})
    elif SINGLE_FILE in present:
        main = [SINGLE_FILE]
    else:
        main = sorted(n for n in present if "/" not in n and n.endswith(".safetensors"))
    extra = [f"{p}/{SINGLE_FILE}" for p in _module_paths(modules) if f"{p}/{SINGLE_FILE}" in present]
    return main + [e for e in extra if e not in main]


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder; `InvalidModelFile` when there are none or shards are missing."""
    present = {p.relative_to(folder).as_posix() for p in folder_files(folder)}
    index = _read_json(folder / INDEX_FILE, "shard index") if INDEX_FILE in present else None
    modules = _read_json(folder / MODULES_FILE, "modules.json") if MODULES_FILE in present else None
    names = select_weight_files(present, index, modules)
    if not names:
        raise InvalidModelFile(
            f"{folder} has no .safetensors weights; lokal loads transformers checkpoints in safetensors format "
            "(not pickled .bin files): save it with save_pretrained(..., safe_serialization=True), or import a GGUF"
        )
    missing = [n for n in names if n not in present]
    if missing:
        raise InvalidModelFile(
            f"{folder} is incomplete: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} missing "
            f"(named in {INDEX_FILE}); download the checkpoint again"
        )
    return [folder / n for n in names]


def check_checkpoint_folder(path: Path) -> Path:
    """Validate a checkpoint folder (config.json object, complete safetensors weights); return it resolved."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InvalidModelFile(f"no such folder: {folder}")
    folder = folder.resolve()
    if not (folder / CONFIG_FILE).is_file():
        raise InvalidModelFile(
            f"{folder} has no {CONFIG_FILE}: lokal imports a transformers checkpoint folder "
            "(config.json + *.safetensors + tokenizer files) or a GGUF file"
        )
    if not isinstance(_read_json(folder / CONFIG_FILE, "model config"), dict):
        raise InvalidModelFile(f"{folder / CONFIG_FILE} is not a JSON object")
    weight_files(folder)
    return folder


# --- safetensors headers -----------------------------------------------------------------------------------------


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file: `{tensor: {"dtype", "shape", "data_offsets"}, "__metadata__"?}`."""
    try:
        with Path(path).open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise InvalidModelFile(f"{path} is not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", prefix)
            size = os.fstat(fh.fileno()).st_size
            if length > MAX_HEADER_BYTES or length > size - 8:
                raise InvalidModelFile(f"{path} is not a safetensors file (header length {length} is impossible)")
            raw = fh.read(length)
    except OSError as exc:
        raise InvalidModelFile(f"cannot read {path}: {exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidModelFile(f"{path} is not a safetensors file (bad header: {exc})") from None
    if not isinstance(header, dict):
        raise InvalidModelFile(f"{path} is not a safetensors file (header is not a JSON object)")
    return header


def _tensors(header: Mapping[str, Any], path: Path) -> Iterator[tuple[str, int, int]]:
    """(dtype, element count, bytes) per tensor of a parsed header."""
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = [int(d) for d in entry["shape"]]
            begin, end = (int(x) for x in entry["data_offsets"])
            yield str(entry["dtype"]), math.prod(shape), end - begin
        except (KeyError, TypeError, ValueError):
            raise InvalidModelFile(f"{path}: malformed header entry for tensor {name!r}") from None


# --- details -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What lokal reads from a checkpoint folder: config.json, the safetensors headers and the tokenizer config."""

    architecture: str  # config.json model_type, "bert", "llama"
    architectures: tuple[str, ...]  # config.json architectures, ("BertModel",)
    parameter_count: int  # sum of the tensors' element counts in the weight files
    parameters: str  # formatted as GGUF size labels are: "23M", "135M", "1.2B"
    dtype: str  # the weights' dtype as safetensors names it ("F32", "BF16", "F16"): the float one with most elements
    weights_bytes: int  # tensor data bytes in the weight files
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    head_dim: int | None
    vocab_size: int | None
    chat_template: str | None
    sentence_transformers: bool
    weight_files: tuple[str, ...]  # relative to the folder
    config: Mapping[str, Any]  # config.json's scalar values (what `lokal show` reports as model_info)


def _config_value(config: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    """The first of `keys` with an integer value, looking in `text_config` too (multimodal configs nest there)."""
    text_config = config.get("text_config")
    for scope in (config, text_config if isinstance(text_config, dict) else {}):
        for key in keys:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _chat_template(folder: Path) -> str | None:
    """The chat template as transformers finds it: chat_template.jinja, chat_template.json, tokenizer_config.json."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8", errors="replace")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            value = _read_json(path, name).get("chat_template")
        except (InvalidModelFile, AttributeError):
            continue
        if isinstance(value, list):  # named templates: [{"name": "default", "template": "..."}, ...]
            named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
            value = named.get("default") or next(iter(named.values()), None)
        if isinstance(value, str) and value.strip():
            return value
    return None


def readme_license(folder: Path) -> str | None:
    """The `license:` of the model card's YAML front matter (README.md), as the hub shows it; None if absent.

    Read with PyYAML and one regex rather than `huggingface_hub.repocard.metadata_load`, which does the same
    but costs about 0.6 s of imports on a path the CLI takes on first use of a bundled model.
    """
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    import yaml

    try:
        match = _FRONT_MATTER.match(readme.read_text(encoding="utf-8", errors="replace"))
        data = yaml.safe_load(match.group(1)) if match else None
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("license") if isinstance(data, dict) else None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value) if value else None


def _weights_dtype(by_dtype: Counter[str]) -> str:
    """The floating-point dtype holding the most elements: integer tensors (BERT's position_ids) are buffers."""
    floats = Counter({k: v for k, v in by_dtype.items() if k.startswith(("F", "BF"))})
    best = (floats or by_dtype).most_common(1)
    return best[0][0] if best else ""


def _sentence_window(folder: Path) -> int | None:
    """`max_seq_length` from sentence_bert_config.json: the window a sentence-transformers model embeds."""
    path = folder / "sentence_bert_config.json"
    if not path.is_file():
        return None
    data = _read_json(path, "sentence-transformers config")
    value = data.get("max_seq_length") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_checkpoint_info(folder: Path) -> CheckpointInfo:
    """Parse config.json and every weight file's safetensors header (headers only: a few KB per file)."""
    folder = Path(folder)
    config = _read_json(folder / CONFIG_FILE, "model config")
    if not isinstance(config, dict):
        raise InvalidModelFile(f"{folder / CONFIG_FILE} is not a JSON object")
    by_dtype: Counter[str] = Counter()
    count = weights_bytes = 0
    files = weight_files(folder)
    for path in files:
        for dtype, numel, nbytes in _tensors(read_safetensors_header(path), path):
            by_dtype[dtype] += numel
            count += numel
            weights_bytes += nbytes
    hidden = _config_value(config, _HIDDEN_KEYS)
    heads = _config_value(config, _HEAD_KEYS)
    head_dim = _config_value(config, ("head_dim",)) or (hidden // heads if hidden and heads else None)
    architectures = config.get("architectures")
    context = _config_value(config, _CONTEXT_KEYS)
    sentence_transformers = is_sentence_transformers(folder)
    if sentence_transformers:  # sentence-transformers embeds at most max_seq_length tokens (256 for all-MiniLM)
        window = _sentence_window(folder)
        context = min(context, window) if context and window else context or window
    return CheckpointInfo(
        architecture=str(config.get("model_type") or ""),
        architectures=tuple(str(a) for a in architectures) if isinstance(architectures, list) else (),
        parameter_count=count,
        parameters=format_parameter_count(count) if count else "",
        dtype=_weights_dtype(by_dtype),
        weights_bytes=weights_bytes,
        context_length=context,
        embedding_length=hidden,
        block_count=_config_value(config, _LAYER_KEYS),
        head_count=heads,
        head_count_kv=_config_value(config, _KV_HEAD_KEYS) or heads,
        head_dim=head_dim,
        vocab_size=_config_value(config, ("vocab_size",)),
        chat_template=_chat_template(folder),
        sentence_transformers=sentence_transformers,
        weight_files=tuple(p.relative_to(folder).as_posix() for p in files),
        config={k: v for k, v in config.items() if isinstance(v, str | int | float | bool) or v is None},
    )


def fetch_folder(ref: str) -> tuple[FetchedFolder, str]:
    """Validate a checkpoint folder the user named; return it and the model name it defaults to (its base name)."""
    folder = check_checkpoint_folder(Path(ref.strip()))
    return FetchedFolder(path=folder, source="file", origin=str(folder)), sanitise(folder.name)
