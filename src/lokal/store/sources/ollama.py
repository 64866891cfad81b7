"""Models the user already pulled with Ollama (`OLLAMA_MODELS`, default ~/.ollama/models), read-only.

Why read-only: Ollama owns that directory (it prunes unused blobs at start-up and its layout is private),
so lokal only reads manifests and opens blobs; it never creates, renames or deletes anything there.
The listing digest is Ollama's: the sha256 of the manifest file, so IDs match `ollama list`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal.store.layout import OllamaLayout, digest_hex
from lokal.store.names import ModelName

MODEL = "application/vnd.ollama.image.model"
PARAMS = "application/vnd.ollama.image.params"
SYSTEM = "application/vnd.ollama.image.system"
LICENSE = "application/vnd.ollama.image.license"
_MAX_TEXT_LAYER = 1 << 20  # params/system/license layers are small; refuse to slurp anything huge


class OllamaEntryError(ValueError):
    """An Ollama manifest lokal cannot use (not GGUF, blob missing, malformed)."""


@dataclasses.dataclass(frozen=True)
class OllamaEntry:
    name: ModelName
    manifest_path: Path
    manifest_digest: str  # sha256 of the manifest file, as `ollama list` shows it
    model_digest: str  # the GGUF layer's digest
    model_path: Path
    size: int  # the GGUF layer's size
    modified_at: datetime
    params: dict[str, Any]
    system: str | None
    license: str | None
    config: dict[str, Any]


class OllamaStore:
    def __init__(self, root: Path) -> None:
        self.layout = OllamaLayout(root)

    def _read_layer(self, layer: dict[str, Any]) -> str:
        path = self.layout.blob_path(layer["digest"])
        if path.stat().st_size > _MAX_TEXT_LAYER:
            raise OllamaEntryError(f"layer {layer['mediaType']} is unexpectedly large")
        return path.read_text(encoding="utf-8", errors="replace")

    def read(self, name: ModelName, path: Path) -> OllamaEntry:
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
            layers = manifest["layers"]
            models = [layer for layer in layers if layer.get("mediaType") == MODEL]
            if not models:
                raise OllamaEntryError("it has no GGUF model layer (not a GGUF model)")
            model = models[0]
            blob = self.layout.blob_path(model["digest"])
            if not blob.is_file():
                raise OllamaEntryError(f"its model blob {blob.name} is missing")
            params: dict[str, Any] = {}
            system = None
            licenses: list[str] = []
            for layer in layers:
                kind = layer.get("mediaType")
                if kind == PARAMS:
                    loaded = json.loads(self._read_layer(layer))
                    params = loaded if isinstance(loaded, dict) else {}
                elif kind == SYSTEM:
                    system = self._read_layer(layer)
                elif kind == LICENSE:
                    licenses.append(self._read_layer(layer))
            config: dict[str, Any] = {}
            config_ref = manifest.get("config") or {}
            if config_ref.get("digest"):
                config_path = self.layout.blob_path(config_ref["digest"])
                if config_path.is_file() and config_path.stat().st_size <= _MAX_TEXT_LAYER:
                    loaded = json.loads(config_path.read_text(encoding="utf-8"))
                    config = loaded if isinstance(loaded, dict) else {}
        except OllamaEntryError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OllamaEntryError(f"cannot read it: {exc}") from None
        return OllamaEntry(
            name=name,
            manifest_path=path,
            manifest_digest=f"sha256:{hashlib.sha256(raw).hexdigest()}",
            model_digest=f"sha256:{digest_hex(model['digest'])}",
            model_path=blob,
            size=blob.stat().st_size,
            modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            params=params,
            system=system,
            license="\n\n".join(licenses) or None,
            config=config,
        )

    def entries(self, warnings: list[str] | None = None) -> list[OllamaEntry]:
        """Every usable GGUF model in Ollama's store; unusable ones become warnings."""
        found = []
        for name, path in self.layout.iter_manifests():
            try:
                found.append(self.read(name, path))
            except OllamaEntryError as exc:
                if warnings is not None:
                    warnings.append(f"skipping Ollama model {name}: {exc}")
        return found

    def find(self, name: ModelName) -> OllamaEntry | None:
        """The entry for `name`, or None. Raises `OllamaEntryError` if it exists but cannot be used."""
        direct = self.layout.manifest_path(name)
        if direct.is_file():
            return self.read(name, direct)
        # Case differences (Ollama keeps the case of hf.co tags such as Q4_K_M): scan.
        for candidate, path in self.layout.iter_manifests():
            if candidate == name:
                return self.read(candidate, path)
        return None

    def names(self) -> list[str]:
        return [str(name) for name, _ in self.layout.iter_manifests()]
