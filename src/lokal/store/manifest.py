"""lokal's manifest: one small JSON file per model name, pointing at a GGUF blob by digest.

Versioned (`schema_version`) so a later lokal can migrate or refuse, rather than misread, an older file.
Options and the system prompt are stored inline (they are a few bytes); only the weights are a blob.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal.store.fsutil import atomic_write_json
from lokal.store.layout import digest_hex

SCHEMA_VERSION = 1
SOURCES = ("bundled", "file", "huggingface", "ollama")


class ManifestError(ValueError):
    """A manifest file that cannot be read (corrupt, or written by a newer lokal)."""


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What lokal records about a model name."""

    name: str
    digest: str  # "sha256:<hex>" of the GGUF blob
    size: int
    source: str  # one of SOURCES: where the weights came from (a copy of an Ollama model says "ollama")
    origin: str  # package, file path, hf.co/ORG/REPO/FILE, or the Ollama model it was copied from
    created_at: datetime
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    license: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "model": {"digest": self.digest, "size": self.size, "format": "gguf"},
            "source": self.source,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
            "params": dict(self.params),
            "system": self.system,
            "template": self.template,
            "license": self.license,
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError("manifest is not a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {version!r} is not supported (this lokal reads {SCHEMA_VERSION}); "
                "upgrade lokal or pull the model again"
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
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"manifest is malformed: {exc}") from None


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
