"""GGUF files from the Hugging Face hub (`hf.co/ORG/REPO[:QUANT]`), through `huggingface_hub` and its cache.

Online: list the repository, pick the GGUF file for the quant, `hf_hub_download` it into the HF cache
(with the library's own tqdm progress), and hand back the cache blob so the store can hardlink it (one
copy on disk, not two). Offline (`HF_HUB_OFFLINE=1`, or the hub cannot be reached): use the file if the HF
cache already has it, else raise `HubUnreachable` naming the repository and the file it would fetch.

A repository with no GGUF but a transformers checkpoint (config.json + *.safetensors) is taken as a checkpoint
when no quant was asked for: online, `snapshot_download` fetches only its config, tokenizer and weight files
(not the .bin, ONNX or GGUF copies many repositories also carry); offline, a complete snapshot in the HF cache
is used. Either way the store records the snapshot folder; nothing is copied.

Environment is read at call time, not through `huggingface_hub.constants` alone, because those are
frozen when the library is first imported and lokal (and its tests) may set `HF_HUB_OFFLINE`/`HF_HOME`
later.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lokal.errors import HubUnreachable, InvalidModelFile, PullError
from lokal.store.sources import Fetched, FetchedFolder
from lokal.store.sources.checkpoint import (
    INDEX_FILE,
    MODULES_FILE,
    check_checkpoint_folder,
    select_weight_files,
)
from lokal.store.types import Progress

if TYPE_CHECKING:
    from tqdm.asyncio import tqdm_asyncio

#: Without an explicit quant: the usual best size/quality trade-off first, then the most portable.
QUANT_PREFERENCE = ("Q4_K_M", "Q4_0")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
_TRUE = {"1", "ON", "YES", "TRUE"}
#: What a checkpoint needs besides its weights: configs, tokenizer files, chat template, model card.
CHECKPOINT_PATTERNS = ("*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken", "README.md")


def hub_offline() -> bool:
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(key)
        if value:
            return value.strip().upper() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.environ[key]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _matches(quant: str, files: list[str]) -> list[str]:
    """Files whose base name has `quant` as a whole token (`q4_k_m`), else as a substring."""
    q = re.escape(quant.lower())
    token = re.compile(rf"(?<![a-z0-9]){q}(?![a-z0-9_])")
    names = {f: f.rsplit("/", 1)[-1].lower() for f in files}
    exact = [f for f in files if token.search(names[f])]
    return exact or [f for f in files if quant.lower() in names[f]]


def choose_gguf(files: Mapping[str, int | None], quant: str | None, repo_id: str) -> str:
    """Pick the GGUF to download: the file matching `quant`, else Q4_K_M, else Q4_0, else the smallest.

    `files` maps repo paths to sizes (None when unknown). Projector (`mmproj`) files are never chosen.
    """
    ggufs = {f: s for f, s in files.items() if f.lower().endswith(".gguf") and "mmproj" not in f.lower()}
    if not ggufs:
        raise PullError(f"hf.co/{repo_id} has no GGUF files; lokal runs GGUF models (look for a '-GGUF' repository)")
    candidates = list(ggufs)
    if quant:
        found = _matches(quant, candidates)
        if not found:
            available = ", ".join(sorted(f.rsplit("/", 1)[-1] for f in candidates))
            raise PullError(f"no GGUF file in hf.co/{repo_id} matches '{quant}'; available: {available}")
    else:
        found = next((m for q in QUANT_PREFERENCE if (m := _matches(q, candidates))), [])
        if not found:
            found = [min(candidates, key=lambda f: (ggufs[f] is None, ggufs[f] or 0, f))]
    # Several matches (e.g. "Q4_K" matches Q4_K_M and Q4_K_S): prefer the usual quants, then the smallest.
    found = next((m for q in QUANT_PREFERENCE if (m := _matches(q, found))), found)
    pick = min(found, key=lambda f: (bool(_SPLIT.search(f)), ggufs[f] or 0, len(f), f))
    if _SPLIT.search(pick):
        raise PullError(
            f"hf.co/{repo_id} only has {pick.rsplit('/', 1)[-1]} as a split GGUF; lokal does not join split "
            "files yet: merge them with llama.cpp's llama-gguf-split --merge and run lokal pull ./merged.gguf"
        )
    return pick


def _snapshots(repo_id: str, cache_dir: Path) -> list[Path]:
    """Snapshot folders of `repo_id` in the HF cache: the one `refs/main` points at first, then newest first."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    order: list[Path] = []
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        order.append(snapshots / ref.read_text().strip())
    order += sorted((p for p in snapshots.iterdir() if p not in order), key=lambda p: -p.stat().st_mtime)
    return [p for p in order if p.is_dir()]


