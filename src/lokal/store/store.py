"""`ModelStore`: the one way the engine, the CLI and the server turn a name into a GGUF file.

Resolution order: lokal's own store, then the bundled packages (pulled implicitly the first time, so
`lokal run smollm2` works offline right after install), then Ollama's store (read-only). Unknown names
raise `ModelNotFound` with a hint that says how to get the model.

Concurrency: pulls and copies hold the store lock shared plus a per-name lock exclusively; removal
holds the store lock exclusively while it deletes the manifest and collects unreferenced blobs, so a
blob being imported is never collected before its manifest exists, and leftover temp files (from a
crashed process) can be deleted safely.
"""

from __future__ import annotations

import builtins
import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from lokal.config import Settings
from lokal.errors import InvalidModelFile, InvalidModelName, ModelNotFound, ReadOnlyModel
from lokal.store import catalogue
from lokal.store.blobs import import_file, import_parts
from lokal.store.fsutil import file_lock, fsync_dir, remove_empty_parents
from lokal.store.gguf_info import check_gguf_magic, read_gguf_info
from lokal.store.info import InfoCache, ModelInfo, build_model_info, details_from_info
from lokal.store.layout import StoreLayout
from lokal.store.manifest import Manifest, ManifestError, now, read_manifest, write_manifest
from lokal.store.memory import MemoryEstimate, estimate_from_info
from lokal.store.names import ModelName, is_hf_ref, parse_hf_ref, parse_name
from lokal.store.sources import Fetched
from lokal.store.sources.bundled import BUNDLED
from lokal.store.sources.gguf_file import fetch_file, looks_like_path
from lokal.store.sources.huggingface import fetch_hf
from lokal.store.sources.ollama import OllamaEntry, OllamaEntryError, OllamaStore
from lokal.store.types import LocalModel, Progress

_DIGEST_IN_TEXT = re.compile(r"sha256[:-]([0-9a-f]{64})")


class _Unusable(Exception):
    """A manifest that exists but cannot be turned into a model (blob missing, not GGUF)."""


