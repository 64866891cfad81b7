"""A bench report: every section in order (`bench_sections`), the document the renderers draw
(`bench_document`), the figures as plain JSON (`summary_json`), and the `ResultKind` `lokal report` reads
bench results by (`KIND`).

Every number comes from `lokal.bench.metrics.summarize` over the saved samples, never from figures the run
printed, so `lokal report RESULT.json` and the run that wrote RESULT.json show the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lokal.bench.metrics import Stats
from lokal.bench.report.cold_start import cold_start_section
from lokal.bench.report.common import P_KEYS
from lokal.bench.report.config import config_section
from lokal.bench.report.definitions import definitions_section
from lokal.bench.report.latency import latency_section
from lokal.bench.report.memory import memory_section
from lokal.bench.report.models import models_section
from lokal.bench.report.slo import slo_section
from lokal.bench.report.summary import summary_section
from lokal.bench.report.throughput import throughput_section
from lokal.bench.report.view import BenchView, view_of
from lokal.bench.report.warnings import warnings_section
from lokal.bench.result import BenchResult, load
from lokal.report.document import Document, Section
from lokal.results import ResultKind


def bench_sections(results: Sequence[BenchResult] | BenchView) -> list[Section]:
    """Every section of a bench report, for one result or several side by side."""
    view = view_of(results)
    if not view.results:
        raise ValueError("bench_sections needs at least one result")
    shown, runs = view.results, view.runs
    sections = [
        summary_section(shown, runs),
        latency_section(runs),
        throughput_section(runs),
        models_section(shown, runs),
        memory_section(shown),
        cold_start_section(shown, runs),
        slo_section(shown),
        warnings_section(view),
        config_section(shown),
        definitions_section(),
    ]
    return [s for s in sections if s is not None]


def bench_document(results: Sequence[BenchResult] | BenchView) -> Document:
    view = view_of(results)
    shown = view.results
    if len(shown) == 1:
        title = f"lokal bench: {shown[0].name}"
        subtitle = f"run at {shown[0].created_at.isoformat()}, lokal {shown[0].lokal_version}"
    else:
        title = f"lokal bench: {len(shown)} runs compared"
        subtitle = "; ".join(f"{r.name} ({r.created_at.isoformat()})" for r in shown)
    return Document(title=title, subtitle=subtitle, sections=tuple(bench_sections(view)))


def _stats_json(prefix: str, st: Stats) -> dict[str, Any]:
    """vLLM-compatible keys (mean_ttft_ms, median_ttft_ms, p99_ttft_ms, ...) so existing dashboards read them."""
    unit = prefix.rsplit("_", 1)[-1]
    base = prefix.removesuffix(f"_{unit}")
    out: dict[str, Any] = {f"n_{base}": st.n}
    for key, value in (("mean", st.mean), ("std", st.std), ("median", st.p50), ("min", st.min), ("max", st.max)):
        out[f"{key}_{base}_{unit}"] = value
    for p in P_KEYS:
        out[f"{p}_{base}_{unit}"] = getattr(st, p)
    return out


def summary_json(results: Sequence[BenchResult] | BenchView) -> list[dict[str, Any]]:
    """The figures of every load level as plain JSON (what `lokal report --json` prints), in each result's
    order of levels."""
    view = view_of(results)
    summaries = {id(lv): s for run in view.runs for lv, s in run.levels}
    out = []
    for result in view.results:
        levels = []
        for lv in result.levels:
            s = summaries[id(lv)]
            entry: dict[str, Any] = {
                "model": lv.model,
                "engine": lv.engine,
                "level": lv.label,
                "mode": lv.mode,
                "concurrency": lv.concurrency,
                "rate": lv.rate,
                "batch_size": lv.batch_size,
                "num_requests": s.requests,
                "completed": s.completed,
                "failed": s.failed,
                "error_rate": s.error_rate,
                "duration_s": s.duration_s,
                "request_throughput": s.request_throughput,
                "output_throughput": s.output_token_throughput,
                "total_token_throughput": s.total_token_throughput,
                "total_output_tokens": s.output_tokens,
                "total_input_tokens": s.prompt_tokens,
                "token_sources": list(s.token_sources),
                "request_goodput": s.goodput,
                "slo_attainment": s.slo_attainment,
                "draft_acceptance": s.draft_acceptance,
                "errors": list(s.errors),
            }
            for name in ("ttft_ms", "itl_ms", "tpot_ms", "e2el_ms", "e2el_from_schedule_ms"):
                entry.update(_stats_json(name, getattr(s, name)))
            for name, st in (
                ("server_prompt_eval_ms", s.server_prompt_eval_ms),
                ("server_eval_ms", s.server_eval_ms),
                ("server_output_tps", s.server_tokens_per_s),
            ):
                entry.update(_stats_json(name, st))
            levels.append(entry)
        out.append(
            {
                "kind": "bench",
                "name": result.name,
                "created_at": result.created_at.isoformat(),
                "lokal_version": result.lokal_version,
                "target": result.target.model_dump(mode="json"),
                "slo": None if result.config.slo is None else result.config.slo.model_dump(mode="json"),
                "levels": levels,
                "peak_rss_bytes": result.memory.peak_rss_bytes if result.memory else None,
                "peak_uss_bytes": result.memory.peak_uss_bytes if result.memory else None,
                "cold_start": [c.model_dump(mode="json") for c in result.cold_start],
                "engines": [e.model_dump(mode="json") for e in result.engines],
                "slo_search": None if result.slo_search is None else result.slo_search.model_dump(mode="json"),
                "warnings": list(result.warnings),
            }
        )
    return out


#: How `lokal report` reads and lays out saved bench results: all of them side by side in one set of sections.
KIND = ResultKind(kind="bench", load=load, sections=bench_sections)
