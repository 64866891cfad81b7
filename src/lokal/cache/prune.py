"""`lokal cache prune`: plan first (what goes, what it frees), delete only when the caller says so.

Safety rules, each enforced here and not left to the caller:

- Ollama's store is never written: its models can be selected only to be reported as kept, with the command
  that removes them (`ollama rm`).
- lokal's store is changed only through `ModelStore.remove` (and its garbage collection under the exclusive
  store lock), which deletes a blob only when no remaining manifest uses it; the plan predicts the same.
- The HF cache is changed only through `huggingface_hub`'s own `delete_revisions(...).execute()`, which keeps
  blobs another remaining revision still uses.
- A partial HF download modified less than `incomplete_min_age_s` ago may still be downloading: it is kept.
- A lokal name that points at a checkpoint folder outside the store is never pruned: the folder is not lokal's,
  and removing only the name frees nothing. It is reported as kept, with `lokal rm NAME` for the name.

"Frees" is physical: an inode counts only when every one of its links is deleted, so a blob that is also
hardlinked elsewhere (the bundled wheel, lokal's store importing an HF file) frees nothing and the plan says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal.cache.model import SOURCES, CacheError, PruneItem, PrunePlan
from lokal.cache.scan import CacheScan, Inode, ScannedEntry
from lokal.cache.sections import size_text
from lokal.errors import InvalidModelName, ModelNotFound
from lokal.store.names import parse_name

_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_AGE_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
#: A partial HF download touched within this many seconds may be in progress in another process.
INCOMPLETE_MIN_AGE_S = 3600.0


def parse_age(text: str) -> float:
    """`30d`, `2w`, `12h`, `90m`, `1d12h` -> seconds. Units: w(eeks), d(ays), h(ours), m(inutes), s(econds)."""
    body = text.strip().lower().replace(" ", "")
    parts = _AGE_PART.findall(body)
    if not body or not parts or "".join(n + u for n, u in parts) != body:
        raise CacheError(f"invalid age {text!r}: use a number and a unit, e.g. 30d, 2w, 12h or 1d12h")
    return sum(float(n) * _AGE_UNITS[u] for n, u in parts)


@dataclasses.dataclass(frozen=True)
class PruneCriteria:
    """What to select. Names and age narrow each other; `incomplete` adds partial downloads and leftovers."""

    names: tuple[str, ...] = ()
    older_than_s: float | None = None
    older_than: str | None = None  # as typed, for the report
    sources: tuple[str, ...] = ()  # empty: every source
    incomplete: bool = False
    incomplete_min_age_s: float = INCOMPLETE_MIN_AGE_S

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "older_than": self.older_than,
            "older_than_s": self.older_than_s,
            "sources": list(self.sources or SOURCES),
            "incomplete": self.incomplete,
            "incomplete_min_age_s": self.incomplete_min_age_s,
        }


def _hf_key(text: str) -> str:
    """What a user may type for an HF repo (`hf.co/Org/Repo:Q4`, `org/repo`) -> the lower-case repo id."""
    value = text.strip().lower()
    for prefix in ("https://huggingface.co/", "hf.co/", "huggingface.co/"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    return value.split(":", 1)[0] if not value.startswith(("dataset:", "space:")) else value


def _matches(item: ScannedEntry, name: str) -> bool:
    entry = item.entry
    if entry.kind != "model":
        return False
    if entry.source == "hf":
        return entry.name.lower() == _hf_key(name)
    try:
        canonical = str(parse_name(name))
    except InvalidModelName:
        canonical = None
    return entry.name in (canonical, name.strip().lower())


def _last_used(item: ScannedEntry) -> float | None:
    when = item.entry.last_used or item.entry.modified
    return None if when is None else when.timestamp()


def _select_models(scan: CacheScan, criteria: PruneCriteria, now: float) -> list[ScannedEntry]:
    if not criteria.names and criteria.older_than_s is None:
        return []  # --incomplete alone selects leftovers, not models
    sources = set(criteria.sources or SOURCES)
    models = [i for i in scan.items if i.entry.kind == "model"]
    for name in criteria.names:
        found = [i for i in models if _matches(i, name)]
        if not found:
            known = sorted({i.entry.name for i in models})
            close = difflib.get_close_matches(name.strip().lower(), known, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see: lokal cache)"
            raise CacheError(f"nothing in the caches matches '{name}'{hint}")
        if not any(i.entry.source in sources for i in found):
            where = ", ".join(sorted({i.entry.source for i in found}))
            raise CacheError(f"'{name}' is only in {where}, which --source {'/'.join(sorted(sources))} leaves out")
    selected = []
    for item in models:
        if item.entry.source not in sources:
            continue
        if criteria.names and not any(_matches(item, n) for n in criteria.names):
            continue
        if criteria.older_than_s is not None:
            used = _last_used(item)
            if used is None or used >= now - criteria.older_than_s:
                continue
        selected.append(item)
    return selected


def _item(scanned: ScannedEntry, reason: str, note: str = "") -> PruneItem:
    e = scanned.entry
    return PruneItem(
        source=e.source, kind=e.kind, name=e.name, path=e.path, size_bytes=e.size_bytes, reason=reason, note=note
    )


def _age_text(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def plan_prune(scan: CacheScan, criteria: PruneCriteria, *, now: float | None = None) -> PrunePlan:
    """Decide what a prune deletes and what it frees. Reads nothing new and deletes nothing."""
    if not (criteria.names or criteria.older_than_s is not None or criteria.incomplete):
        raise CacheError("say what to prune: model names, --older-than AGE (e.g. 30d) or --incomplete")
    unknown = [s for s in criteria.sources if s not in SOURCES]
    if unknown:
        raise CacheError(f"unknown source {unknown[0]!r}; use one of {', '.join(SOURCES)}")
    if criteria.sources and set(criteria.sources) == {"ollama"}:
        raise CacheError(
            "Ollama's store is read-only for lokal (Ollama owns it): remove models there with `ollama rm NAME`"
        )
    now = time.time() if now is None else now
    sources = set(criteria.sources or SOURCES)
    delete: list[tuple[ScannedEntry, PruneItem, list[Path]]] = []
    keep: list[PruneItem] = []
    notes: list[str] = []

    def why(item: ScannedEntry) -> str:
        parts = []
        if criteria.names:
            parts.append("named")
        if criteria.older_than_s is not None:
            used = _last_used(item)
            parts.append(f"last used {_age_text(now - used)} ago" if used is not None else "old")
        return ", ".join(parts)

    selected = _select_models(scan, criteria, now)
    lokal_selected = {i.entry.name for i in selected if i.entry.source == "lokal" and not i.external}
    remaining_users: dict[str, list[str]] = {}
    for item in scan.items:
        if item.entry.source == "lokal" and item.entry.kind == "model" and item.entry.name not in lokal_selected:
            remaining_users.setdefault(item.digest or "", []).append(item.entry.name)

    for item in selected:
        e = item.entry
        if e.source == "ollama":
            keep.append(_item(item, f"read-only: Ollama's store belongs to Ollama; remove it with: ollama rm {e.name}"))
            continue
        if e.source == "lokal" and item.external:
            reason = f"a checkpoint folder outside lokal's store ({e.path}): lokal never deletes it"
            keep.append(_item(item, f"{reason}; remove only the name with: lokal rm {e.name}"))
            continue
        if e.source == "lokal":
            users = remaining_users.get(item.digest or "", [])
            if users or item.digest in scan.protected_digests:
                whom = ", ".join(users) or "a manifest this lokal cannot read"
                delete.append((item, _item(item, why(item), f"its blob stays: still used by {whom}"), []))
            else:
                delete.append((item, _item(item, why(item)), [f.path for f in item.files]))
            continue
        # hf: the whole repo goes (every revision); only files inside the repo folder are unlinked by it.
        repo = Path(e.path)
        inside = [f.path for f in item.files if repo in f.path.parents]
        users = sorted(i.entry.name for i in scan.items if i.external and repo in Path(i.entry.path).parents)
        note = f"lokal model(s) {', '.join(users)} use its snapshot and stop working (lokal rm them)" if users else ""
        delete.append((item, _item(item, why(item), note), inside))

    lokal_gc = bool(lokal_selected) or (criteria.incomplete and "lokal" in sources)
    for item in scan.items:
        e = item.entry
        if e.kind == "unreferenced" and lokal_gc and item.pending_upload:
            keep.append(_item(item, "uploaded less than an hour ago: it may be waiting for /api/create"))
        elif e.kind == "unreferenced" and lokal_gc:
            reason = "no manifest uses it; lokal's garbage collection deletes it"
            delete.append((item, _item(item, reason), [f.path for f in item.files]))
        elif e.kind == "incomplete" and criteria.incomplete and e.source in sources:
            if e.source == "ollama":
                keep.append(_item(item, "read-only: Ollama cleans its own partial downloads (restart ollama serve)"))
            elif e.source == "hf" and (age := now - (e.modified.timestamp() if e.modified else 0.0)) < (
                criteria.incomplete_min_age_s
            ):
                keep.append(_item(item, f"modified {age / 60:.0f} min ago: it may still be downloading"))
            else:
                delete.append(
                    (item, _item(item, "partial download or leftover temp file"), [f.path for f in item.files])
                )
        elif e.kind == "incomplete" and e.source == "lokal" and lokal_gc:
            delete.append(
                (
                    item,
                    _item(item, "leftover temp file; lokal's garbage collection deletes it"),
                    [f.path for f in item.files],
                )
            )

    frees, attributed = _freed(scan, delete)
    items = []
    for scanned, pruned, _paths in delete:
        freed = attributed.get(id(scanned), 0)
        note = pruned.note
        if not note and freed < pruned.size_bytes and pruned.kind == "model":
            whom = "; ".join(scanned.entry.shared_with) or "other files"
            note = f"frees {size_text(freed)} of {size_text(pruned.size_bytes)}: the rest is shared with {whom}"
        items.append(pruned.model_copy(update={"frees_bytes": freed, "note": note}))

    hf_expected = None
    hashes = [h for scanned, _, _ in delete if scanned.entry.source == "hf" for h in scanned.revisions]
    if hashes and scan.hf_info is not None:
        hf_expected = int(scan.hf_info.delete_revisions(*hashes).expected_freed_size)
    if any(i.source == "ollama" for i in keep):
        notes.append("Ollama's store is never changed by lokal; the models above marked read-only stay.")
    if lokal_gc:
        notes.append("lokal's store: models are removed with the store lock held; a blob another name uses stays.")
    return PrunePlan(
        created_at=datetime.fromtimestamp(now, UTC),
        criteria=criteria.to_dict(),
        delete=items,
        keep=keep,
        frees_bytes=frees,
        hf_expected_freed_bytes=hf_expected,
        notes=notes,
    )


def _freed(scan: CacheScan, delete: Sequence[tuple[ScannedEntry, PruneItem, list[Path]]]) -> tuple[int, dict[int, int]]:
    """Physical bytes freed: inodes all of whose links are unlinked. Each is attributed to the first item."""
    by_path = {f.path: f for item in scan.items for f in item.files}
    unlinked: dict[Inode, set[Path]] = {}
    for _, _, paths in delete:
        for p in paths:
            f = by_path[p]
            unlinked.setdefault(f.inode, set()).add(p)
    freed_inodes = {inode for inode, ps in unlinked.items() if len(ps) >= next(by_path[p] for p in ps).nlink}
    attributed: Counter[int] = Counter()
    done: set[Inode] = set()
    total = 0
    for scanned, _, paths in delete:
        for p in paths:
            f = by_path[p]
            if f.inode in freed_inodes and f.inode not in done:
                done.add(f.inode)
                attributed[id(scanned)] += f.size
                total += f.size
    return total, dict(attributed)


def execute_prune(plan: PrunePlan, scan: CacheScan, store: Any) -> PrunePlan:
    """Carry out `plan` (made from `scan`). Returns the plan marked executed, with a note per problem.

    `store` is the `ModelStore` for lokal's store: removal goes through it so shared blobs are respected.
    """
    from lokal.store.fsutil import file_lock

    problems: list[str] = []
    lokal_models = [i for i in plan.delete if i.source == "lokal" and i.kind == "model"]
    for item in lokal_models:
        try:
            store.remove(item.name)
        except ModelNotFound:
            problems.append(f"lokal: {item.name} was already gone")
    lokal_leftovers = [i for i in plan.delete if i.source == "lokal" and i.kind != "model"]
    if lokal_leftovers and not lokal_models:
        # The same collection `ModelStore.remove` runs, under the same exclusive lock (no pull is mid-import).
        with file_lock(store.layout.lock_path("store")):
            store._collect_garbage()

    by_name = {(i.entry.source, i.entry.name): i for i in scan.items if i.entry.kind == "model"}
    hashes = [
        h for i in plan.delete if i.source == "hf" and i.kind == "model" for h in by_name[("hf", i.name)].revisions
    ]
    if hashes and scan.hf_info is not None:
        scan.hf_info.delete_revisions(*hashes).execute()
    for item in plan.delete:
        if item.source == "hf" and item.kind == "incomplete":
            path = Path(item.path)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime < float(plan.criteria.get("incomplete_min_age_s") or 0):
                    problems.append(f"hf: kept {path.name}: it changed since the plan (a download in progress?)")
                    continue
                path.unlink()
    return plan.model_copy(update={"executed": True, "notes": [*plan.notes, *problems]})