class ModelStore:
    """lokal's model store, plus read-only access to the bundled packages and Ollama's store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = StoreLayout(settings.home)
        self.ollama = OllamaStore(settings.ollama_models)
        self.infos = InfoCache(self.layout)
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

    # -- reading -------------------------------------------------------------------------------

    def _from_manifest(self, name: ModelName, path: Path) -> LocalModel:
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            raise _Unusable(str(exc)) from None
        blob = self.layout.blob_path(manifest.digest)
        if not blob.is_file():
            raise _Unusable(f"its blob {blob.name} is missing; pull it again")
        try:
            info = self.infos.get(manifest.digest, blob)
        except InvalidModelFile as exc:
            raise _Unusable(str(exc)) from None
        return LocalModel(
            name=str(name),
            path=blob,
            digest=manifest.digest,
            size=manifest.size,
            source=manifest.source,  # type: ignore[arg-type]
            origin=manifest.origin,
            modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC),
            details=details_from_info(info),
            params=dict(manifest.params),
            system=manifest.system,
            template=manifest.template,
            license=manifest.license,
        )

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
            return self._import(target, bundled.locate(), progress=False)
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
        under `engine` ("transformers" dequantizes to float32, so its weights are larger than the file)."""
        info = self.infos.get(model.digest, model.path)
        return estimate_from_info(
            info,
            weights=model.size,
            num_ctx=num_ctx or self.settings.context_length,
            num_parallel=num_parallel or self.settings.num_parallel,
        )

    def show(self, name: str, *, num_ctx: int | None = None, num_parallel: int | None = None) -> ModelInfo:
        model = self.resolve(name)
        info = self.infos.get(model.digest, model.path)
        memory = self.estimate_memory(model, num_ctx=num_ctx, num_parallel=num_parallel)
        return build_model_info(model, info, memory)

    # -- writing -------------------------------------------------------------------------------

    def _import(self, target: ModelName, fetched: Fetched, *, progress: Progress) -> LocalModel:
        """Import fetched bytes as a blob (verified), then write the manifest: the model appears last.

        A single file's header is parsed before anything is written, so a file that is not a usable
        GGUF never reaches the store; joined chunks are parsed once joined, and dropped if unusable.
        """
        check_gguf_magic(fetched.parts[0])
        parsed = read_gguf_info(fetched.parts[0]) if len(fetched.parts) == 1 else None
        label = f"importing {target}"
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
                    if digest not in self._referenced_digests():
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
            )
            path = self.layout.manifest_path(target)
            write_manifest(path, manifest)
        return self._from_manifest(target, path)

    def pull(self, ref: str, *, name: str | None = None, progress: Progress = True) -> LocalModel:
        """Make a model available locally from a bundled package, a GGUF path, hf.co/... or the catalogue.

        `name` sets the name to store it under (default: the reference's own name, or for a file its stem).
        A name that is already in Ollama's store is returned as is (it is usable without pulling).
        """
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidModelName("nothing to pull: give a model name, hf.co/ORG/REPO[:QUANT] or a .gguf path")
        dest = parse_name(name) if name is not None else None
        if is_hf_ref(ref):
            hf = parse_hf_ref(ref)
            return self._import(dest or hf.name, fetch_hf(hf.repo_id, hf.quant, progress=progress), progress=progress)
        if looks_like_path(ref):
            fetched, default = fetch_file(ref)
            return self._import(dest or parse_name(default), fetched, progress=progress)
        target = parse_name(ref)
        bundled = BUNDLED.get(str(target))
        if bundled is not None:
            return self._import(dest or target, bundled.locate(), progress=progress)
        entry = catalogue.lookup(target)
        if entry is not None:
            fetched = fetch_hf(entry.repo_id, entry.quant, progress=progress, file_hint=entry.file)
            return self._import(dest or target, fetched, progress=progress)
        local = self._local(target)
        if local is not None:
            return local if dest is None else self.copy(str(target), str(dest))
        try:
            if self.ollama.find(target) is not None:
                return self.copy(str(target), str(dest)) if dest is not None else self.resolve(str(target))
        except OllamaEntryError:
            pass
        raise ModelNotFound(ref.strip(), hint=self._hint(target, pulling=True))

    def copy(self, source: str, destination: str) -> LocalModel:
        """Copy a model to a new name (blobs are shared). Copying an Ollama model imports its blob."""
        src = self.resolve(source)
        dst = parse_name(destination)
        if str(dst) == src.name and not src.read_only:
            return src
        with self._writing(dst):
            if src.read_only:  # Ollama's store: hardlink (or copy) its blob into ours, verified
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
                params=dict(src.params),
                system=src.system,
                template=src.template,
                license=src.license,
            )
            path = self.layout.manifest_path(dst)
            write_manifest(path, manifest)
        return self._from_manifest(dst, path)

    def remove(self, name: str) -> None:
        """Delete a model name; its blob goes too unless another manifest still uses it."""
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

    def _referenced_digests(self) -> set[str]:
        """Digests used by any manifest. One this lokal cannot parse (a newer schema) still protects
        every digest that appears in its text."""
        referenced: set[str] = set()
        for _, path in self.layout.iter_manifests():
            try:
                referenced.add(read_manifest(path).digest)
            except ManifestError:
                with contextlib.suppress(OSError):
                    text = path.read_text(errors="replace")
                    referenced |= {f"sha256:{h}" for h in _DIGEST_IN_TEXT.findall(text)}
        return referenced

    def _collect_garbage(self) -> None:
        """Delete blobs no manifest references, and temp files left by crashed writers.

        The caller holds the store lock exclusively, so no pull is between its blob and its manifest.
        """
        referenced = self._referenced_digests()
        for digest, blob in self.layout.iter_blobs():
            if digest not in referenced:
                blob.unlink(missing_ok=True)
                self.infos.forget(digest)
        for tmp in self.layout.iter_temp_files():
            tmp.unlink(missing_ok=True)

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
            "lokal can pull bundled models (smollm2, gemma3:270m), well-known names "
            "(e.g. lokal pull tinyllama), hf.co/ORG/REPO[:QUANT] or a GGUF file "
            "(lokal pull ./model.gguf --name NAME)"
        )
