"""Bench's own charts: percentiles per load level, throughput against concurrency, batch size and offered rate,
memory over time, and the steps of an SLO search.

They take plain series (one per run) and draw with the generic toolkit in `lokal.report.charts` (its colours,
legend placement and axes), so every chart of a report looks alike. matplotlib is imported with this module:
the section modules import it inside the functions that build charts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib import colormaps
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from lokal.report.charts import (
    RUN_CMAPS,
    add_legend,
    color,
    indexed,
    nan_gaps,
    power_of_two_axis,
    start_at_zero,
)
from lokal.report.document import Chart


@dataclass(frozen=True)
class Percentiles:
    """One run's percentiles of one metric at each category (load level); None where not measured."""

    run: str
    by_percentile: dict[str, tuple[float | None, ...]] = field(default_factory=dict)  # "p50" -> values
    color_index: int | None = None  # the run's colour in every chart; default: its position here


def percentile_chart(
    id: str, title: str, categories: Sequence[str], runs: Sequence[Percentiles], *, ylabel: str, caption: str = ""
) -> Chart:
    """Grouped bars per load level: p50 (light) to p99 (dark) for each run, one colour family per run."""
    cats = tuple(categories)
    frozen = tuple(runs)

    def draw(ax: Any) -> None:
        percentiles = list(dict.fromkeys(p for run in frozen for p in run.by_percentile))
        shades = {p: 0.35 + 0.55 * k / max(1, len(percentiles) - 1) for k, p in enumerate(percentiles)}
        for i in range(len(cats)):
            # Only the runs that measured this level get a slot: no empty gaps inside a group.
            present = [
                (j, run)
                for j, run in indexed(frozen)
                if any(
                    v is not None and not math.isnan(v) for v in (run.by_percentile[p][i] for p in run.by_percentile)
                )
            ]
            slots = [(j, run, p) for j, run in present for p in run.by_percentile]
            width = 0.84 / max(1, len(slots))
            for k, (j, run, p) in enumerate(slots):
                value = run.by_percentile[p][i]
                cmap = colormaps[RUN_CMAPS[j % len(RUN_CMAPS)]]
                ax.bar(i - 0.42 + width * (k + 0.5), math.nan if value is None else value, width, color=cmap(shades[p]))
        ax.set_xticks(
            range(len(cats)),
            cats,
            fontsize=8,
            rotation=20 if len(cats) > 5 else 0,
            ha="right" if len(cats) > 5 else "center",
        )
        ax.set_title(title)
        ax.set_xlabel("load level")
        ax.set_ylabel(ylabel)
        start_at_zero(ax)
        ax.grid(axis="x", visible=False)
        # One legend entry per run (its colour family) and per percentile (light to dark), not one per pair;
        # with one run, the percentiles are shown in its own colours.
        shade_map = colormaps["Greys" if len(frozen) > 1 else RUN_CMAPS[0]]
        handles = [Patch(color=shade_map(shades[p]), label=p) for p in percentiles]
        if len(frozen) > 1:
            handles = [
                Patch(color=colormaps[RUN_CMAPS[j % len(RUN_CMAPS)]](0.75), label=run.run) for j, run in indexed(frozen)
            ] + handles
        ax.figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=7.5)

    return Chart(
        id=id,
        title=title,
        draw=draw,
        caption=caption,
        alt=f"{title}: bars of p50, p90, p95 and p99 per load level" + (" and run" if len(frozen) > 1 else ""),
    )


@dataclass(frozen=True)
class ThroughputLine:
    run: str
    x: tuple[float, ...]
    output_tok_s: tuple[float, ...]
    request_s: tuple[float, ...]
    color_index: int | None = None


def throughput_chart(id: str, title: str, lines: Sequence[ThroughputLine], *, xlabel: str, caption: str = "") -> Chart:
    """Output tokens/s against concurrency or batch size, one line per run, each point labelled with its
    requests/s (a second y axis would draw two nearly proportional lines on top of each other)."""
    frozen = tuple(lines)

    def draw(ax: Any) -> None:
        xs: list[float] = []
        for i, line in indexed(frozen):
            ax.plot(line.x, line.output_tok_s, color=color(i), marker="o", label=line.run)
            for x, tok, req in zip(line.x, line.output_tok_s, line.request_s, strict=True):
                ax.annotate(f"{req:.2f} req/s", (x, tok), textcoords="offset points", xytext=(5, -10), fontsize=7)
            xs.extend(line.x)
        power_of_two_axis(ax, xs)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("output throughput (tokens/s)")
        start_at_zero(ax)
        ax.margins(x=0.08, y=0.1)
        if len(frozen) > 1:
            add_legend(ax, loc="lower right")

    return Chart(
        id=id,
        title=title,
        draw=draw,
        caption=caption,
        alt=f"{title}: output tokens per second against {xlabel}, points labelled with requests per second",
    )


