"""Chart drawing with matplotlib, headless and reproducible.

Every chart is drawn on its own `matplotlib.figure.Figure` with the Agg canvas; pyplot is never imported, so no
global figure state leaks from one chart into the next (or into a caller's own pyplot session). Each PNG is
drawn under matplotlib's default style plus a fixed rc (not the user's matplotlibrc) and saved without the
"Software" metadata field, so the same data gives the same PNG bytes on the same matplotlib: reports diff cleanly
and a re-rendered result gives an identical HTML page.

The chart builders take plain series, not results, and know nothing of what was measured: `line_chart`,
`bar_chart`, and the helpers a result kind's own charts share (`color`, `add_legend`, `start_at_zero`,
`power_of_two_axis`, ...). Bench's percentile, throughput, memory and SLO charts are in `lokal.bench.report.charts`.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

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
RUN_CMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


class Colored(Protocol):
    """A chart's series that may keep one colour across charts (`color_index`; None: its position)."""

    @property
    def color_index(self) -> int | None: ...


C = TypeVar("C", bound=Colored)


def indexed(items: Sequence[C]) -> list[tuple[int, C]]:
    """(colour index, item): the item's own `color_index` when set, so a run keeps its colour in every chart
    even where some runs have no data."""
    return [(i if item.color_index is None else item.color_index, item) for i, item in enumerate(items)]


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


def nan_gaps(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def add_legend(ax: Any, handles: list[Any] | None = None, *, outside: bool = False, **kwargs: Any) -> None:
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


def wrap_labels(labels: Sequence[str], slots: int) -> list[str]:
    """Wrap category labels to the width one category gets, so long run names do not run into each other."""
    width = max(10, int(90 / max(1, slots)))
    return ["\n".join(textwrap.fill(line, width) for line in label.split("\n")) for label in labels]


def start_at_zero(ax: Any) -> None:
    """Latency and throughput axes start at 0: a bar or line that starts elsewhere exaggerates differences."""
    ax.set_ylim(bottom=0)


def power_of_two_axis(ax: Any, values: Sequence[float]) -> None:
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
                nan_gaps(s.y),
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
            power_of_two_axis(ax, xs)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if from_zero:
            start_at_zero(ax)
        if len(frozen) > 1:
            add_legend(ax)

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
        ax.set_xticks(range(len(cats)), wrap_labels(cats, len(cats)))
        ax.set_title(title)
        if xlabel:
            ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.12)
        start_at_zero(ax)
        ax.grid(axis="x", visible=False)
        if len(data) > 1:
            add_legend(ax)

    return Chart(id=id, title=title, draw=draw, caption=caption, alt=alt or title)
