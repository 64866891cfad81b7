"""Copies of a GGUF file with another chat template, for tests of how lokal reads templates (tool formats,
thinking) on the bundled model's real weights: gguf's own `copy_with_new_metadata`, tensors as they are."""

from __future__ import annotations

from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata


def with_template(source: Path, target: Path, template: str) -> Path:
    """A copy of `source` at `target` whose `tokenizer.chat_template` is `template`."""
    reader = gguf.GGUFReader(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer = gguf.GGUFWriter(target, arch=arch.contents(), endianess=reader.endianess)
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, [])
    return target
