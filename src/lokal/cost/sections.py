"""A `CostResult` as report sections: the cost table, what it rests on, and a bar chart of $ per 1,000 requests."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from lokal.cost.model import CostResult, load
from lokal.report.document import Chart, Section, Table
from lokal.results import ResultKind

LOCAL_COLOUR = "#2563eb"
API_COLOUR = "#9ca3af"


def money(value: Decimal | None) -> str:
    """Dollars with three significant digits below $1 ($0.0000450), cents to $100, whole dollars above."""
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    places = -value.adjusted() + 2
    return f"${value:.{places}f}"


def number(value: Decimal | None, places: int = 0) -> str:
    return "-" if value is None else f"{value:,.{places}f}"


def _draw(result: CostResult) -> Any:
    local_label = f"local ({result.assumptions.hardware})"
    bars = [(local_label, result.figures.local.usd_per_1k_requests, LOCAL_COLOUR)]
    bars += [(a.ref, a.usd_per_1k_requests, API_COLOUR) for a in result.figures.apis]

    def draw(ax: Any) -> None:
        values = [float(v) for _, v, _ in bars]
        ax.bar(range(len(bars)), values, color=[c for _, _, c in bars])
        ax.set_xticks(range(len(bars)), [name for name, _, _ in bars], rotation=20, ha="right")
        positive = [v for v in values if v > 0]
        log = bool(positive) and max(positive) / min(positive) >= 50
        if log:
            ax.set_yscale("log")
        ax.set_ylabel("US$ per 1,000 requests" + (" (log scale)" if log else ""))
        ax.set_title(f"Cost per 1,000 requests: {result.inputs.model}, {result.inputs.level_label}")
        for x, (_, value, _) in enumerate(bars):
            ax.annotate(money(value), (x, float(value)), ha="center", va="bottom", fontsize=8)
        ax.margins(y=0.15)  # room for the value labels above the bars
        ax.grid(axis="y", alpha=0.3)

    return draw


def cost_sections(result: CostResult) -> tuple[Section, ...]:
    inputs, hw, local = result.inputs, result.assumptions, result.figures.local
    rows = [
        (
            f"local: {hw.hardware}",
            money(local.usd_per_request),
            money(local.usd_per_1k_requests),
            money(local.usd_per_1m_output_tokens),
            f"serves up to {number(local.capacity_requests_per_hour)} requests/hour",
        )
    ]
    for api in result.figures.apis:
        rows.append(
            (
                f"{api.ref} ({api.provider})",
                money(api.usd_per_request),
                money(api.usd_per_1k_requests),
                money(api.usd_per_1m_output_tokens),
                api.break_even.summary,
            )
        )
    costs = Table(
        headers=("where", "$ per request", "$ per 1,000 requests", "$ per 1M output tokens", "break-even"),
        rows=tuple(rows),
        caption=f"Cost of the same requests locally and through each API (prices: {result.price_source.package} "
        f"{result.price_source.version}, as of {result.price_source.prices_as_of}).",
        numeric=(1, 2, 3),
    )
    facts = Table(
        headers=("input or assumption", "value"),
        rows=(
            ("benchmark", inputs.bench_name + (f" ({inputs.bench_file})" if inputs.bench_file else "")),
            ("load level", f"{inputs.level_index}: {inputs.model} {inputs.level_label} ({inputs.level_choice})"),
            ("completed requests", f"{inputs.completed_requests} in {number(inputs.duration_s, 2)} s"),
            ("request throughput", f"{number(inputs.request_throughput, 3)} requests/s"),
            ("output-token throughput", f"{number(inputs.output_token_throughput, 1)} tokens/s"),
            (
                "tokens per request",
                f"{number(inputs.prompt_tokens_per_request, 1)} prompt + "
                f"{number(inputs.output_tokens_per_request, 1)} output ({inputs.token_counts})",
            ),
            ("hardware", hw.hardware_description),
            ("energy", f"{hw.watts} W × {money(hw.usd_per_kwh)}/kWh = {money(local.energy_usd_per_hour)}/hour"),
            (
                "local $/hour",
                f"{money(local.hardware_usd_per_hour)} hardware + {money(local.energy_usd_per_hour)} energy "
                f"= {money(local.usd_per_hour)}",
            ),
            ("fixed cost per month", f"{money(local.fixed_usd_per_month)} ({hw.hours_per_month} h)"),
            (
                "API prices",
                "; ".join(
                    f"{a.ref} = {a.model_name or a.model_id}: {money(a.input_usd_per_mtok)} in / "
                    f"{money(a.output_usd_per_mtok)} out per 1M tokens"
                    for a in result.figures.apis
                )
                or "-",
            ),
            (
                "price data",
                f"{result.price_source.package} {result.price_source.version}, {result.price_source.data}; "
                f"newest price change {result.price_source.latest_price_change or 'unknown'}",
            ),
        ),
        caption="What the figures rest on.",
    )
    chart = Chart(
        id="cost-per-1k-requests",
        title="Cost per 1,000 requests",
        draw=_draw(result),
        caption="Local cost at the measured throughput against each API's price for the same token counts.",
        alt="Bar chart of US$ per 1,000 requests: "
        + ", ".join(
            [f"local {money(local.usd_per_1k_requests)}"]
            + [f"{a.ref} {money(a.usd_per_1k_requests)}" for a in result.figures.apis]
        ),
    )
    return (
        Section(
            title="Cost",
            paragraphs=(
                f"At {number(inputs.request_throughput, 3)} requests/s ({inputs.model}, {inputs.level_label}), "
                f"1,000 requests cost {money(local.usd_per_1k_requests)} locally on {hw.hardware}.",
            ),
            tables=(costs, facts),
            charts=(chart,),
            notes=tuple(result.notes),
        ),
    )


def _report_sections(results: Sequence[CostResult]) -> list[Section]:
    return [section for result in results for section in cost_sections(result)]


#: How `lokal report` reads and lays out a saved cost result: each result gets its own sections.
KIND = ResultKind(kind="cost", load=load, sections=_report_sections)
