"""What a card says about the model itself, read from the store and the GGUF header: never from memory or
guesswork. Kept as a small frozen value so a card can be built (and tested) without loading a model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lokal.card.errors import CardError
from lokal.errors import InvalidModelName
from lokal.results import ModelRef
from lokal.store.info import ModelInfo
from lokal.store.names import canonical

#: A GGUF `general.license` that looks like a Hugging Face licence id ("apache-2.0", "llama3.1", "cc-by-4.0")
#: goes into the front matter; anything else (a licence's full text) is shown in the body only.
_LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{1,40}$")


@dataclass(frozen=True)
class ModelFacts:
    name: str  # canonical "name:tag"
    digest: str  # "sha256:<hex>" of the GGUF file
    size: int
    source: str  # bundled, file, huggingface, ollama
    architecture: str
    parameters: str  # "135M"
    parameter_count: int
    quantization: str
    context_length: int | None
    license: str | None  # as recorded (GGUF general.license, Ollama's licence layer, package terms)
    chat_template: bool
    #: Other digests the same file is known by (Ollama's manifest digest for models in Ollama's store).
    aliases: frozenset[str] = frozenset()
    #: GGUF `general.*` metadata (organization, languages, base_model..., url, description).
    general: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_info(cls, info: ModelInfo, *, manifest_digest: str | None = None) -> ModelFacts:
        general = {k.removeprefix("general."): v for k, v in info.metadata.items() if k.startswith("general.")}
        return cls(
            name=info.name,
            digest=info.digest,
            size=info.size,
            source=info.source,
            architecture=info.architecture,
            parameters=info.parameters,
            parameter_count=info.parameter_count,
            quantization=info.quantization,
            context_length=info.context_length,
            license=info.license,
            chat_template=bool(info.chat_template),
            aliases=frozenset({manifest_digest} if manifest_digest else ()),
            general=general,
        )

    @property
    def license_id(self) -> str | None:
        """The recorded licence when it is an id fit for the front matter, else None."""
        text = (self.license or "").strip().lower()
        return text if _LICENSE_ID.match(text) else None

    def gguf(self, key: str) -> Any:
        """A `general.<key>` value, or None."""
        value = self.general.get(key)
        return value if value not in ("", [], None) else None

    def base_models(self) -> list[str]:
        """Base models named in the GGUF (`general.base_model.N.*`): repo id or name, as written there."""
        count = self.gguf("base_model.count") or 0
        found = []
        for i in range(int(count) if isinstance(count, int) else 0):
            org, name = self.gguf(f"base_model.{i}.organization"), self.gguf(f"base_model.{i}.name")
            repo = self.gguf(f"base_model.{i}.repo_url")
            label = f"{org}/{name}" if org and name else name or repo
            if label:
                found.append(str(label))
        return found

    def is_same(self, ref: ModelRef, where: str, *, strict: bool, warnings: list[str]) -> bool:
        """Whether a result's model reference is this model.

        A result for the same name but another file (a re-pulled or rebuilt model) describes different
        weights: with `strict` (the result was measured in-process, where the digest is the GGUF's own) that
        raises; over a server the digest may be the server's manifest digest, so it is only a warning."""
        digests = {self.digest, *self.aliases}
        if ref.digest and ref.digest in digests:
            return True
        try:
            same_name = canonical(ref.name) == self.name
        except InvalidModelName:
            same_name = ref.name == self.name
        if same_name and ref.digest:
            message = (
                f"{where} measured {ref.name} with digest {ref.digest[:19]}…, but {self.name} is {self.digest[:19]}…"
            )
            if strict:
                raise CardError(f"{message}: the result is for another file; measure the model again")
            warnings.append(f"{message} (a server's digest may name its manifest, not the GGUF file)")
        return same_name
