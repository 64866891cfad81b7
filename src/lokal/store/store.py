"""`ModelStore`: the one way the engine, the CLI and the server turn a name into a GGUF file or a checkpoint folder.

Resolution order: lokal's own store, then the bundled packages (pulled implicitly the first time, so
`lokal run smollm2` works offline right after install), then Ollama's store (read-only). Unknown names
raise `ModelNotFound` with a hint that says how to get the model.

A transformers checkpoint folder (a local folder, an HF cache snapshot, the bundled all-MiniLM package) is
never copied: its manifest records the folder's path. Its digest and size are recomputed from the folder
whenever it is resolved (see `sources.checkpoint.folder_digest`), so they describe what is on disk now.
Removing such a name deletes only the manifest; garbage collection only ever looks at `blobs/`, so it
cannot touch the folder.

Concurrency: pulls and copies hold the store lock shared plus a per-name lock exclusively; removal
holds the store lock exclusively while it deletes the manifest and collects unreferenced blobs, so a
blob being imported is never collected before its manifest exists, and leftover temp files (from a
crashed process) can be deleted safely.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from lokal.config import Settings
from lokal.engine_specs import EngineName, parse_engine
from lokal.errors import InvalidModelFile, InvalidModelName, InvalidOptions, ModelNotFound, ReadOnlyModel
from lokal.files import fsync_dir
from lokal.store import catalogue, gc
from lokal.store.blobs import import_file, import_parts
from lokal.store.engine_choice import engine_for, is_checkpoint
from lokal.store.fsutil import file_lock, remove_empty_parents
from lokal.store.gguf_info import check_gguf_magic, read_gguf_info
from lokal.store.info import (
    InfoCache,
    ModelInfo,
    build_checkpoint_model_info,
    build_model_info,
    details_from_checkpoint,
    details_from_info,
)
from lokal.store.layout import StoreLayout
from lokal.store.manifest import Manifest, ManifestError, now, read_manifest, write_manifest
from lokal.store.memory import MemoryEstimate, estimate_from_checkpoint, estimate_gguf
from lokal.store.names import ModelName, is_hf_ref, parse_hf_ref, parse_name
from lokal.store.sources import Fetched, FetchedFolder
from lokal.store.sources.bundled import BUNDLED
from lokal.store.sources.checkpoint import (
    CheckpointInfo,
    check_checkpoint_folder,
    fetch_folder,
    folder_digest,
    looks_like_checkpoint,
    read_checkpoint_info,
    readme_license,
)
from lokal.store.sources.gguf_file import fetch_file, looks_like_path, looks_like_path_text
from lokal.store.sources.huggingface import fetch_hf
from lokal.store.sources.ollama import OllamaEntry, OllamaEntryError, OllamaStore
from lokal.store.types import Layers, LocalModel, ModelDetails, Progress
from lokal.store.uploads import parse_digest


def check_name_only(ref: str) -> None:
    """Refuse a pull reference that is not a model name (the server's rule), before any disk access: a path is
    an `InvalidModelName` that says how to import a file instead, and so is a malformed name."""
    if looks_like_path_text(ref):
        raise InvalidModelName(
            f"{ref.strip()[:60]!r} looks like a file path: the server imports no files by path. Upload the "
            "file (POST /api/blobs/sha256:<digest>, then /api/create with files), or on the server "
            "machine run: lokal pull ./file.gguf --name NAME"
        )
    if is_hf_ref(ref):
        parse_hf_ref(ref)
    else:
        parse_name(ref)


class _Unusable(Exception):
    """A manifest that exists but cannot be turned into a model (blob or folder missing, not GGUF)."""


def _no_llamacpp(name: str) -> InvalidOptions:
    return InvalidOptions(
        f"'{name}' is a transformers checkpoint folder; llama.cpp runs GGUF files only: "
        "use --engine transformers (or leave --engine out)"
    )


def _model(
    name: ModelName, manifest: Manifest, modified: datetime, path: Path, digest: str, size: int, details: ModelDetails
) -> LocalModel:
    """A model of lokal's store: what its manifest records, with the weights (a blob or a folder) found on disk."""
    return LocalModel(
        name=str(name),
        path=path,
        digest=digest,
        size=size,
        source=manifest.source,
        origin=manifest.origin,
        modified_at=modified,
        details=details,
        params=dict(manifest.params),
        system=manifest.system,
        template=manifest.template,
        messages=tuple(manifest.messages),
        license=manifest.license,
        engine=manifest.engine,
    )


class ModelStore:
    """lokal's model store, plus read-only access to the bundled packages and Ollama's store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = StoreLayout(settings.home)
        self.ollama = OllamaStore(settings.ollama_models)
        self.infos = InfoCache(self.layout)
        #: Parsed checkpoint folders by folder digest (which changes whenever the folder does).
        self._checkpoints: dict[str, CheckpointInfo] = {}
        #: Entries skipped by the last `list()` (corrupt manifests, missing blobs), for the CLI to show.
        self.warnings: builtins.list[str] = []

    # -- locks ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self, name: ModelName) -> Iterator[None]:
        with (
            file_lock(self.layout.lock_path("store"), shared=True),
            file_lock(self.layout.lock_path(str(name))),
        ):
            yield

    def _write_manifest(self, path: Path, manifest: Manifest) -> None:
        """Write a manifest; if that fails (a full disk), the folders made for it go too: nothing was changed."""
        try:
            write_manifest(path, manifest)
        except BaseException:
            remove_empty_parents(path, self.layout.manifests)
            raise

    # -- reading -------------------------------------------------------------------------------

    def _checkpoint_info(self, folder: Path, digest: str) -> CheckpointInfo:
        hit = self._checkpoints.get(digest)
        if hit is None:
            hit = self._checkpoints[digest] = read_checkpoint_info(folder)
        return hit

    def _from_folder(self, name: ModelName, manifest: Manifest, modified: datetime) -> LocalModel:
        folder = manifest.path
        assert folder is not None
        if not folder.is_dir():
            raise _Unusable(f"its folder {folder} is missing (moved or deleted?); pull it again from where it is now")
        try:
            digest, size = folder_digest(folder)
            info = self._checkpoint_info(folder, digest)
        except InvalidModelFile as exc:
            raise _Unusable(str(exc)) from None
        except OSError as exc:
            raise _Unusable(f"cannot read its folder {folder}: {exc}") from None
        return _model(name, manifest, modified, folder, digest, size, details_from_checkpoint(info))

    def _from_manifest(self, name: ModelName, path: Path) -> LocalModel:
        try:
            manifest = read_manifest(path)
            modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except ManifestError as exc:
            raise _Unusable(str(exc)) from None
        except OSError as exc:
            raise _Unusable(f"cannot read its manifest: {exc}") from None
        if manifest.path is not None:
            return self._from_folder(name, manifest, modified)
        blob = self.layout.blob_path(manifest.digest)
        if not blob.is_file():
            raise _Unusable(f"its blob {blob.name} is missing; pull it again")
        try:
            info = self.infos.get(manifest.digest, blob)
        except InvalidModelFile as exc:
            raise _Unusable(str(exc)) from None
        return _model(name, manifest, modified, blob, manifest.digest, manifest.size, details_from_info(info))

    def _from_ollama(self, entry: OllamaEntry) -> LocalModel:
        try:
            details = details_from_info(self.infos.get(entry.model_digest, entry.model_path))
        except InvalidModelFile as exc:
            raise _Unusable(str(exc)) from None
        return LocalModel(
            name=str(entry.name),
            path=entry.model_path,
            digest=entry.model_digest,
            size=entry.size,
            source="ollama",
            origin=str(entry.manifest_path),
            modified_at=entry.modified_at,
            details=details,
            read_only=True,
            params=entry.params,
            system=entry.system,
            manifest_digest=entry.manifest_digest,
            license=entry.license,
        )

    def _local(self, name: ModelName) -> LocalModel | None:
        path = self.layout.manifest_path(name)
        if not path.is_file():
            return None
        try:
            return self._from_manifest(name, path)
        except _Unusable as exc:
            raise ModelNotFound(str(name), hint=f"its manifest is unusable ({exc})") from None

    def resolve(self, name: str) -> LocalModel:
        """The model called `name`: lokal's store, then bundled (pulled now if needed), then Ollama's."""
        target = parse_name(name)
        bundled = BUNDLED.get(str(target))
        try:
            found = self._local(target)
        except ModelNotFound:
            if bundled is None:
                raise
            found = None  # a bundled model whose blob was deleted: import it again below
        if found is not None:
            return found
        if bundled is not None:
            return self._add(target, bundled.locate(), progress=False)
        try:
            entry = self.ollama.find(target)
            if entry is not None:
                return self._from_ollama(entry)
        except (OllamaEntryError, _Unusable) as exc:
            raise ModelNotFound(name.strip(), hint=f"it is in Ollama's store but unusable: {exc}") from None
        raise ModelNotFound(name.strip(), hint=self._hint(target))

    def list(self) -> builtins.list[LocalModel]:
        """Models in lokal's store and Ollama's store, sorted by name (a lokal name hides Ollama's)."""
        self.warnings = []
        models: dict[str, LocalModel] = {}
        for name, path in self.layout.iter_manifests():
            try:
                models[str(name)] = self._from_manifest(name, path)
            except _Unusable as exc:
                self.warnings.append(f"skipping {name}: {exc}")
        for entry in self.ollama.entries(self.warnings):
            if str(entry.name) not in models:
                try:
                    models[str(entry.name)] = self._from_ollama(entry)
                except _Unusable as exc:
                    self.warnings.append(f"skipping Ollama model {entry.name}: {exc}")
        return [models[key] for key in sorted(models)]

    def estimate_memory(
        self,
        model: LocalModel,
        *,
        num_ctx: int | None = None,
        num_parallel: int | None = None,
        engine: str = "llamacpp",
    ) -> MemoryEstimate:
        """Memory to load `model` with `num_parallel` sequences of `num_ctx` tokens (defaults: settings)
        under `engine` ("transformers" dequantizes a GGUF to float32, so its weights are larger than the file;
        a checkpoint folder is always estimated for transformers, the only engine that runs it)."""
        ctx = num_ctx or self.settings.context_length
        parallel = num_parallel or self.settings.num_parallel
        if is_checkpoint(model):
            info = self._checkpoint_info(model.path, model.digest)
            return estimate_from_checkpoint(info, num_ctx=ctx, num_parallel=parallel)
        gguf = self.infos.get(model.digest, model.path)
        return estimate_gguf(gguf, model, num_ctx=ctx, num_parallel=parallel, engine=engine)

    def show(self, name: str, *, num_ctx: int | None = None, num_parallel: int | None = None) -> ModelInfo:
        """Everything about `name`, with the memory it needs under the engine that would run it here."""
        model = self.resolve(name)
        try:
            engine: str = engine_for(model, self.settings.engine)
        except InvalidOptions:  # LOKAL_ENGINE=llamacpp and a checkpoint: only transformers can run it
            engine = "transformers"
        memory = self.estimate_memory(model, num_ctx=num_ctx, num_parallel=num_parallel, engine=engine)
        if is_checkpoint(model):
            return build_checkpoint_model_info(model, self._checkpoint_info(model.path, model.digest), memory)
        return build_model_info(model, self.infos.get(model.digest, model.path), memory, memory_engine=engine)

    # -- writing -------------------------------------------------------------------------------

    def _add(
        self,
        target: ModelName,
        fetched: Fetched | FetchedFolder,
        *,
        progress: Progress,
        engine: EngineName | None = None,
    ) -> LocalModel:
        """Add what a source found: import a GGUF blob, or record a checkpoint folder."""
        if isinstance(fetched, FetchedFolder):
            return self._register_folder(target, fetched, engine=engine)
        return self._import(target, fetched, progress=progress, engine=engine)

    def _register_folder(
        self, target: ModelName, fetched: FetchedFolder, *, engine: EngineName | None = None
    ) -> LocalModel:
        """Write a manifest that points at a checkpoint folder, after checking its config and weight headers."""
        if engine == "llamacpp":
            raise _no_llamacpp(str(target))
        folder = check_checkpoint_folder(fetched.path)
        digest, size = folder_digest(folder)
        self._checkpoint_info(folder, digest)  # unreadable headers fail here, before the name exists
        with self._writing(target):
            manifest = Manifest(
                name=str(target),
                digest=digest,
                size=size,
                source=fetched.source,
                origin=fetched.origin,
                created_at=now(),
                license=fetched.license or readme_license(folder),
                path=folder,
                format="safetensors",
                engine="transformers",
            )
            path = self.layout.manifest_path(target)
            self._write_manifest(path, manifest)
            return self._from_manifest(target, path)  # inside the lock: a removal cannot slip in between

    def _import(
        self, target: ModelName, fetched: Fetched, *, progress: Progress, engine: EngineName | None = None
    ) -> LocalModel:
        """Import fetched bytes as a blob (verified), then write the manifest: the model appears last.

        A single file's header is parsed before anything is written, so a file that is not a usable
        GGUF never reaches the store; joined chunks are parsed once joined, and dropped if unusable.
        """
        check_gguf_magic(fetched.parts[0])
        parsed = read_gguf_info(fetched.parts[0]) if len(fetched.parts) == 1 else None
        label = f"importing {target}"
        gc.sweep_temp_files(self.layout)  # what an earlier, interrupted import left (it may be gigabytes)
        with self._writing(target):
            if parsed is not None:
                digest, size = import_file(
                    self.layout,
                    fetched.parts[0],
                    expected=fetched.expected_digest,
                    link=fetched.link,
                    progress=progress,
                    label=label,
                )
                self.infos.put(digest, parsed)
            else:
                digest, size = import_parts(
                    self.layout,
                    fetched.parts,
                    expected=fetched.expected_digest,
                    progress=progress,
                    label=label,
                )
                try:
                    self.infos.get(digest, self.layout.blob_path(digest))
                except InvalidModelFile:
                    if digest not in gc.referenced_digests(self.layout):
                        self.layout.blob_path(digest).unlink(missing_ok=True)
                    raise
            manifest = Manifest(
                name=str(target),
                digest=digest,
                size=size,
                source=fetched.source,
                origin=fetched.origin,
                created_at=now(),
                license=fetched.license,
                engine=engine,
            )
            path = self.layout.manifest_path(target)
            self._write_manifest(path, manifest)
            return self._from_manifest(target, path)  # inside the lock: a removal cannot slip in between

    def pull(
        self,
        ref: str,
        *,
        name: str | None = None,
        progress: Progress = True,
        engine: str | None = None,
        local_paths: bool = True,
    ) -> LocalModel:
        """Make a model available locally from a bundled package, a GGUF path, a checkpoint folder, hf.co/...
        or the catalogue.

        `name` sets the name to store it under (default: the reference's own name, or for a file or folder its
        base name). `engine` ("llamacpp" | "transformers") is remembered by the entry; a checkpoint folder always
        remembers transformers. A name that is already in Ollama's store is returned as is (it is usable
        without pulling), or copied into lokal's store when `name` or `engine` asks for an entry of its own.

        `local_paths=False` (the server's `/api/pull`) takes names only: a reference that looks like a path is
        refused before anything on disk is looked at, so a client can neither import nor probe the server's files.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidModelName(
                "nothing to pull: give a model name, hf.co/ORG/REPO[:QUANT], a .gguf path or a checkpoint folder"
            )
        wanted = parse_engine(engine) if engine is not None else None
        dest = parse_name(name) if name is not None else None
        if is_hf_ref(ref):
            hf = parse_hf_ref(ref)
            fetched_hf = fetch_hf(hf.repo_id, hf.quant, progress=progress)
            return self._add(dest or hf.name, fetched_hf, progress=progress, engine=wanted)
        if not local_paths:
            check_name_only(ref)
            return self._pull_name(ref, dest, wanted, progress)
        candidate = Path(ref.strip()).expanduser()
        if looks_like_checkpoint(candidate) or (looks_like_path(ref) and candidate.is_dir()):
            folder, default = fetch_folder(ref)
            return self._add(dest or parse_name(default), folder, progress=progress, engine=wanted)
        if looks_like_path(ref):
            fetched, default = fetch_file(ref)
            return self._add(dest or parse_name(default), fetched, progress=progress, engine=wanted)
        return self._pull_name(ref, dest, wanted, progress)

    def _pull_name(self, ref: str, dest: ModelName | None, wanted: EngineName | None, progress: Progress) -> LocalModel:
        """`pull` of a name (not a path): bundled, the catalogue, lokal's store, then Ollama's."""
        target = parse_name(ref)
        bundled = BUNDLED.get(str(target))
        if bundled is not None:
            return self._add(dest or target, bundled.locate(), progress=progress, engine=wanted)
        entry = catalogue.lookup(target)
        if entry is not None:
            fetched_c = fetch_hf(entry.repo_id, entry.quant, progress=progress, file_hint=entry.file)
            return self._add(dest or target, fetched_c, progress=progress, engine=wanted)
        local = self._local(target)
        if local is not None:
            if dest is None and wanted in (None, local.engine):
                return local
            return self.copy(str(target), str(dest or target), engine=wanted)
        try:
            if self.ollama.find(target) is not None:
                if dest is None and wanted is None:
                    return self.resolve(str(target))
                return self.copy(str(target), str(dest or target), engine=wanted)
        except OllamaEntryError:
            pass
        raise ModelNotFound(ref.strip(), hint=self._hint(target, pulling=True))

    def copy(
        self, source: str, destination: str, engine: str | None = None, *, layers: Layers | None = None
    ) -> LocalModel:
        """Copy a model to a new name (blobs are shared; a checkpoint folder stays where it is). Copying an
        Ollama model imports its blob. `engine` sets the engine the new entry remembers (default: the source's);
        copying a model onto its own name with a different `engine` just changes what it remembers. `layers`
        replaces the source's system prompt, default options or licence (what `/api/create` with `from` sets)."""
        src = self.resolve(source)
        dst = parse_name(destination)
        new_engine = parse_engine(engine) if engine is not None else src.engine
        folder = src.path if is_checkpoint(src) else None
        if folder is not None and new_engine == "llamacpp":
            raise _no_llamacpp(src.name)
        layers = layers or Layers()
        if str(dst) == src.name and not src.read_only and new_engine == src.engine and layers.empty:
            return src
        if src.read_only:  # an import: sweep first (under the name lock below, the sweep would find it taken)
            gc.sweep_temp_files(self.layout)
        with self._writing(dst):
            if folder is not None:
                if not folder.is_dir():  # moved or deleted since we resolved it
                    raise ModelNotFound(source.strip(), hint=f"its folder {folder} is missing")
                digest, size, origin = src.digest, src.size, src.origin
            elif src.read_only:  # Ollama's store: hardlink (or copy) its blob into ours, verified
                digest, size = import_file(self.layout, src.path, expected=src.digest, label=f"copying {src.name}")
                origin = f"copied from Ollama's store: {src.name} ({src.origin})"
            else:
                digest, size, origin = src.digest, src.size, src.origin
                if not src.path.is_file():  # removed by another process since we resolved it
                    raise ModelNotFound(source.strip(), hint="it was removed while being copied")
            manifest = Manifest(
                name=str(dst),
                digest=digest,
                size=size,
                source=src.source,
                origin=origin,
                created_at=now(),
                params=dict(src.params if layers.params is None else layers.params),
                system=src.system if layers.system is None else layers.system,
                template=src.template if layers.template is None else layers.template,
                messages=tuple(src.messages if layers.messages is None else layers.messages),
                license=src.license if layers.license is None else layers.license,
                path=folder,
                format="gguf" if folder is None else src.details.format,
                engine=new_engine,
            )
            path = self.layout.manifest_path(dst)
            self._write_manifest(path, manifest)
            return self._from_manifest(dst, path)  # inside the lock: a removal cannot slip in between

    def create_from_blob(self, name: str, filename: str, digest: str, *, layers: Layers | None = None) -> LocalModel:
        """A model from a GGUF a client uploaded (`/api/create` with `files`), or a blob already in the store.

        The digest names the blob; nothing else is read, so no client-given path is ever opened. An upload is
        checked (GGUF magic and header) before it moves into `blobs/`; one that is not a GGUF is deleted."""
        target = parse_name(name)
        layers = layers or Layers()
        digest = parse_digest(digest)
        blob, upload = self.layout.blob_path(digest), self.layout.upload_path(digest)
        with self._writing(target):
            if not blob.is_file():
                if not upload.is_file():
                    raise InvalidOptions(
                        f"files: no blob {digest[:19]}… for {filename!r}: upload it first with POST /api/blobs/{digest}"
                    )
                try:
                    check_gguf_magic(upload)
                    self.infos.put(digest, read_gguf_info(upload))
                except InvalidModelFile:
                    upload.unlink(missing_ok=True)
                    raise InvalidModelFile(
                        f"files: {filename!r} is not a GGUF model (lokal runs GGUF files: convert with "
                        "llama.cpp's convert_hf_to_gguf.py, then upload the .gguf); the upload was deleted"
                    ) from None
                self.layout.blobs.mkdir(parents=True, exist_ok=True)
                upload.replace(blob)  # same file system: a rename, atomic
                fsync_dir(self.layout.blobs)
            else:
                try:
                    self.infos.get(digest, blob)
                except InvalidModelFile:
                    raise InvalidModelFile(f"files: {filename!r} is not a GGUF model") from None
            manifest = Manifest(
                name=str(target),
                digest=digest,
                size=blob.stat().st_size,
                source="upload",
                origin=f"uploaded as {filename}",
                created_at=now(),
                params=dict(layers.params or {}),
                system=layers.system,
                template=layers.template,
                messages=tuple(layers.messages or ()),
                license=layers.license,
            )
            path = self.layout.manifest_path(target)
            self._write_manifest(path, manifest)
            return self._from_manifest(target, path)

    def sweep_temp_files(self) -> int:
        """Delete what interrupted writes left, unless a write is under way (see `gc.sweep_temp_files`)."""
        return gc.sweep_temp_files(self.layout)

    def remove(self, name: str) -> None:
        """Delete a model name; its blob goes too unless another manifest still uses it. For a checkpoint
        folder only the name goes: the folder is not lokal's (garbage collection only looks in `blobs/`)."""
        target = parse_name(name)
        path = self.layout.manifest_path(target)
        with file_lock(self.layout.lock_path("store")):
            if path.is_file():
                path.unlink()
                fsync_dir(path.parent)
                remove_empty_parents(path, self.layout.manifests)
                self._collect_garbage()
                return
        try:
            in_ollama = self.ollama.find(target) is not None
        except OllamaEntryError:
            in_ollama = True
        if in_ollama:
            raise ReadOnlyModel(
                f"'{target}' is in Ollama's store ({self.ollama.layout.root}), which lokal only reads; "
                f"remove it with: ollama rm {target}"
            )
        raise ModelNotFound(name.strip(), hint="nothing to remove (see lokal list)")

    def _collect_garbage(self) -> None:
        """Unreferenced blobs, leftover uploads and temp files (the caller holds the store lock exclusively)."""
        gc.collect_garbage(self.layout, self.infos)

    # -- hints ---------------------------------------------------------------------------------

    def _hint(self, target: ModelName, *, pulling: bool = False) -> str:
        entry = catalogue.lookup(target)
        if entry is not None:
            return f"pull it first: lokal pull {target} (fetches {entry.hf_ref})"
        if target.is_huggingface and not pulling:
            return f"pull it first: lokal pull {target}"
        known = set(BUNDLED) | set(catalogue.CATALOGUE) | {str(n) for n, _ in self.layout.iter_manifests()}
        known |= set(self.ollama.names())
        similar = sorted(n for n in known if n.startswith(f"{target.base}:"))
        if similar:
            return f"did you mean {' or '.join(similar[:6])}?"
        return (
            "lokal can pull bundled models (smollm2, gemma3:270m, all-minilm with lokal[hf]), well-known names "
            "(e.g. lokal pull tinyllama), hf.co/ORG/REPO[:QUANT], a GGUF file "
            "(lokal pull ./model.gguf --name NAME) or a transformers checkpoint folder (lokal pull ./folder)"
        )
