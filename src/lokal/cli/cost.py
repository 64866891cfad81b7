"""`lokal cost RESULT.json`: local $ per 1,000 requests and per 1M output tokens against cloud APIs.

The command only parses arguments and prints; `lokal.cost` computes, `lokal.bench.result` reads the bench
result and `lokal.results` saves the cost result.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from lokal.cli._output import print_json, table, warn
from lokal.cost.presets import DEFAULT_PRESET, DEFAULT_USD_PER_KWH, PRESETS
from lokal.cost.prices import DEFAULT_APIS


class DecimalType(click.ParamType):
    """A non-negative decimal number, kept exact (no float)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        from lokal.cost.compute import to_decimal
        from lokal.cost.prices import CostError

        try:
            return to_decimal(value, f"--{param.name.replace('_', '-')}" if param and param.name else "value")
        except CostError as exc:
            self.fail(str(exc), param, ctx)


def _presets_help() -> str:
    return "\n".join(f"  {name:<16} {p.description}" for name, p in PRESETS.items())


def _print_result(result: Any) -> None:
    from lokal.cost.sections import money, number

    inputs, hw, local = result.inputs, result.assumptions, result.figures.local
    click.echo(
        f"{inputs.bench_name}: level {inputs.level_index} ({inputs.model}, {inputs.level_label}; {inputs.level_choice})"
    )
    click.echo(
        f"  measured: {number(inputs.request_throughput, 3)} requests/s, "
        f"{number(inputs.output_token_throughput, 1)} output tokens/s; per request "
        f"{number(inputs.prompt_tokens_per_request, 1)} prompt + {number(inputs.output_tokens_per_request, 1)} "
        f"output tokens ({inputs.completed_requests} requests)"
    )
    click.echo(f"  hardware: {hw.hardware_description}")
    click.echo(
        f"  local $/hour: {money(local.hardware_usd_per_hour)} hardware + {money(local.energy_usd_per_hour)} energy "
        f"({hw.watts} W × {money(hw.usd_per_kwh)}/kWh) = {money(local.usd_per_hour)}"
    )
    click.echo("")
    rows = [
        [
            f"local ({hw.hardware})",
            money(local.usd_per_1k_requests),
            money(local.usd_per_1m_output_tokens),
            f"serves up to {number(local.capacity_requests_per_hour)} requests/hour",
        ]
    ]
    rows += [
        [
            api.ref,
            money(api.usd_per_1k_requests),
            money(api.usd_per_1m_output_tokens),
            api.break_even.summary,
        ]
        for api in result.figures.apis
    ]
    click.echo(table(rows, ["WHERE", "$/1K REQUESTS", "$/1M OUTPUT TOKENS", "BREAK-EVEN"]))
    click.echo("")
    source = result.price_source
    click.echo(
        f"API prices: {source.package} {source.version} ({source.data}), for {source.prices_as_of}; "
        f"newest price change in the data: {source.latest_price_change or 'unknown'}"
    )
    for note in result.notes:
        click.echo(f"  {note}")


@click.command(
    "cost",
    epilog="\b\nHardware presets (--preset):\n" + _presets_help(),
)
@click.argument("result_file", metavar="RESULT.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--level", metavar="LEVEL", help="Load level to cost: its index (0 = first) or label, e.g. 'sync'.")
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    help=f"Typical machine (default: {DEFAULT_PRESET} unless --hardware-usd-per-hour is given). See below.",
)
@click.option("--hardware-usd-per-hour", type=DecimalType(), metavar="USD", help="Your machine's cost per hour.")
@click.option("--watts", type=DecimalType(), metavar="W", help="Power drawn while serving (default: the preset's).")
@click.option(
    "--usd-per-kwh", type=DecimalType(), metavar="USD", help=f"Electricity price (default: {DEFAULT_USD_PER_KWH})."
)
@click.option(
    "--api",
    "apis",
    multiple=True,
    metavar="MODEL",
    help=f"Cloud model to compare, repeatable; PROVIDER/MODEL picks a provider (default: {', '.join(DEFAULT_APIS)}).",
)
@click.option(
    "--prompt-tokens",
    type=click.IntRange(min=0),
    metavar="N",
    help="Prompt tokens per request for the API prices, when the result has no counts (or to try another).",
)
@click.option("--output", "output", type=click.Path(dir_okay=False, path_type=Path), help="Save the result as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--chart", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png", help="Draw the cost bar chart."
)
def cost(
    result_file: Path,
    level: str | None,
    preset: str | None,
    hardware_usd_per_hour: Decimal | None,
    watts: Decimal | None,
    usd_per_kwh: Decimal | None,
    apis: tuple[str, ...],
    prompt_tokens: int | None,
    output: Path | None,
    as_json: bool,
    chart: Path | None,
) -> None:
    """What requests cost on this hardware, and through cloud APIs, from a saved `lokal bench` result.

    Local cost is hardware $/hour (a preset, or --hardware-usd-per-hour) plus energy (--watts ×
    --usd-per-kwh), divided by the throughput measured at the level with the highest output-token
    throughput (or --level). API cost prices the same prompt and output tokens per request with
    genai-prices' bundled price data. Break-even is the volume above which local is cheaper.

    \b
    Examples:
      lokal bench smollm2 --output bench.json
      lokal cost bench.json
      lokal cost bench.json --preset cloud-cpu-small --api gpt-4o-mini --api claude-haiku-4-5
      lokal cost bench.json --hardware-usd-per-hour 0.05 --watts 25 --usd-per-kwh 0.30 --output cost.json
    """
    from lokal.bench.result import load
    from lokal.cost.compute import compute_cost, hardware
    from lokal.results import save

    bench = load(result_file)
    hw = hardware(preset, usd_per_hour=hardware_usd_per_hour, watts=watts, usd_per_kwh=usd_per_kwh)
    result = compute_cost(
        bench, hw, apis or DEFAULT_APIS, level=level, prompt_tokens=prompt_tokens, bench_file=str(result_file)
    )
    if output is not None:
        save(result, output)
        warn(f"cost result written to {output}")
    if chart is not None:
        from lokal.cli.cache import write_chart_png
        from lokal.cost.sections import cost_sections

        (section,) = cost_sections(result)
        write_chart_png(section.charts[0], chart, rows=10)
        warn(f"chart written to {chart}")
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    _print_result(result)


COMMANDS = [cost]