@dataclass(frozen=True)
class RateLine:
    run: str
    offered: tuple[float, ...]
    achieved: tuple[float, ...]
    goodput: tuple[float | None, ...] = ()
    color_index: int | None = None


def rate_chart(id: str, title: str, lines: Sequence[RateLine], *, caption: str = "") -> Chart:
    """Achieved requests/s (and goodput under the SLO) against the offered Poisson rate; the diagonal is a
    server that keeps up."""
    frozen = tuple(lines)

    def draw(ax: Any) -> None:
        top = max((v for line in frozen for v in line.offered), default=1.0)
        ax.plot([0, top], [0, top], color="#999999", linestyle=":", label="offered (keeps up)")
        for i, line in indexed(frozen):
            prefix = f"{line.run}: " if len(frozen) > 1 else ""
            ax.plot(line.offered, line.achieved, color=color(i), marker="o", label=f"{prefix}achieved requests/s")
            if line.goodput and any(v is not None for v in line.goodput):
                ax.plot(
                    line.offered,
                    nan_gaps(line.goodput),
                    color=color(i),
                    marker="^",
                    linestyle="--",
                    label=f"{prefix}goodput (requests/s meeting the SLO)",
                )
        ax.set_xlim(left=0)
        start_at_zero(ax)
        ax.set_title(title)
        ax.set_xlabel("offered rate (requests/s, Poisson arrivals)")
        ax.set_ylabel("requests/s")
        add_legend(ax)

    return Chart(
        id=id, title=title, draw=draw, caption=caption, alt=f"{title}: achieved throughput and goodput per offered rate"
    )


@dataclass(frozen=True)
class MemoryLine:
    run: str
    t_s: tuple[float, ...]
    rss_mb: tuple[float, ...]
    uss_mb: tuple[float | None, ...]
    #: (start s, end s, label) of each load level, shaded when a single run is drawn.
    spans: tuple[tuple[float, float, str], ...] = ()
    color_index: int | None = None


def memory_chart(
    id: str,
    title: str,
    lines: Sequence[MemoryLine],
    *,
    caption: str = "",
    xlabel: str = "time since the start of the run (s)",
) -> Chart:
    """RSS (solid) and USS (dashed) of the serving process tree over the run, load levels shaded and named."""
    frozen = tuple(lines)

    def draw(ax: Any) -> None:
        if len(frozen) == 1:
            for k, (start, end, label) in enumerate(frozen[0].spans):
                ax.axvspan(start, end, color="#1f77b4" if k % 2 == 0 else "#ff7f0e", alpha=0.08, linewidth=0)
                ax.annotate(
                    label,
                    ((start + end) / 2, 0.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 4),
                    textcoords="offset points",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    color="#555555",
                )
        for i, line in indexed(frozen):
            prefix = f"{line.run}: " if len(frozen) > 1 else ""
            # The peak goes in the legend: a label beside the line would sit on top of the other lines.
            rss_peak = max(line.rss_mb, default=0.0)
            ax.plot(line.t_s, line.rss_mb, color=color(i), label=f"{prefix}RSS (peak {rss_peak:,.0f} MB)")
            # USS is read less often than RSS (bench/memory.py): join the samples that have it.
            uss = [(t, v) for t, v in zip(line.t_s, line.uss_mb, strict=True) if v is not None]
            if uss:
                label = f"{prefix}USS (peak {max(v for _, v in uss):,.0f} MB)"
                ax.plot([t for t, _ in uss], [v for _, v in uss], color=color(i), linestyle="--", label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("memory (MB)")
        start_at_zero(ax)
        ax.margins(y=0.15)
        add_legend(ax, outside=True)

    return Chart(
        id=id,
        title=title,
        draw=draw,
        caption=caption,
        alt=f"{title}: resident (RSS) and unique (USS) memory in MB over time, by load level",
    )


def slo_search_chart(
    id: str, title: str, steps: Sequence[tuple[float, float, bool]], *, target: float, xlabel: str, caption: str = ""
) -> Chart:
    """Share of requests meeting the SLO at each step of the search (green met, red missed) and the target."""
    frozen = tuple(steps)
    over_concurrency = xlabel.startswith("concurrency")

    def draw(ax: Any) -> None:
        xs = [s[0] for s in frozen]
        ys = [100.0 * s[1] for s in frozen]
        ax.plot(xs, ys, color="#7f7f7f", linewidth=1, zorder=1)
        ax.scatter(xs, ys, c=["#2ca02c" if s[2] else "#d62728" for s in frozen], zorder=2, s=36)
        ax.axhline(100.0 * target, color="#555555", linestyle="--", linewidth=1, label=f"target {100 * target:g} %")
        if over_concurrency:
            power_of_two_axis(ax, xs)
        else:
            ax.set_xlim(left=0)
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("requests meeting the SLO (%)")
        add_legend(ax, loc="lower left")

    return Chart(
        id=id, title=title, draw=draw, caption=caption, alt=f"{title}: SLO attainment at each step against the target"
    )
