"""The cost model: local $ per request and per 1M output tokens at the measured throughput, API $ for the same
token counts, and the volume above which local is cheaper. Pure arithmetic on `Decimal`s; prices come in
through a `PriceBook`, so the arithmetic is tested with prices the test chooses.

Formulas (also written into every result's notes):

- local $/hour = hardware $/hour + watts ÷ 1000 × $/kWh
- local $/1M output tokens = $/hour ÷ (output tokens/s × 3600) × 10^6   (NVIDIA's TCO formula)
- local $/1,000 requests = $/hour ÷ (requests/s × 3600) × 1000
- API $/request = prompt tokens × input price + output tokens × output price (each request of the level)
- break-even: local costs F + e·V a month (F = hardware $/hour × 730 h, paid busy or idle; e = energy per
  request), the API p·V; local is cheaper above V = F ÷ (p − e) requests a month.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from lokal._version import __version__
from lokal.bench.metrics import LevelSummary, summarize
from lokal.bench.result import BenchConfig, BenchResult, LoadLevel
from lokal.cost.model import (
    ApiFigures,
    BreakEven,
    CostAssumptions,
    CostFigures,
    CostInputs,
    CostResult,
    LocalFigures,
    PriceSource,
)
from lokal.cost.presets import DEFAULT_PRESET, DEFAULT_USD_PER_KWH, PRESETS
from lokal.cost.prices import DEFAULT_APIS, CostError, GenaiPriceBook, PriceBook

HOURS_PER_MONTH = Decimal(730)  # 8,760 h ÷ 12
SECONDS_PER_HOUR = Decimal(3600)


@dataclasses.dataclass(frozen=True)
class Hardware:
    name: str
    description: str
    usd_per_hour: Decimal
    watts: Decimal
    usd_per_kwh: Decimal


def to_decimal(value: str | int | float | Decimal, what: str) -> Decimal:
    """A finite, non-negative Decimal from user input; floats go through their shortest repr."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise CostError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise CostError(f"{what} must be a finite number of at least 0, got {value!r}")
    return number


def hardware(
    preset: str | None = None,
    *,
    usd_per_hour: Decimal | None = None,
    watts: Decimal | None = None,
    usd_per_kwh: Decimal | None = None,
) -> Hardware:
    """The machine's cost: a preset, or `usd_per_hour` (which overrides a preset's price), plus energy."""
    if preset is not None and preset not in PRESETS:
        raise CostError(f"unknown hardware preset '{preset}'; choose one of {', '.join(PRESETS)}")
    kwh = DEFAULT_USD_PER_KWH if usd_per_kwh is None else to_decimal(usd_per_kwh, "--usd-per-kwh")
    if usd_per_hour is None:
        chosen = PRESETS[preset or DEFAULT_PRESET]
        name, per_hour, description = chosen.name, chosen.usd_per_hour, chosen.description
        draw = chosen.watts
    else:
        per_hour = to_decimal(usd_per_hour, "--hardware-usd-per-hour")
        name = "custom"
        description = f"${per_hour}/h given with --hardware-usd-per-hour"
        if preset is not None:
            draw = PRESETS[preset].watts
            description += f", with the {preset} preset's power draw ({draw} W)"
        else:
            draw = Decimal(0)
            if watts is None:
                description += "; no power cost counted (give --watts)"
    if watts is not None:
        draw = to_decimal(watts, "--watts")
        description += f"; {draw} W given with --watts"
    return Hardware(name, description, per_hour, draw, kwh)


def choose_level(result: BenchResult, level: str | None = None) -> tuple[int, LoadLevel, LevelSummary, str]:
    """The level to cost: the one given (index or label), else the highest output-token throughput."""
    if not result.levels:
        raise CostError("the bench result has no load levels")
    summaries = [summarize(lv) for lv in result.levels]
    choices = "; ".join(f"{i}: {lv.model} {lv.label}" for i, lv in enumerate(result.levels))
    if level is None:
        index = max(range(len(summaries)), key=lambda i: (summaries[i].output_token_throughput, -i))
        n = len(summaries)
        why = "the only level" if n == 1 else f"the highest output-token throughput of {n} levels"
    else:
        text = level.strip().lower()
        if text.isdigit():
            index = int(text)
            if index >= len(result.levels):
                raise CostError(f"no level {index} in the result; levels are {choices}")
        else:
            found = [i for i, lv in enumerate(result.levels) if text in (lv.label.lower(), f"{lv.model} {lv.label}")]
            if len(found) != 1:
                problem = "several levels match" if found else "no level matches"
                raise CostError(f"{problem} '{level}'; give an index or a label: {choices}")
            index = found[0]
        why = "chosen with --level"
    return index, result.levels[index], summaries[index], why


