"""Load a model for the transformers engine: a checkpoint folder, a sentence-transformers folder, or a GGUF file.

A GGUF file goes through transformers' own GGUF support (`gguf_file=`), which dequantizes every tensor to
float32. That conversion is slow in pure Python (SmolLM2-135M: ~30 s on 2 cores, most of it parsing the
tokenizer arrays and mapping tensor names), so the converted checkpoint is saved once under
`cache_dir/<GGUF digest>/` and later loads read it like any checkpoint (under 1 s). The cache entry is
written to a temporary folder and renamed into place, so an interrupted conversion never looks finished.

Nothing is fetched: every `from_pretrained` call is `local_files_only=True`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lokal.errors import InvalidModelFile
from lokal.store.layout import digest_hex
from lokal.store.types import LocalModel

log = logging.getLogger(__name__)

#: Written last into a converted checkpoint: its presence means the folder is complete.
_COMPLETE = "lokal-converted.json"


@dataclasses.dataclass
class Loaded:
    """What the engine needs from a load, plus facts for `lokal ps`/bench (`info`)."""

    kind: str  # "causal" (generates) or "sentence-transformers" (embeddings only)
    tokenizer: Any
    model: Any  # a PreTrainedModel, or a SentenceTransformer
    device: torch.device
    info: dict[str, Any]


def pick_device() -> torch.device:
    """CUDA or Apple's MPS when present, else the CPU (LOKAL_DEVICE overrides: cpu, cuda, cuda:1, mps)."""
    wanted = os.environ.get("LOKAL_DEVICE")
    if wanted:
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _dtype_for(device: torch.device) -> torch.dtype:
    """float32 on the CPU (bfloat16/float16 matmuls are slower than float32 on most CPUs), float16 elsewhere."""
    return torch.float32 if device.type == "cpu" else torch.float16


def is_sentence_transformers(folder: Path) -> bool:
    return (folder / "modules.json").is_file()


def load(model: LocalModel, *, cache_dir: Path, verbose: bool = False) -> Loaded:
    """Load `model` (see the module docstring for the three shapes)."""
    _quiet(verbose)
    device = pick_device()
    path = Path(model.path)
    if path.is_dir():
        if is_sentence_transformers(path):
            return _load_sentence_transformers(path, device)
        return _load_checkpoint(path, device, info={"source": "checkpoint"})
    if not path.is_file():
        raise InvalidModelFile(f"'{model.name}': {path} does not exist any more; pull the model again")
    converted = cache_dir / digest_hex(model.digest)
    if (converted / _COMPLETE).is_file():
        info = {"source": "gguf", "converted": "cached", "cache": str(converted)}
        return _load_checkpoint(converted, device, info=info)
    started = time.perf_counter()
    loaded = _convert_gguf(path, device)
    loaded.info.update(source="gguf", converted="now", conversion_seconds=round(time.perf_counter() - started, 2))
    with contextlib.suppress(OSError):  # a full disk costs the next load the conversion again, nothing more
        _save_converted(loaded, converted, source=path, digest=model.digest)
        loaded.info["cache"] = str(converted)
    return loaded


def _quiet(verbose: bool) -> None:
    """transformers logs a warning per odd config key and draws a bar for every load; lokal shows its own
    messages instead (the one bar kept is the GGUF conversion's, on a terminal: it takes half a minute)."""
    from transformers.utils import logging as hf_logging

    if not verbose:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _load_checkpoint(folder: Path, device: torch.device, *, info: dict[str, Any]) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _dtype_for(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidModelFile(f"transformers cannot load the checkpoint in {folder}: {_first_line(exc)}") from None
    return _ready(model, tokenizer, device, dict(info, dtype=str(dtype).removeprefix("torch.")))


def _convert_gguf(path: Path, device: torch.device) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    dtype = _dtype_for(device)
    log.info("dequantizing %s for transformers (once; the result is cached)", path.name)
    if sys.stderr.isatty():
        hf_logging.enable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype, local_files_only=True
        )
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise InvalidModelFile(
            f"transformers cannot load the GGUF file {path.name}: {_first_line(exc)} "
            "(its architecture or quantization may not be supported by transformers' GGUF reader; "
            "use --engine llamacpp)"
        ) from None
    finally:
        hf_logging.disable_progress_bar()
    return _ready(model, tokenizer, device, {"dtype": str(dtype).removeprefix("torch.")})


def _save_converted(loaded: Loaded, target: Path, *, source: Path, digest: str) -> None:
    """Write the dequantized checkpoint to a temp folder next to `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model = loaded.model
        # A GGUF-loaded model refuses save_pretrained while it carries its quantizer, though every tensor is
        # already plain float: drop the quantizer so the weights are written as an ordinary checkpoint.
        model.hf_quantizer = None
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE).write_text(json.dumps({"gguf": str(source), "digest": digest}))
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # another process finished first: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _ready(model: Any, tokenizer: Any, device: torch.device, info: dict[str, Any]) -> Loaded:
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    info.update(device=str(device), attention=getattr(model.config, "_attn_implementation", None))
    return Loaded("causal", tokenizer, model, device, info)


def _load_sentence_transformers(folder: Path, device: torch.device) -> Loaded:
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device=str(device), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidModelFile(f"sentence-transformers cannot load {folder}: {_first_line(exc)}") from None
    model.eval()
    info = {"source": "sentence-transformers", "device": str(device), "dtype": "float32"}
    return Loaded("sentence-transformers", model.tokenizer, model, device, info)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
