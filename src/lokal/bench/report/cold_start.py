"""The Cold start section: model load time, and the first request's TTFT against warm ones."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.report.common import DASH, Run, engines_compared, fmt, model_label
from lokal.bench.result import BenchResult
from lokal.report.document import Section, Table

#: Load facts left out of the cold start notes: the engine is in the label already, and a cache path is long
#: and differs from machine to machine.
_LOAD_INFO_HIDDEN = ("runtime", "cache")


def cold_start_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section | None:
    from lokal.report import charts

    entries = [(r, c) for r in results for c in r.cold_start]
    if not entries:
        return None
    many = len(results) > 1
    show_engine = engines_compared(results)
    labels = [model_label(c.model, c.engine, show_engine) for _, c in entries]
    rows = []
    for (r, c), label in zip(entries, labels, strict=True):
        ratio = c.first_ttft_ms / c.warm_ttft_ms if c.first_ttft_ms and c.warm_ttft_ms else None
        rows.append(
            (
                *([r.name] if many else []),
                label,
                fmt(c.load_s, 3),
                fmt(c.first_ttft_ms),
                fmt(c.warm_ttft_ms),
                DASH if ratio is None else f"{ratio:.1f}×",
            )
        )
    headers = (
        *(["Run"] if many else []),
        "Model (engine)" if show_engine else "Model",
        "Load (s)",
        "First TTFT (ms)",
        "Warm TTFT (ms)",
        "First / warm",
    )
    run_names = {(id(run.result), run.model, run.engine): run.name for run in runs}
    categories = [
        run_names.get((id(r), c.model, c.engine), f"{r.name}\n{label}") if many else label
        for (r, c), label in zip(entries, labels, strict=True)
    ]
    paragraphs = tuple(
        f"{label}" + (f" ({r.name})" if many else "") + ": " + ", ".join(f"{k} {v}" for k, v in shown.items()) + "."
        for (r, c), label in zip(entries, labels, strict=True)
        if (shown := {k: v for k, v in c.load_info.items() if k not in _LOAD_INFO_HIDDEN})
    )
    chart = charts.bar_chart(
        "cold-start",
        "Cold start",
        categories,
        {
            "model load (ms)": [None if c.load_s is None else 1000.0 * c.load_s for _, c in entries],
            "first request TTFT (ms)": [c.first_ttft_ms for _, c in entries],
            "warm TTFT, median (ms)": [c.warm_ttft_ms for _, c in entries],
        },
        ylabel="time (ms)",
        caption="Loading the model from nothing, then the first request's TTFT (cold caches) against warm ones.",
        alt="Cold start: model load time, first-request TTFT and warm TTFT in milliseconds per model",
    )
    return Section(
        title="Cold start",
        paragraphs=paragraphs,
        tables=(
            Table(
                headers=headers, rows=tuple(rows), caption="Cold start", numeric=tuple(range(1 + many, len(headers)))
            ),
        ),
        charts=(chart,),
    )
