"""Console renderers: the compact summary `lokal bench` prints when it finishes (one line per load level), and a
plain-text rendering of any `Document` (generic over sections, like the Markdown and HTML renderers).

Plain text only, no colour or box drawing, so it pipes and pastes cleanly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from lokal.bench.result import BenchResult
from lokal.report.bench import (
    build_runs,
    derived_warnings,
    engines_compared,
    fmt,
    fmt_mb,
    fmt_pct,
    model_label,
    own_cpu,
    slo_text,
)
from lokal.report.document import Document, Section, Table

WIDTH = 100


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell, numbers right-aligned; trailing spaces trimmed."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def console_summary(results: Sequence[BenchResult]) -> str:
    """What a user needs at a glance after a run: one line per load level, then memory, cold start and warnings."""
    lines: list[str] = []
    runs = build_runs(results)
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
    many = len(results) > 1
    warnings = [f"{r.name}: {w}" if many else w for r in results for w in r.warnings]
    warnings += derived_warnings(runs, sample_size=False)
    lines += [textwrap.fill(f"warning: {w}", WIDTH, subsequent_indent="  ") for w in warnings]
    return "\n".join(lines)


def _section_text(section: Section, depth: int) -> list[str]:
    mark = "=" if depth == 0 else "-"
    out = ["", section.title, mark * len(section.title)]
    out += [textwrap.fill(p, WIDTH) for p in section.paragraphs]
    for t in section.tables:
        out += _table_text(t)
    out += [f"[chart: {c.title}]" for c in section.charts]
    out += [textwrap.fill(n, WIDTH, initial_indent="- ", subsequent_indent="  ") for n in section.notes]
    for sub in section.subsections:
        out += _section_text(sub, depth + 1)
    return out


def _table_text(table: Table) -> list[str]:
    head = [table.caption] if table.caption else []
    return [*head, text_table(table.headers, table.rows, table.numeric), ""]


def render_text(doc: Document) -> str:
    """Any document as plain text: headings underlined, tables as aligned columns, charts named."""
    lines = [doc.title, *([doc.subtitle] if doc.subtitle else [])]
    for section in doc.sections:
        lines += _section_text(section, 0)
    return "\n".join(lines).rstrip() + "\n"