def has_gguf(files: Mapping[str, object]) -> bool:
    return any(f.lower().endswith(".gguf") and "mmproj" not in f.lower() for f in files)


def is_checkpoint_listing(files: Mapping[str, object]) -> bool:
    """A repository listing that holds a transformers checkpoint in safetensors format."""
    return "config.json" in files and any(f.endswith(".safetensors") for f in files)


def cached_checkpoint(repo_id: str, cache_dir: Path) -> Path | None:
    """The first complete checkpoint snapshot of `repo_id` in the HF cache (refs/main first), or None."""
    for snapshot in _snapshots(repo_id, cache_dir):
        try:
            return check_checkpoint_folder(snapshot)
        except InvalidModelFile:
            continue
    return None


def cached_ggufs(repo_id: str, cache_dir: Path) -> dict[str, Path]:
    """GGUF files of `repo_id` in the HF cache: the snapshot `refs/main` points at first, then the rest."""
    found: dict[str, Path] = {}
    for snapshot in _snapshots(repo_id, cache_dir):
        for path in snapshot.rglob("*"):
            rel = path.relative_to(snapshot).as_posix()
            if rel.lower().endswith(".gguf") and rel not in found and path.is_file():  # follows symlinks
                found[rel] = path
    return found


def _unreachable(exc: BaseException) -> bool:
    """True for "could not talk to the hub" (as opposed to "the hub said no")."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status is None or status >= 500 or status == 429
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return True
    return type(exc).__module__.split(".")[0] in {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


def _definitive(exc: BaseException, repo_id: str) -> PullError | None:
    """Turn "the hub said no" into a clear `PullError`; None if `exc` is something else."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return PullError(f"hf.co/{repo_id} is gated: accept its licence on the hub, then log in with `hf auth login`")
    if isinstance(exc, RepositoryNotFoundError):
        return PullError(f"hf.co/{repo_id} was not found on the hub (check the name; private repos need a login)")
    if isinstance(exc, RevisionNotFoundError | EntryNotFoundError) and not isinstance(exc, FileNotFoundError):
        return PullError(f"hf.co/{repo_id}: {exc}")
    return None


def _offline_error(repo_id: str, quant: str | None, file_hint: str | None, reason: str, cache: Path) -> HubUnreachable:
    if file_hint:
        what = f"{file_hint} from hf.co/{repo_id}"
    elif quant:
        what = f"the {quant} GGUF file from hf.co/{repo_id}"
    else:
        what = f"the {QUANT_PREFERENCE[0]} GGUF file (or a transformers checkpoint) from hf.co/{repo_id}"
    return HubUnreachable(
        f"cannot reach the Hugging Face hub ({reason}) to fetch {what}, and it is not in the local cache "
        f"({cache}); connect to the internet and retry, or import what you have: "
        "lokal pull ./model.gguf --name NAME (or a checkpoint folder: lokal pull ./folder --name NAME)"
    )


def _from_cache(repo_id: str, quant: str | None, cache: Path) -> tuple[str, Path] | None:
    files = cached_ggufs(repo_id, cache)
    if not files:
        return None
    try:
        filename = choose_gguf({f: p.stat().st_size for f, p in files.items()}, quant, repo_id)
    except PullError:
        return None
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, filename, cache_dir=cache)
    return filename, Path(hit) if isinstance(hit, str) else files[filename]


