"""A `CacheReport` as report sections: a per-model table, per-source totals and a bar chart of size per model.

Dates are absolute (UTC), not "3 days ago": a report is read later than it is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lokal.cache.model import SOURCE_LABELS, SOURCES, CacheEntry, CacheReport, load_report
from lokal.report.document import Chart, Section, Table
from lokal.results import ResultKind

#: One colour per source, stable across charts (HF's orange, Ollama's grey-green, lokal's blue).
SOURCE_COLOURS = {"hf": "#f59e0b", "lokal": "#2563eb", "ollama": "#059669"}


def size_text(n: int | float) -> str:
    """Decimal units, as `lokal list` and `ollama list` show sizes (98 MB, 1.3 GB)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit in ("B", "KB", "MB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def date_text(when: datetime | None) -> str:
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M")


def _chart_unit(largest: int) -> tuple[str, float]:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if largest >= scale:
            return unit, scale
    return "bytes", 1.0


def _draw(entries: list[CacheEntry]) -> Any:
    def draw(ax: Any) -> None:
        from matplotlib.patches import Patch

        rows = sorted(entries, key=lambda e: e.size_bytes)
        unit, scale = _chart_unit(max((e.size_bytes for e in rows), default=0))
        labels = [e.name if len(e.name) <= 40 else e.name[:39] + "…" for e in rows]
        y = list(range(len(rows)))
        ax.barh(y, [e.size_bytes / scale for e in rows], color=[SOURCE_COLOURS[e.source] for e in rows])
        if any(e.shared_bytes for e in rows):
            ax.barh(
                y,
                [e.shared_bytes / scale for e in rows],
                color="none",
                edgecolor="black",
                hatch="//",
                linewidth=0,
            )
        ax.set_yticks(y, labels)
        ax.set_xlabel(f"size on disk ({unit})")
        ax.set_title("Disk use per model")
        present = [s for s in SOURCES if any(e.source == s for e in rows)]
        handles = [Patch(color=SOURCE_COLOURS[s], label=SOURCE_LABELS[s]) for s in present]
        if any(e.shared_bytes for e in rows):
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="shared (counted once)"))
        if handles:  # below the axes: full-width bars leave no free corner inside them
            ax.legend(
                handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(handles), frameon=False
            )
        ax.grid(axis="x", alpha=0.3)

    return draw


def cache_sections(report: CacheReport) -> tuple[Section, ...]:
    models = report.models()
    leftovers = [e for e in report.entries if e.kind != "model"]
    rows = tuple(
        (
            e.source,
            e.name,
            size_text(e.size_bytes),
            size_text(e.shared_bytes) if e.shared_bytes else "",
            "; ".join(e.shared_with),
            date_text(e.last_used),
            date_text(e.modified),
            e.path,
        )
        for e in models + leftovers
    )
    table = Table(
        headers=("source", "model", "size", "shared", "shared with", "last used (UTC)", "modified (UTC)", "path"),
        rows=rows,
        caption="Every model in the three stores (leftovers last); sizes count each file once.",
        numeric=(2, 3),
    )
    total_rows = [
        (
            SOURCE_LABELS[t.source],
            str(t.models),
            size_text(t.logical_bytes),
            size_text(t.physical_bytes),
            size_text(t.incomplete_bytes),
            size_text(t.linked_elsewhere_bytes),
            t.root if t.exists else f"{t.root} (not present)",
        )
        for t in report.sources
    ]
    total_rows.append(
        (
            "all",
            str(len(models)),
            size_text(report.logical_bytes),
            size_text(report.physical_bytes),
            size_text(sum(t.incomplete_bytes for t in report.sources)),
            size_text(report.linked_elsewhere_bytes),
            "",
        )
    )
    totals = Table(
        headers=("source", "models", "logical", "physical", "partial/leftover", "also linked elsewhere", "location"),
        rows=tuple(total_rows),
        caption="Totals per source and overall.",
        numeric=(1, 2, 3, 4, 5),
    )
    charts: tuple[Chart, ...] = ()
    if models:
        charts = (
            Chart(
                id="cache-size-per-model",
                title="Disk use per model",
                draw=_draw(models),
                caption="Size of each model's files, coloured by store; hatching marks bytes shared with another "
                "model or linked from elsewhere.",
                alt="Horizontal bar chart of disk use per model: "
                + ", ".join(f"{e.name} {size_text(e.size_bytes)}" for e in sorted(models, key=lambda e: -e.size_bytes)),
            ),
        )
    saved = report.logical_bytes - report.physical_bytes
    paragraphs = (
        f"{len(models)} models take {size_text(report.physical_bytes)} on disk "
        f"({size_text(report.logical_bytes)} if every model's files were counted separately; "
        f"{size_text(saved)} are shared).",
    )
    notes = (
        "logical: the sum of every model's own size; a blob two models share is in both.",
        "physical: each file (inode) counted once across all three stores: what the disk actually holds.",
        "shared: bytes of this model also used by another model, or hardlinked from outside the stores "
        "(the installed package a bundled model ships in, an imported GGUF file): deleting the model does not "
        "free them.",
        "last used: the newest access time of the model's files (filesystems with relatime update it at most "
        "once a day); for lokal models, at least when the name was added.",
        "Ollama's store is read only: lokal lists it but never changes it.",
    )
    return (
        Section(
            title="Model cache",
            paragraphs=paragraphs + tuple(f"warning: {w}" for w in report.warnings),
            tables=(table, totals),
            charts=charts,
            notes=notes,
        ),
    )


def _report_sections(reports: Sequence[CacheReport]) -> list[Section]:
    return [section for report in reports for section in cache_sections(report)]


#: How `lokal report` reads and lays out a saved cache report: each report gets its own sections.
KIND = ResultKind(kind="cache", load=load_report, sections=_report_sections)
