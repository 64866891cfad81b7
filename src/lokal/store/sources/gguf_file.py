"""A GGUF file the user already has: `lokal pull ./model.gguf --name mymodel`.

The file is copied, not hardlinked: tools such as llama.cpp's `llama-quantize` rewrite an existing output
file in place (same inode), which would silently change a hardlinked blob under its digest.
"""

from __future__ import annotations

from pathlib import Path

from lokal.store.gguf_info import check_gguf_magic
from lokal.store.names import sanitise
from lokal.store.sources import Fetched


def looks_like_path_text(ref: str) -> bool:
    """True for references whose text reads as a file path (no disk access: safe on a client's input)."""
    text = ref.strip()
    return text.lower().endswith(".gguf") or text.startswith(("/", "./", "../", "~", "\\"))


def looks_like_path(ref: str) -> bool:
    """True for references that should be read as a file path rather than a model name (the CLI's rule: it
    also asks the disk whether a file of that name exists)."""
    return looks_like_path_text(ref) or Path(ref.strip()).expanduser().is_file()


def default_name(path: Path) -> str:
    """`SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct.q4_1` (tag defaults to latest)."""
    stem = path.name[: -len(".gguf")] if path.name.lower().endswith(".gguf") else path.stem
    return sanitise(stem)


def fetch_file(ref: str) -> tuple[Fetched, str]:
    """Validate a GGUF path; return what to import and the model name it defaults to."""
    path = Path(ref.strip()).expanduser()
    check_gguf_magic(path)
    path = path.resolve()
    return Fetched(parts=(path,), source="file", origin=str(path), link=False), default_name(path)