def _fetched(repo_id: str, filename: str, local: Path) -> Fetched:
    blob = Path(os.path.realpath(local))  # the cache blob behind the snapshot symlink
    sha = blob.name.lower()
    # LFS files (all GGUFs) are stored under their sha256, which the hub published: verify against it.
    expected = f"sha256:{sha}" if re.fullmatch(r"[0-9a-f]{64}", sha) else None
    return Fetched(parts=(blob,), source="huggingface", origin=f"hf.co/{repo_id}/{filename}", expected_digest=expected)


def _cached_folder(repo_id: str, cache: Path) -> FetchedFolder | None:
    folder = cached_checkpoint(repo_id, cache)
    return None if folder is None else FetchedFolder(path=folder, source="huggingface", origin=f"hf.co/{repo_id}")


def _download_checkpoint(
    repo_id: str, files: Mapping[str, object], cache: Path, tqdm_class: type[tqdm_asyncio[Any]] | None
) -> FetchedFolder:
    """Two `snapshot_download` calls: the small files first (to read the shard index and modules.json), then
    exactly the weight files they name, so a repository's duplicate weights (.bin, consolidated.*) stay behind."""
    from huggingface_hub import snapshot_download

    patterns = list(CHECKPOINT_PATTERNS)
    folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns, tqdm_class=tqdm_class))
    index, modules = (_json_or_none(folder / name) for name in (INDEX_FILE, MODULES_FILE))
    weights = select_weight_files(set(files), index, modules)
    folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns + weights, tqdm_class=tqdm_class))
    try:
        checked = check_checkpoint_folder(folder)
    except InvalidModelFile as exc:
        raise PullError(f"hf.co/{repo_id}: the downloaded checkpoint is unusable: {exc}") from None
    return FetchedFolder(path=checked, source="huggingface", origin=f"hf.co/{repo_id}")


def _json_or_none(path: Path) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def fetch_hf(
    repo_id: str, quant: str | None, *, progress: Progress = True, file_hint: str | None = None
) -> Fetched | FetchedFolder:
    """Download (or find in the HF cache) the GGUF of `repo_id` for `quant`; without a quant, a repository
    with no GGUF but a safetensors checkpoint gives that checkpoint's snapshot folder."""
    cache = hub_cache_dir()
    any_file = quant is None and file_hint is None  # a checkpoint is acceptable
    if hub_offline():
        hit = _from_cache(repo_id, quant, cache)
        if hit is not None:
            return _fetched(repo_id, *hit)
        folder = _cached_folder(repo_id, cache) if any_file else None
        if folder is None:
            raise _offline_error(repo_id, quant, file_hint, "HF_HUB_OFFLINE is set", cache)
        return folder

    from huggingface_hub import HfApi, hf_hub_download

    filename: str | None = None
    # None: huggingface_hub's own progress bars.
    tqdm_class = None if progress is True else _silent_tqdm(progress if callable(progress) else None)
    try:
        tree = HfApi().list_repo_tree(repo_id, recursive=True)
        files = {e.path: getattr(e, "size", None) for e in tree if hasattr(e, "size")}
        if any_file and not has_gguf(files) and is_checkpoint_listing(files):
            return _download_checkpoint(repo_id, files, cache, tqdm_class)
        filename = choose_gguf(files, quant, repo_id)
        local = Path(hf_hub_download(repo_id, filename, cache_dir=cache, tqdm_class=tqdm_class))
    except PullError:
        raise
    except Exception as exc:
        definitive = _definitive(exc, repo_id)
        if definitive is not None:
            raise definitive from None
        if not _unreachable(exc):
            raise
        cached = _from_cache(repo_id, quant, cache)
        if cached is not None:
            return _fetched(repo_id, *cached)
        folder = _cached_folder(repo_id, cache) if any_file else None
        if folder is None:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}"
            raise _offline_error(repo_id, quant, filename or file_hint, reason[:200], cache) from None
        return folder
    return _fetched(repo_id, filename, local)


def _silent_tqdm(report: Callable[[int, int], None] | None = None) -> type[tqdm_asyncio[Any]]:
    """A tqdm class that draws nothing and, given `report`, passes (bytes done, total) to it."""
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):
        # Passed through to tqdm's constructor, which takes many arguments of many types.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            if report is not None:
                report(self._done, self._total)
            return super().update(n)

    return SilentTqdm
