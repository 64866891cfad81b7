"""The summary `lokal bench` prints when it finishes (and `lokal report RESULT.json` without an output option):
one line per load level, then memory, cold start, the SLO search and the warnings. Plain text only, no colour or
box drawing, so it pipes and pastes cleanly; no chart, so matplotlib is not imported.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from lokal.bench.report.common import engines_compared, fmt, fmt_mb, fmt_pct, model_label, own_cpu, slo_text
from lokal.bench.report.view import BenchView, view_of
from lokal.bench.result import BenchResult
from lokal.report.console import WIDTH, text_table


def console_summary(results: Sequence[BenchResult] | BenchView) -> str:
    """What a user needs at a glance after a run: one line per load level, then memory, cold start and warnings."""
    view = view_of(results)
    results, runs = view.results, view.runs
    lines: list[str] = []
    show_engine = engines_compared(results)
    with_slo = any(r.config.slo is not None for r in results)
    for result in results:
        lines.append(f"{result.name} (SLO: {slo_text(result.config.slo)})" if with_slo else result.name)
        rows = []
        for run in (r for r in runs if r.result is result):
            multi = len(result.target.models) > 1 or len({(lv.model, lv.engine) for lv in result.levels}) > 1
            for lv, s in run.levels:
                rows.append(
                    (
                        *([run.label] if multi else []),
                        lv.label,
                        f"{s.completed}/{s.requests} ok",
                        f"{fmt(s.request_throughput, 2)} req/s",
                        f"{fmt(s.output_token_throughput)} tok/s",
                        f"TTFT p50/p99 {fmt(s.ttft_ms.p50)}/{fmt(s.ttft_ms.p99)} ms",
                        f"TPOT p50 {fmt(s.tpot_ms.p50)} ms",
                        f"E2EL p50 {fmt(s.e2el_ms.p50)} ms",
                        *([f"drafts {fmt_pct(s.draft_acceptance)} accepted"] if s.draft_acceptance is not None else []),
                        *(
                            [f"goodput {fmt(s.goodput, 2)} req/s ({fmt_pct(s.slo_attainment)})"]
                            if s.goodput is not None
                            else []
                        ),
                    )
                )
        if rows:
            width = max(len(r) for r in rows)
            rows = [tuple(r) + ("",) * (width - len(r)) for r in rows]
            table = text_table([""] * width, rows, numeric=())
            lines += ["  " + row for row in table.splitlines()[1:]]
        if (most := own_cpu(result)) is not None:
            lines.append(f"  lokal bench's own CPU: at most {most[0]:.1f}% of one core ({most[1]})")
        if result.memory is not None and result.memory.samples:
            lines.append(
                f"  memory: peak RSS {fmt_mb(result.memory.peak_rss_bytes)} MB, "
                f"peak USS {fmt_mb(result.memory.peak_uss_bytes)} MB"
            )
        for c in result.cold_start:
            load = "load n/a" if c.load_s is None else f"load {c.load_s:.2f} s"
            lines.append(
                f"  cold start {model_label(c.model, c.engine, show_engine)}: {load}, "
                f"first TTFT {fmt(c.first_ttft_ms)} ms, warm {fmt(c.warm_ttft_ms)} ms"
            )
        if result.slo_search is not None:
            best = "none met it" if result.slo_search.best is None else f"{result.slo_search.best:g}"
            lines.append(f"  highest {result.slo_search.over} meeting the SLO: {best}")
    lines += [textwrap.fill(f"warning: {w}", WIDTH, subsequent_indent="  ") for w in view.warnings.in_console]
    return "\n".join(lines)
