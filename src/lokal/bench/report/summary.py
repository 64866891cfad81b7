"""The Summary section: what each result ran, and throughput and errors per load level."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.report.common import DASH, Run, fmt, fmt_pct, own_cpu, slo_text
from lokal.bench.result import BenchResult
from lokal.report.document import Section, Table


def _throughput_table(runs: Sequence[Run]) -> Table:
    with_slo = any(summary.slo is not None for run in runs for _, summary in run.levels)
    many = len(runs) > 1
    headers = [
        *(["Run"] if many else []),
        "Level",
        "Requests (N)",
        "Completed",
        "Failed",
        "Error rate",
        "Duration (s)",
        "Requests/s",
        "Output tokens/s",
        "Total tokens/s",
        *(["Goodput (req/s)", "SLO attainment"] if with_slo else []),
        "Token counts from",
    ]
    rows = []
    for run in runs:
        for level, s in run.levels:
            rows.append(
                (
                    *([run.name] if many else []),
                    level.label,
                    str(s.requests),
                    str(s.completed),
                    str(s.failed),
                    fmt_pct(s.error_rate),
                    fmt(s.duration_s, 2),
                    fmt(s.request_throughput, 2),
                    fmt(s.output_token_throughput, 1),
                    fmt(s.total_token_throughput, 1),
                    *([fmt(s.goodput, 2), fmt_pct(s.slo_attainment)] if with_slo else []),
                    ", ".join(s.token_sources) or DASH,
                )
            )
    first_numeric = 2 if many else 1
    last_numeric = len(headers) - 2
    return Table(
        headers=tuple(headers),
        rows=tuple(rows),
        caption="Throughput and errors per load level (warm-up requests excluded; duration is first send to last "
        "completion, tail included)",
        numeric=tuple(range(first_numeric, last_numeric + 1)),
    )


def _own_cpu_text(result: BenchResult) -> str:
    most = own_cpu(result)
    return f" lokal bench's own CPU: at most {most[0]:.1f} % of one core ({most[1]})." if most else ""


def summary_section(results: Sequence[BenchResult], runs: Sequence[Run]) -> Section:
    paragraphs = []
    for result in results:
        n = sum(len(lv.samples) for lv in result.levels)
        failed = sum(1 for lv in result.levels for s in lv.samples if not s.ok)
        where = result.target.kind + (f" at {result.target.url}" if result.target.url else "")
        paragraphs.append(
            f"{result.name}: {len(result.levels)} load levels (target: {where}), {n} measured requests "
            f"({failed} failed); SLO: {slo_text(result.config.slo)}; run at {result.created_at.isoformat()}."
            + _own_cpu_text(result)
        )
    return Section(title="Summary", paragraphs=tuple(paragraphs), tables=(_throughput_table(runs),))
