"""Chart drawing with matplotlib, headless and reproducible.

Every chart is drawn on its own `matplotlib.figure.Figure` with the Agg canvas; pyplot is never imported, so no
global figure state leaks from one chart into the next (or into a caller's own pyplot session). Each PNG is
drawn under matplotlib's default style plus a fixed rc (not the user's matplotlibrc) and saved without the
"Software" metadata field, so the same data gives the same PNG bytes on the same matplotlib: reports diff cleanly
and a re-rendered result gives an identical HTML page.

The chart builders take plain series, not results, so cost and cache reports can use them too: `line_chart`,
`bar_chart`; the others (`percentile_chart`, `throughput_chart`, ...) are shaped for bench results.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.style
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from lokal.report.document import Chart

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

#: Figure size (inches) and resolution: 800 x 450 px, readable in a report column and in a Markdown viewer.
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 100

_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "lokal",  # deterministic ids should a chart ever be saved as SVG
    "font.family": "DejaVu Sans",  # shipped with matplotlib: the same glyphs everywhere
    "font.size": 9.0,
    "axes.titlesize": 11.0,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.85,
}

#: Colour per run (matplotlib's tab10), the same run keeps its colour in every chart of a report.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
#: Sequential colour maps, one per run, for bars that shade one run's percentiles from light to dark.
_RUN_CMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _indexed(items: Sequence[Any]) -> list[tuple[int, Any]]:
    """(colour index, item): the item's own `color_index` when set, so a run keeps its colour in every chart
    even where some runs have no data."""
    return [
        (i if getattr(item, "color_index", None) is None else item.color_index, item) for i, item in enumerate(items)
    ]


def render_png(chart: Chart, *, width_in: float = WIDTH_IN, height_in: float = HEIGHT_IN, dpi: int = DPI) -> bytes:
    """Draw `chart` on a fresh Figure and return the PNG bytes (the same input gives the same bytes)."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        chart.draw(ax)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def _legend(ax: Any, handles: list[Any] | None = None, *, outside: bool = False, **kwargs: Any) -> None:
    """A legend inside the axes while it is small; below the plot once it has more than four entries, where
    it cannot hide data."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if not handles:
        return
    if outside or len(handles) > 4:
        longest = max(len(h.get_label()) for h in handles)
        ncols = min(len(handles), 4 if longest <= 25 else 2 if longest <= 50 else 1)
        ax.figure.legend(handles=handles, loc="outside lower center", ncols=ncols)
    else:
        ax.legend(handles=handles, **kwargs)


def _wrap(labels: Sequence[str], slots: int) -> list[str]:
    """Wrap category labels to the width one category gets, so long run names do not run into each other."""
    width = max(10, int(90 / max(1, slots)))
    return ["\n".join(textwrap.fill(line, width) for line in label.split("\n")) for label in labels]


def _from_zero(ax: Any) -> None:
    """Latency and throughput axes start at 0: a bar or line that starts elsewhere exaggerates differences."""
    ax.set_ylim(bottom=0)


def _power_of_two_axis(ax: Any, values: Sequence[float]) -> None:
    """Concurrency and batch sweeps double; a log2 axis spaces 1, 2, 4, 8, 16 evenly and labels the values."""
    ticks = sorted({v for v in values if v > 0})
    if len(ticks) > 1 and ticks[-1] / ticks[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


# --- generic -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line: `y[i]` at `x[i]`; None is a gap."""

    name: str
    x: tuple[float, ...]
    y: tuple[float | None, ...]
    color: str | None = None
    linestyle: str = "-"
    marker: str = "o"
    labels: tuple[str, ...] = ()  # text beside each point (e.g. model names), or none


def line_chart(
    id: str,
    title: str,
    series: Sequence[Series],
    *,
    xlabel: str,
    ylabel: str,
    caption: str = "",
    alt: str = "",
    power_of_two_x: bool = False,
    from_zero: bool = True,
) -> Chart:
    """Lines of (x, y) points, one per series, with a legend when there is more than one."""
    frozen = tuple(series)

    def draw(ax: Any) -> None:
        xs: list[float] = []
        for i, s in enumerate(frozen):
            ax.plot(
                s.x,
                _nan(s.y),
                label=s.name,
                color=s.color or color(i),
                linestyle=s.linestyle,
                marker=s.marker,
                markersize=5,
            )
            for x, y, text in zip(s.x, s.y, s.labels, strict=False):
                if y is not None and text:
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            xs.extend(s.x)
        if power_of_two_x and xs:
            _power_of_two_axis(ax, xs)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if from_zero:
            _from_zero(ax)
        if len(frozen) > 1:
            _legend(ax)

    return Chart(id=id, title=title, draw=draw, caption=caption, alt=alt or title)


