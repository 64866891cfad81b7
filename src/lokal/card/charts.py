"""Interval charts for a card: one per figure that has several groups, each group's value with its confidence
interval and the value a model without the bias would get. A reader sees at once which intervals exclude that
value, and how wide they are (how little a small sample says).

Drawn with `lokal.report.charts.render_png` (headless, reproducible bytes), written beside the card as PNG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from lokal.audit.fairness import FairnessResult
from lokal.audit.result import Metric, SuiteResult
from lokal.card.evidence import suite_title
from lokal.report.document import Chart

#: Rows above which a chart would be unreadable at card width: the table still has every row.
MAX_ROWS = 40
#: Fairness rates charted per breakdown (the other two are in the table).
FAIRNESS_CHARTED = ("selection_rate", "accuracy")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def _interval(metric: Metric) -> tuple[float, float, float] | None:
    """A figure's value and interval bounds, when all three are finite numbers."""
    value, low, high = metric.value, metric.ci_low, metric.ci_high
    if value is None or low is None or high is None:
        return None
    return (value, low, high) if all(math.isfinite(v) for v in (value, low, high)) else None


def chart_height(rows: int) -> float:
    """Inches: room for each group's label, within sensible bounds."""
    return min(12.0, max(2.8, 1.4 + 0.32 * rows))


def interval_chart(chart_id: str, title: str, name: str, metrics: Sequence[Metric]) -> tuple[Chart, float] | None:
    """Chart of one figure (`name`) across groups, and its height in inches; None when fewer than two rows have
    an interval (one point says nothing a table does not) or there are too many to read."""
    found = [(m, interval) for m in metrics if (interval := _interval(m)) is not None]
    if len(found) < 2 or len(found) > MAX_ROWS:
        return None
    rows = [m for m, _ in found]
    labels = [f"{m.group or 'overall'} (N={m.n:,})" for m in rows]
    values: list[float] = []
    below: list[float] = []
    above: list[float] = []
    for _, (value, low, high) in found:
        values.append(float(value))
        below.append(values[-1] - float(low))
        above.append(float(high) - values[-1])
    ideals = {m.ideal for m in rows if m.ideal is not None}
    ideal = ideals.pop() if len(ideals) == 1 else None
    unit, confidence, scoring = rows[0].unit, rows[0].confidence, rows[0].scoring

    def draw(ax: Any) -> None:
        ys = list(range(len(rows)))
        ax.errorbar(
            values, ys, xerr=[below, above], fmt="o", color="#1f77b4", capsize=3, label=f"{confidence:.0%} interval"
        )
        if ideal is not None:
            ax.axvline(ideal, color="#d62728", linestyle="--", linewidth=1, label=f"without bias ({ideal:g})")
        ax.set_yticks(ys, labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, half a row of room at each end
        ax.set_title(title)
        ax.set_xlabel(f"{name} ({unit})" if unit else name)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="best")

    caption = f"{name} per group ({scoring} scoring) with {confidence:.0%} bootstrap intervals" + (
        f"; the dashed line is the value without bias ({ideal:g})" if ideal is not None else ""
    )
    return Chart(id=chart_id, title=title, draw=draw, caption=caption, alt=caption), chart_height(len(rows))


def suite_charts(suite: SuiteResult) -> list[tuple[Chart, float]]:
    by_name: dict[str, list[Metric]] = {}
    for m in suite.metrics:
        by_name.setdefault(m.name, []).append(m)
    charts = (
        interval_chart(f"{_slug(suite.suite)}-{_slug(name)}", f"{suite_title(suite)}: {name}", name, ms)
        for name, ms in by_name.items()
    )
    return [c for c in charts if c is not None]


def fairness_charts(result: FairnessResult) -> list[tuple[Chart, float]]:
    out = []
    for b in result.breakdowns:
        by = " × ".join(b.columns)
        for name in FAIRNESS_CHARTED:
            metrics = [m for g in b.groups for m in g.metrics if m.name == name]
            chart = interval_chart(f"fairness-{_slug(by)}-{_slug(name)}", f"{name} by {by}", name, metrics)
            if chart is not None:
                out.append(chart)
    return out