def _token_pairs(level: LoadLevel, config: BenchConfig, prompt_tokens: int | None) -> tuple[list[tuple[int, int]], str]:
    """(prompt, output) tokens of every completed request, and where the counts came from."""
    pairs = []
    configured = False
    for s in level.samples:
        if not s.ok:
            continue
        if s.output_tokens is None:
            raise CostError(f"request {s.index} of level '{level.label}' has no output token count")
        prompt = prompt_tokens if prompt_tokens is not None else s.prompt_tokens
        if prompt is None:
            if config.prompt_tokens is None:
                raise CostError(
                    "the bench result has no prompt token counts (the server did not report them): "
                    "pass --prompt-tokens N"
                )
            prompt, configured = config.prompt_tokens, True
        pairs.append((prompt, s.output_tokens))
    sources = sorted({s.token_source for s in level.samples if s.ok and s.token_source})
    where = f"per request, from {', '.join(sources) or 'the result'}"
    if prompt_tokens is not None:
        where += f"; prompt tokens given with --prompt-tokens ({prompt_tokens})"
    elif configured:
        where += f"; prompt tokens from the configured --prompt-tokens ({config.prompt_tokens}) where not reported"
    return pairs, where


def break_even(
    fixed_per_month: Decimal,
    api_per_request: Decimal,
    energy_per_request: Decimal,
    capacity_per_hour: Decimal,
    hours_per_month: Decimal = HOURS_PER_MONTH,
) -> BreakEven:
    """Requests a month above which local (F + e·V) costs less than the API (p·V): V = F ÷ (p − e)."""
    margin = api_per_request - energy_per_request
    if margin <= 0:
        return BreakEven(
            requests_per_month=None,
            requests_per_day=None,
            requests_per_hour=None,
            within_capacity=False,
            summary="never: the API costs less per request than the local energy alone",
        )
    per_month = fixed_per_month / margin
    per_hour = per_month / hours_per_month
    per_day = per_hour * 24
    within = per_hour <= capacity_per_hour
    if per_month == 0:
        summary = "local is cheaper at any volume (no fixed cost)"
    elif within:
        summary = f"local is cheaper above {per_day:,.0f} requests/day ({per_hour:,.1f}/hour)"
    else:
        summary = (
            f"local would be cheaper only above {per_hour:,.0f} requests/hour, more than this machine serves "
            f"({capacity_per_hour:,.0f}/hour at the measured throughput): the API is cheaper at any volume"
        )
    return BreakEven(
        requests_per_month=per_month,
        requests_per_day=per_day,
        requests_per_hour=per_hour,
        within_capacity=within,
        summary=summary,
    )


def _notes(hw: Hardware) -> list[str]:
    return [
        "local $/hour = hardware $/hour + watts ÷ 1000 × $/kWh",
        "local $/1M output tokens = $/hour ÷ (output tokens/s × 3600) × 10^6; "
        "local $/1,000 requests = $/hour ÷ (requests/s × 3600) × 1000",
        "local figures assume the machine is kept as busy as in the measured level; at lower load the hardware "
        "still costs the same per hour, so each request costs more",
        (
            f"energy counts {hw.watts} W only while serving; idle draw is not counted"
            if hw.watts
            else "no separate energy cost (0 W): included in the hourly price, or not given (--watts)"
        ),
        "API $/request = prompt tokens × input price + output tokens × output price, for each completed request "
        "of the level; no prompt-caching or batch discounts",
        "API $/1M output tokens includes the prompt tokens' cost, as the local figure does",
        "break-even: local costs F + e × V a month (F = hardware $/hour × 730 h, paid busy or idle; e = energy per "
        "request), the API p × V; local is cheaper above V = F ÷ (p − e) requests a month. One machine serves at "
        "most requests/s × 3600 requests an hour",
    ]


