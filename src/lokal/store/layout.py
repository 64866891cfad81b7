"""All path arithmetic for lokal's store and for reading Ollama's store, in one place.

lokal's store (under `LOKAL_HOME`)::

    manifests/library/<name>/<tag>           plain names ("smollm2:135m")
    manifests/<namespace>/<name>/<tag>       namespaced names ("ns/name:tag")
    manifests/hf.co/<org>/<repo>/<tag>       Hugging Face names
    blobs/sha256-<64 hex>                    content-addressed GGUF files, shared between manifests
                                             (a manifest may point at a checkpoint folder outside
                                             the store instead: that folder is never touched)
    uploads/sha256-<64 hex>                  blobs a client uploaded (POST /api/blobs) that no model
                                             uses yet: /api/create moves one into blobs/, garbage
                                             collection deletes the rest
    locks/<key>.lock                         fcntl.flock lock files (never deleted: unlinking a lock is racy)
    cache/gguf-info/sha256-<hex>.json        parsed GGUF metadata, so `lokal list` does not re-parse files

Temporary files live next to their destination (same directory, so `os.replace` is atomic) and start with
`.tmp-`; every scan skips names starting with '.', so an interrupted write is never mistaken for a model.

Ollama's store (`OLLAMA_MODELS`) is `manifests/<host>/<namespace>/<name>/<tag>` plus `blobs/sha256-<hex>`;
lokal only ever reads it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from lokal.errors import InvalidModelName
from lokal.files import TEMP_PREFIX
from lokal.store.names import DEFAULT_NAMESPACE, HF_HOST, OLLAMA_HOST, ModelName, parse_name

_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")


def digest_hex(digest: str) -> str:
    """The 64 hex characters of a `sha256:<hex>` (or `sha256-<hex>`) digest; ValueError otherwise."""
    match = _DIGEST.fullmatch(digest.strip().lower()) if isinstance(digest, str) else None
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


def is_hidden(path: Path) -> bool:
    """Temp files, lock files and editor droppings: never treated as manifests or blobs."""
    return path.name.startswith(".")


def _name_from_parts(parts: tuple[str, ...]) -> ModelName | None:
    """Rebuild a name from manifest path parts; None if they do not form a valid canonical name."""
    if len(parts) == 4 and parts[0] == HF_HOST:
        text = f"{HF_HOST}/{parts[1]}/{parts[2]}:{parts[3]}"
    elif len(parts) == 3 and parts[0] != HF_HOST:
        text = f"{parts[0]}/{parts[1]}:{parts[2]}"
    else:
        return None
    try:
        name = parse_name(text, apply_aliases=False)
    except InvalidModelName:
        return None
    # Only accept paths that are exactly where this name would be written (e.g. lower case).
    return name if _name_parts(name) == parts else None


def _name_parts(name: ModelName) -> tuple[str, ...]:
    if name.is_huggingface:
        return (HF_HOST, name.namespace or "", name.model, name.tag)
    return (name.namespace or DEFAULT_NAMESPACE, name.model, name.tag)


class StoreLayout:
    """Where lokal keeps manifests, blobs, locks and caches under one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.manifests = self.home / "manifests"
        self.blobs = self.home / "blobs"
        self.uploads = self.home / "uploads"
        self.locks = self.home / "locks"
        self.info_cache = self.home / "cache" / "gguf-info"

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests.joinpath(*_name_parts(name))

    def blob_path(self, digest: str) -> Path:
        return self.blobs / f"sha256-{digest_hex(digest)}"

    def upload_path(self, digest: str) -> Path:
        return self.uploads / f"sha256-{digest_hex(digest)}"

    def info_path(self, digest: str) -> Path:
        return self.info_cache / f"sha256-{digest_hex(digest)}.json"

    def lock_path(self, key: str) -> Path:
        """A lock file for `key` (a model name or "store"); hashed, so any key is a safe file name."""
        label = re.sub(r"[^a-z0-9._-]", "_", key.lower())[:40]
        return self.locks / f"{label}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock"

    def iter_manifests(self) -> Iterator[tuple[ModelName, Path]]:
        """Every manifest file with a valid name, skipping temp files and anything out of place.

        os.walk, not rglob: a listing that runs while `remove` deletes a name's now-empty folders must skip
        them, not fail (rglob raised FileNotFoundError there)."""
        found: list[Path] = []
        for folder, dirs, files in os.walk(self.manifests):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(Path(folder) / f for f in files if not f.startswith("."))
        for path in sorted(found):
            name = _name_from_parts(path.relative_to(self.manifests).parts)
            if name is not None:
                yield name, path

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """(digest, path) for every finished blob; temp files are skipped."""
        return _content_addressed(self.blobs)

    def iter_uploads(self) -> Iterator[tuple[str, Path]]:
        """(digest, path) for every finished upload no model has taken yet."""
        return _content_addressed(self.uploads)

    def iter_temp_files(self) -> Iterator[Path]:
        """Leftovers of interrupted writes (only safe to delete while holding the store lock exclusively)."""
        for top in (self.blobs, self.uploads, self.manifests, self.info_cache):
            for folder, _dirs, files in os.walk(top):  # os.walk, unlike rglob, shrugs off folders removed meanwhile
                for name in files:
                    if name.startswith(TEMP_PREFIX):
                        yield Path(folder) / name


def _content_addressed(folder: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no such folder yet
        return
    for entry in entries:
        match = re.fullmatch(r"sha256-([0-9a-f]{64})", entry.name)
        if match and entry.is_file():
            yield f"sha256:{match.group(1)}", Path(entry.path)


class OllamaLayout:
    """Paths in Ollama's store. Read-only: nothing here creates or changes a file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifests = self.root / "manifests"
        self.blobs = self.root / "blobs"

    def manifest_path(self, name: ModelName) -> Path:
        host = HF_HOST if name.is_huggingface else OLLAMA_HOST
        return self.manifests / host / (name.namespace or DEFAULT_NAMESPACE) / name.model / name.tag

    def blob_path(self, digest: str) -> Path:
        return self.blobs / f"sha256-{digest_hex(digest)}"

    def iter_manifests(self) -> Iterator[tuple[ModelName, Path]]:
        """Every `<host>/<namespace>/<name>/<tag>` manifest whose name lokal can express."""
        if not self.manifests.is_dir():
            return
        for path in sorted(self.manifests.glob("*/*/*/*")):
            rel = path.relative_to(self.manifests).parts
            if any(part.startswith(".") for part in rel) or not path.is_file():
                continue
            host, namespace, model, tag = rel
            if host.lower() == HF_HOST:
                text = f"{HF_HOST}/{namespace}/{model}:{tag}"
            elif host.lower() == OLLAMA_HOST:
                text = f"{namespace}/{model}:{tag}"
            else:
                continue  # other registries: their names would be ambiguous with lokal's
            try:
                yield parse_name(text, apply_aliases=False), path
            except InvalidModelName:
                continue
