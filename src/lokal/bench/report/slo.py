"""The SLO section: each result's objectives, and the steps of an SLO search."""

from __future__ import annotations

from collections.abc import Sequence

from lokal.bench.report.common import DASH, fmt_pct, slo_text
from lokal.bench.result import BenchResult
from lokal.report.document import Section, Table


def slo_section(results: Sequence[BenchResult]) -> Section | None:
    from lokal.bench.report import charts

    searched = [r for r in results if r.slo_search is not None]
    if not searched and all(r.config.slo is None for r in results):
        return None
    paragraphs = [f"{r.name}: SLO {slo_text(r.config.slo)}." for r in results if r.config.slo is not None]
    tables = []
    chart_list = []
    for k, r in enumerate(searched):
        search = r.slo_search
        assert search is not None
        unit = "concurrency" if search.over == "concurrency" else "rate (req/s)"
        best = DASH if search.best is None else f"{search.best:g}"
        paragraphs.append(
            f"{r.name}: the highest {search.over} at which at least {100 * search.target_fraction:g} % of requests "
            f"met the SLO: {best}" + ("" if search.best is not None else " (none met it)") + "."
        )
        tables.append(
            Table(
                headers=(unit.capitalize(), "Requests meeting the SLO", "Met"),
                rows=tuple(
                    (f"{s.value:g}", fmt_pct(s.goodput_fraction), "yes" if s.met else "no") for s in search.steps
                ),
                caption=f"SLO search ({r.name})" if len(results) > 1 else "SLO search",
                numeric=(0, 1),
            )
        )
        chart_list.append(
            charts.slo_search_chart(
                "slo-search" if len(searched) == 1 else f"slo-search-{k + 1}",
                "SLO search" + (f": {r.name}" if len(searched) > 1 else ""),
                [(s.value, s.goodput_fraction, s.met) for s in search.steps],
                target=search.target_fraction,
                xlabel=f"{unit}" if search.over == "rate" else "concurrency (requests in flight)",
                caption=f"Each step of the search; the dashed line is the {100 * search.target_fraction:g} % target.",
            )
        )
    return Section(title="SLO", paragraphs=tuple(paragraphs), tables=tuple(tables), charts=tuple(chart_list))
