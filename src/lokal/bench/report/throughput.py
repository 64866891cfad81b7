"""The Throughput section: output tokens/s against concurrency and batch size, and requests/s and goodput
against the offered rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lokal.bench.report.common import Run
from lokal.report.document import Chart, Section

# charts (and so matplotlib, ~0.4 s to import) is imported inside the functions that build charts: the console
# summary at the end of `lokal bench` and `lokal report RESULT.json` need only the numbers.
if TYPE_CHECKING:
    from lokal.bench.report import charts


def _sweep_lines(runs: Sequence[Run], mode: str) -> list[charts.ThroughputLine]:
    from lokal.bench.report import charts

    lines = []
    for run in runs:
        ordered = sorted(
            (
                (lv.concurrency if mode == "concurrency" else lv.batch_size, s)
                for lv, s in run.levels
                if lv.mode == mode
            ),
            key=lambda p: p[0] or 0,
        )
        points = [(x, s) for x, s in ordered if x]
        if points:
            lines.append(
                charts.ThroughputLine(
                    run=run.name,
                    color_index=run.index,
                    x=tuple(float(x) for x, _ in points),
                    output_tok_s=tuple(s.output_token_throughput for _, s in points),
                    request_s=tuple(s.request_throughput for _, s in points),
                )
            )
    return lines


def throughput_section(runs: Sequence[Run]) -> Section | None:
    from lokal.bench.report import charts

    chart_list: list[Chart] = []
    conc = _sweep_lines(runs, "concurrency")
    if any(len(line.x) > 1 for line in conc):
        chart_list.append(
            charts.throughput_chart(
                "throughput-concurrency",
                "Throughput vs concurrency",
                conc,
                xlabel="concurrency (requests in flight)",
                caption="Closed loop: each worker sends its next request when the previous one completes.",
            )
        )
    batch = _sweep_lines(runs, "batch")
    if any(len(line.x) > 1 for line in batch):
        chart_list.append(
            charts.throughput_chart(
                "throughput-batch",
                "Throughput vs batch size",
                batch,
                xlabel="batch size (sequences decoded together)",
                caption="In-process engine: all sequences of a batch submitted together.",
            )
        )
    rate_lines = []
    for run in runs:
        points = sorted(((lv.rate, s) for lv, s in run.levels if lv.mode == "rate" and lv.rate), key=lambda p: p[0])
        if points:
            rate_lines.append(
                charts.RateLine(
                    run=run.name,
                    color_index=run.index,
                    offered=tuple(r for r, _ in points),
                    achieved=tuple(s.request_throughput for _, s in points),
                    goodput=tuple(s.goodput for _, s in points),
                )
            )
    if rate_lines:
        chart_list.append(
            charts.rate_chart(
                "throughput-rate",
                "Throughput and goodput vs offered rate",
                rate_lines,
                caption="Open loop: requests arrive at the offered rate whether or not earlier ones have finished.",
            )
        )
    if not chart_list:
        return None
    return Section(title="Throughput", charts=tuple(chart_list))
