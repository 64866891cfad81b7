"""The saved shape of `lokal cache` and `lokal cache prune --json`: versioned pydantic models, rendered later.

Sizes are bytes of file content (`st_size`), the unit `ollama list` and `hf cache ls` use, not allocated blocks.
"Logical" adds every model's own size; "physical" counts each inode once, so bytes hardlinked between stores or
shared by several names are not counted twice.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field

from lokal.errors import LokalError
from lokal.results import Frozen, Result, read_result

SCHEMA_VERSION: Final = 1

CacheSource = Literal["hf", "lokal", "ollama"]
SOURCES: tuple[CacheSource, ...] = ("hf", "lokal", "ollama")
SOURCE_LABELS: dict[str, str] = {
    "hf": "Hugging Face cache",
    "lokal": "lokal store",
    "ollama": "Ollama store (read-only)",
}
#: model: a named model (an HF repo, a lokal name, an Ollama name); incomplete: a partial download or a temp file
#: left by an interrupted write; unreferenced: a lokal blob no manifest uses any more.
EntryKind = Literal["model", "incomplete", "unreferenced"]


class CacheError(LokalError, ValueError):
    """Bad `lokal cache` input: an unknown model, an unreadable saved report, a prune that selects nothing."""

    status_code = 400


class CacheEntry(Frozen):
    """One model (or leftover file) in one store."""

    source: CacheSource
    kind: EntryKind = "model"
    name: str = Field(description="HF repo id, lokal or Ollama model name, or the leftover file's name")
    size_bytes: int = Field(description="every file this entry uses, each inode once (logical size)")
    shared_bytes: int = Field(0, description="part of size_bytes also used by another entry or linked elsewhere")
    shared_with: list[str] = Field(default_factory=list, description="who else holds those bytes")
    last_used: datetime | None = Field(None, description="newest access time of its files (relatime: ~1 day)")
    modified: datetime | None = None
    path: str
    read_only: bool = False
    detail: str = ""

    @property
    def unique_bytes(self) -> int:
        """Bytes that are this entry's alone: what deleting only it would free."""
        return self.size_bytes - self.shared_bytes


class SourceTotal(Frozen):
    source: CacheSource
    root: str
    exists: bool
    models: int = 0
    logical_bytes: int = 0
    physical_bytes: int = 0
    incomplete_bytes: int = 0
    #: Physical bytes also hardlinked from outside the scanned stores (the installed wheel, an imported file):
    #: deleting them here frees nothing.
    linked_elsewhere_bytes: int = 0


class CacheReport(Result):
    """`lokal cache --json`: every entry, totals per source and overall, and the scan's warnings."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["cache"] = "cache"
    lokal_version: str
    created_at: datetime
    entries: list[CacheEntry]
    sources: list[SourceTotal]
    logical_bytes: int
    physical_bytes: int
    linked_elsewhere_bytes: int = 0
    warnings: list[str] = Field(default_factory=list)

    def models(self) -> list[CacheEntry]:
        return [e for e in self.entries if e.kind == "model"]

    def total(self, source: str) -> SourceTotal | None:
        return next((t for t in self.sources if t.source == source), None)


class PruneItem(Frozen):
    """One thing a prune deletes or keeps, and why."""

    source: CacheSource
    kind: EntryKind
    name: str
    path: str
    size_bytes: int
    frees_bytes: int = Field(0, description="bytes this item frees (each freed inode attributed to one item)")
    reason: str = ""
    note: str = Field("", description="e.g. a blob that stays because another model still uses it")


class PrunePlan(Result):
    """What `lokal cache prune` would do. Nothing is deleted until it is executed with `--yes`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["cache-prune"] = "cache-prune"
    created_at: datetime
    criteria: dict[str, Any]
    delete: list[PruneItem]
    keep: list[PruneItem] = Field(default_factory=list, description="selected but kept (read-only, in use...)")
    frees_bytes: int = Field(description="physical bytes freed: inodes whose every link is deleted")
    hf_expected_freed_bytes: int | None = Field(
        None, description="huggingface_hub's own estimate for the HF part (logical; knows no hardlinks)"
    )
    executed: bool = False
    notes: list[str] = Field(default_factory=list)


def load_report(path: str | os.PathLike[str]) -> CacheReport:
    """Read a saved `lokal cache --json` report (for `lokal report`), naming the file and the problem."""
    return read_result(path, CacheReport, kind="cache", noun="cache report", version=SCHEMA_VERSION, error=CacheError)
