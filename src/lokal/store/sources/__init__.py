"""Where model weights come from. Each source turns a reference into a `Fetched` (local file(s) to import) or a
`FetchedFolder` (a transformers checkpoint folder to point at).

Sources never write into lokal's store themselves; `ModelStore.pull` imports what they return (link or
copy, verify, then manifest; for a folder only the manifest), so the atomicity and locking rules live in one
place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lokal.store.types import Source


@dataclasses.dataclass(frozen=True)
class Fetched:
    """Local bytes ready to import, and where they came from."""

    parts: tuple[Path, ...]  # one file, or chunks to concatenate in order
    source: Source
    origin: str
    expected_digest: str | None = None  # verified before the blob is placed, when the source publishes one
    link: bool = True  # hardlink allowed (the original is never rewritten in place)
    license: str | None = None


@dataclasses.dataclass(frozen=True)
class FetchedFolder:
    """A checkpoint folder (config.json + *.safetensors) that stays where it is: lokal records only its path.

    Why not copy it into the store: checkpoints are large, live in places their owners manage (the HF cache,
    a training run's output, a Python package) and transformers loads them from a folder anyway; copying would
    double the disk use for nothing. The price: the model breaks if the folder moves, and lokal says so.
    """

    path: Path  # absolute and resolved
    source: Source
    origin: str
    license: str | None = None
