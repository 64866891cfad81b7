"""Where model weights come from. Each source turns a reference into a `Fetched`: local file(s) to import.

Sources never write into lokal's store themselves; `ModelStore.pull` imports what they return (link or
copy, verify, then manifest), so the atomicity and locking rules live in one place.
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