def bar_chart(
    id: str,
    title: str,
    categories: Sequence[str],
    groups: dict[str, Sequence[float | None]],
    *,
    ylabel: str,
    xlabel: str = "",
    caption: str = "",
    alt: str = "",
    colors: Sequence[str] | None = None,
    value_format: str = "{:.0f}",
) -> Chart:
    """Grouped vertical bars: one group per category, one bar per entry of `groups` (legend when > 1),
    each bar labelled with its value."""
    cats = tuple(categories)
    data = {name: tuple(values) for name, values in groups.items()}
    palette = tuple(colors) if colors else tuple(color(i) for i in range(len(data)))

    def draw(ax: Any) -> None:
        n = max(1, len(data))
        width = 0.8 / n
        for k, (name, values) in enumerate(data.items()):
            xs = [i - 0.4 + width * (k + 0.5) for i in range(len(cats))]
            bars = ax.bar(xs, [0.0 if v is None else v for v in values], width, label=name, color=palette[k])
            ax.bar_label(
                bars, labels=["n/a" if v is None else value_format.format(v) for v in values], fontsize=7, padding=2
            )
        ax.set_xticks(range(len(cats)), _wrap(cats, len(cats)))
        ax.set_title(title)
        if xlabel:
            ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.12)
        _from_zero(ax)
        ax.grid(axis="x", visible=False)
        if len(data) > 1:
            _legend(ax)

    return Chart(id=id, title=title, draw=draw, caption=caption, alt=alt or title)


# --- bench ---------------------------------------------------------------------------------------------------


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
                for j, run in _indexed(frozen)
                if any(
                    v is not None and not math.isnan(v) for v in (run.by_percentile[p][i] for p in run.by_percentile)
                )
            ]
            slots = [(j, run, p) for j, run in present for p in run.by_percentile]
            width = 0.84 / max(1, len(slots))
            for k, (j, run, p) in enumerate(slots):
                value = run.by_percentile[p][i]
                cmap = colormaps[_RUN_CMAPS[j % len(_RUN_CMAPS)]]
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
        _from_zero(ax)
        ax.grid(axis="x", visible=False)
        # One legend entry per run (its colour family) and per percentile (light to dark), not one per pair;
        # with one run, the percentiles are shown in its own colours.
        shade_map = colormaps["Greys" if len(frozen) > 1 else _RUN_CMAPS[0]]
        handles = [Patch(color=shade_map(shades[p]), label=p) for p in percentiles]
        if len(frozen) > 1:
            handles = [
                Patch(color=colormaps[_RUN_CMAPS[j % len(_RUN_CMAPS)]](0.75), label=run.run)
                for j, run in _indexed(frozen)
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
        for i, line in _indexed(frozen):
            ax.plot(line.x, line.output_tok_s, color=color(i), marker="o", label=line.run)
            for x, tok, req in zip(line.x, line.output_tok_s, line.request_s, strict=True):
                ax.annotate(f"{req:.2f} req/s", (x, tok), textcoords="offset points", xytext=(5, -10), fontsize=7)
            xs.extend(line.x)
        _power_of_two_axis(ax, xs)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("output throughput (tokens/s)")
        _from_zero(ax)
        ax.margins(x=0.08, y=0.1)
        if len(frozen) > 1:
            _legend(ax, loc="lower right")

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
        for i, line in _indexed(frozen):
            prefix = f"{line.run}: " if len(frozen) > 1 else ""
            ax.plot(line.offered, line.achieved, color=color(i), marker="o", label=f"{prefix}achieved requests/s")
            if line.goodput and any(v is not None for v in line.goodput):
                ax.plot(
                    line.offered,
                    _nan(line.goodput),
                    color=color(i),
                    marker="^",
                    linestyle="--",
                    label=f"{prefix}goodput (requests/s meeting the SLO)",
                )
        ax.set_xlim(left=0)
        _from_zero(ax)
        ax.set_title(title)
        ax.set_xlabel("offered rate (requests/s, Poisson arrivals)")
        ax.set_ylabel("requests/s")
        _legend(ax)

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
        for i, line in _indexed(frozen):
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
        _from_zero(ax)
        ax.margins(y=0.15)
        _legend(ax, outside=True)

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
            _power_of_two_axis(ax, xs)
        else:
            ax.set_xlim(left=0)
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("requests meeting the SLO (%)")
        _legend(ax, loc="lower left")

    return Chart(
        id=id, title=title, draw=draw, caption=caption, alt=f"{title}: SLO attainment at each step against the target"
    )
