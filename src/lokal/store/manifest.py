"""lokal's manifest: one small JSON file per model name, pointing at a GGUF blob by digest, or at a
transformers checkpoint folder outside the store by path.

Versioned (`schema_version`) so a later lokal can migrate or refuse, rather than misread, an older file.
Options and the system prompt are stored inline (they are a few bytes); only the weights are a blob.

Versions: a blob manifest is still written as version 1 (an older lokal reads it as before; it ignores the
optional `engine` key). A folder manifest (`model.path`) is written as version 2, because a lokal that predates
folders would misread it as a blob reference whose blob is missing; version 2 makes it refuse cleanly ("upgrade
lokal") instead. This lokal reads both.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal.engine_specs import ENGINES
from lokal.store.fsutil import atomic_write_json
from lokal.store.layout import digest_hex
from lokal.store.types import Source

SCHEMA_VERSION = 1  # a GGUF blob manifest
FOLDER_SCHEMA_VERSION = 2  # a manifest that points at an external checkpoint folder
READABLE_VERSIONS = (SCHEMA_VERSION, FOLDER_SCHEMA_VERSION)
SOURCES = ("bundled", "file", "huggingface", "ollama", "upload")
FORMATS = ("gguf", "safetensors")


class ManifestError(ValueError):
    """A manifest file that cannot be read (corrupt, or written by a newer lokal)."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What lokal records about a model name."""

    name: str
    digest: str  # "sha256:<hex>" of the GGUF blob, or of the folder's state when it was recorded
    size: int
    source: Source  # one of SOURCES: where the weights came from (a copy of an Ollama model says "ollama")
    origin: str  # package, file path, hf.co/ORG/REPO/FILE, or the Ollama model it was copied from
    created_at: datetime
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    license: str | None = None
    #: Turns every chat starts with (Ollama's MESSAGE lines), each {"role", "content"}.
    messages: tuple[Mapping[str, Any], ...] = ()
    #: An external checkpoint folder (absolute): never copied, never garbage-collected; `lokal rm` removes
    #: only this manifest. None for a GGUF blob in the store.
    path: Path | None = None
    format: str = "gguf"  # one of FORMATS; "safetensors" exactly when `path` is set
    engine: str | None = None  # the engine this name remembers (one of ENGINES); None: the default

    def to_json(self) -> dict[str, Any]:
        model: dict[str, Any] = {"digest": self.digest, "size": self.size, "format": self.format}
        if self.path is not None:
            model["path"] = str(self.path)
        return {
            "schema_version": FOLDER_SCHEMA_VERSION if self.path is not None else SCHEMA_VERSION,
            "name": self.name,
            "model": model,
            "engine": self.engine,
            "source": self.source,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
            "params": dict(self.params),
            "system": self.system,
            "template": self.template,
            "license": self.license,
            "messages": [dict(m) for m in self.messages],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a JSON object")
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise ManifestError(
                f"manifest schema_version {version!r} is not supported (this lokal reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade lokal or pull the model again"
            )
        try:
            model = data["model"]
            digest = f"sha256:{digest_hex(model['digest'])}"
            size = int(model["size"])
            created = datetime.fromisoformat(data["created_at"])
            source = data["source"]
            if source not in SOURCES:
                raise ManifestError(f"unknown source {source!r}")
            params = data.get("params") or {}
            if not isinstance(params, dict):
                raise ManifestError("params is not an object")
            messages = data.get("messages") or []
            if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            ):
                raise ManifestError("messages is not a list of {role, content} objects")
            path, fmt, engine = _model_location(model, version), model.get("format") or "gguf", data.get("engine")
            if fmt not in FORMATS or (fmt == "gguf") != (path is None):
                raise ManifestError(f"format {fmt!r} does not fit its {'folder' if path else 'blob'}")
            if engine is not None and engine not in ENGINES:
                raise ManifestError(f"unknown engine {engine!r}")
            return cls(
                name=str(data["name"]),
                digest=digest,
                size=size,
                source=source,
                origin=str(data.get("origin", "")),
                created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
                params=params,
                system=data.get("system"),
                template=data.get("template"),
                license=data.get("license"),
                messages=tuple(messages),
                path=path,
                format=fmt,
                engine=engine,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"manifest is malformed: {exc}") from None


def _model_location(model: dict[str, Any], version: int) -> Path | None:
    """The folder of a version-2 manifest (absolute, required); None for a blob manifest."""
    raw = model.get("path")
    if version == SCHEMA_VERSION:
        if raw is not None:
            raise ManifestError("a version 1 manifest cannot point at a folder")
        return None
    if not isinstance(raw, str) or not Path(raw).is_absolute():
        raise ManifestError("model.path must be an absolute folder path")
    return Path(raw)


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from None
    return Manifest.from_json(data)


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Atomic: the manifest is what makes a model visible, so it must never be seen half-written."""
    atomic_write_json(path, manifest.to_json())


def now() -> datetime:
    return datetime.now(UTC)