def compute_cost(
    result: BenchResult,
    hw: Hardware,
    apis: Sequence[str] = DEFAULT_APIS,
    *,
    level: str | None = None,
    prompt_tokens: int | None = None,
    bench_file: str | None = None,
    prices: PriceBook | None = None,
    now: datetime | None = None,
) -> CostResult:
    """Local and API costs for one level of a saved bench result."""
    now = now or datetime.now(UTC)
    book = prices if prices is not None else GenaiPriceBook()
    index, chosen, summary, why = choose_level(result, level)
    if summary.completed == 0 or summary.duration_s <= 0:
        raise CostError(f"level {index} ({chosen.label}) completed no requests: there is no throughput to cost")
    if summary.output_tokens == 0:
        raise CostError(f"level {index} ({chosen.label}) produced no output tokens")
    pairs, token_counts = _token_pairs(chosen, result.config, prompt_tokens)
    n = Decimal(len(pairs))
    total_out = Decimal(sum(o for _, o in pairs))

    duration = Decimal(str(summary.duration_s))
    rps = Decimal(summary.completed) / duration
    tps = Decimal(summary.output_tokens) / duration
    energy_h = hw.watts / 1000 * hw.usd_per_kwh
    usd_h = hw.usd_per_hour + energy_h
    requests_h = rps * SECONDS_PER_HOUR
    local = LocalFigures(
        hardware_usd_per_hour=hw.usd_per_hour,
        energy_usd_per_hour=energy_h,
        usd_per_hour=usd_h,
        usd_per_request=usd_h / requests_h,
        usd_per_1k_requests=usd_h / requests_h * 1000,
        usd_per_1m_output_tokens=usd_h / (tps * SECONDS_PER_HOUR) * 10**6,
        energy_usd_per_request=energy_h / requests_h,
        fixed_usd_per_month=hw.usd_per_hour * HOURS_PER_MONTH,
        capacity_requests_per_hour=requests_h,
    )

    api_figures = []
    counts = Counter(pairs)
    for ref in dict.fromkeys(apis):  # keep order, drop repeats
        quote = book.quote(ref, now)
        total = sum(
            (book.request_price(ref, p, o, now) * k for (p, o), k in counts.items()),
            start=Decimal(0),
        )
        per_request = total / n
        api_figures.append(
            ApiFigures(
                ref=ref,
                provider=quote.provider,
                model_id=quote.model_id,
                model_name=quote.model_name,
                input_usd_per_mtok=quote.input_usd_per_mtok,
                output_usd_per_mtok=quote.output_usd_per_mtok,
                usd_per_request=per_request,
                usd_per_1k_requests=per_request * 1000,
                usd_per_1m_output_tokens=total / total_out * 10**6,
                break_even=break_even(local.fixed_usd_per_month, per_request, local.energy_usd_per_request, requests_h),
            )
        )

    data = book.data(now)
    return CostResult(
        lokal_version=__version__,
        created_at=now,
        inputs=CostInputs(
            bench_file=bench_file,
            bench_name=result.name,
            bench_created_at=result.created_at,
            model=chosen.model,
            level_index=index,
            level_label=chosen.label,
            level_choice=why,
            completed_requests=summary.completed,
            duration_s=duration,
            request_throughput=rps,
            output_token_throughput=tps,
            prompt_tokens_per_request=Decimal(sum(p for p, _ in pairs)) / n,
            output_tokens_per_request=total_out / n,
            token_counts=token_counts,
        ),
        assumptions=CostAssumptions(
            hardware=hw.name,
            hardware_description=hw.description,
            hardware_usd_per_hour=hw.usd_per_hour,
            watts=hw.watts,
            usd_per_kwh=hw.usd_per_kwh,
            hours_per_month=HOURS_PER_MONTH,
        ),
        figures=CostFigures(local=local, apis=api_figures),
        price_source=PriceSource(
            package=data.package, version=data.version, latest_price_change=data.latest_change, prices_as_of=data.as_of
        ),
        notes=_notes(hw),
    )
