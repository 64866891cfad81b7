"""`lokal.cost`: the cost model checked against hand-computed figures, on bench results built here.

The arithmetic tests use a fixed price table (`FixedPrices`), so the expected numbers are ours and stay true
whatever genai-prices' data says; one test runs the real genai-prices data and checks it against the prices
that data itself reports.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import pytest

from lokal.bench.result import (
    BenchConfig,
    BenchResult,
    LoadLevel,
    ModelRef,
    PlatformInfo,
    RequestSample,
    TargetInfo,
    save,
)
from lokal.cost import (
    PRESETS,
    CostError,
    CostResult,
    GenaiPriceBook,
    UnknownApiModel,
    break_even,
    choose_level,
    compute_cost,
    hardware,
    load,
)
from lokal.cost.prices import ApiQuote, PriceData
from lokal.cost.sections import cost_sections, money

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class FixedPrices:
    """A `PriceBook` with prices in USD per million tokens chosen by the test."""

    TABLE: ClassVar[dict[str, tuple[Decimal, Decimal]]] = {
        "cheap": (Decimal("0.30"), Decimal("1.50")),
        "tiny": (Decimal("0.02"), Decimal("0.08")),
        "free": (Decimal("0.01"), Decimal("0.06")),
    }

    def quote(self, ref: str, at: datetime) -> ApiQuote:
        if ref not in self.TABLE:
            raise UnknownApiModel(f"no API price for '{ref}'")
        i, o = self.TABLE[ref]
        return ApiQuote(ref, "test", "Test", ref, ref.title(), i, o)

    def request_price(self, ref: str, prompt_tokens: int, output_tokens: int, at: datetime) -> Decimal:
        i, o = self.TABLE[ref]
        return (prompt_tokens * i + output_tokens * o) / 10**6

    def data(self, at: datetime) -> PriceData:
        return PriceData("fixed", "1", date(2026, 1, 1), at.date())


def make_level(
    n: int,
    duration_s: float,
    *,
    prompt: int | None = 100,
    output: int = 50,
    concurrency: int = 1,
    failed: int = 0,
    model: str = "tiny:latest",
) -> LoadLevel:
    gap = duration_s / (n + failed)
    samples = [
        RequestSample(
            index=i,
            scheduled_s=i * gap,
            sent_s=i * gap,
            first_token_s=i * gap + gap / 4,
            end_s=(i + 1) * gap,
            ok=i < n,
            error=None if i < n else "boom",
            prompt_tokens=prompt if i < n else None,
            output_tokens=output if i < n else None,
            token_source="usage" if i < n else None,
        )
        for i in range(n + failed)
    ]
    mode = "sync" if concurrency == 1 else "concurrency"
    return LoadLevel(model=model, mode=mode, concurrency=concurrency, duration_s=duration_s, samples=samples)


def make_result(*levels: LoadLevel, prompt_tokens: int | None = 100) -> BenchResult:
    return BenchResult(
        lokal_version="test",
        created_at=datetime(2026, 5, 1, tzinfo=UTC),
        platform=PlatformInfo(system="Linux", release="6", machine="x86_64", python="3.11", cpu="test cpu"),
        target=TargetInfo(kind="in-process", models=[ModelRef(name="tiny:latest")]),
        config=BenchConfig(max_tokens=50, workload="test", seed=0, warmup=0, prompt_tokens=prompt_tokens),
        levels=list(levels),
    )


# Level: 10 requests of 100 prompt + 50 output tokens in 5.0 s -> 2 requests/s, 100 output tokens/s.
# Hardware: $0.684/h + 180 W × $0.20/kWh = 0.684 + 0.036 = $0.72/h.
HW = hardware(usd_per_hour=Decimal("0.684"), watts=Decimal("180"), usd_per_kwh=Decimal("0.20"))


def _cost(*apis: str, **kwargs) -> CostResult:
    result = kwargs.pop("result", None) or make_result(make_level(10, 5.0))
    return compute_cost(result, HW, apis or ("cheap",), prices=FixedPrices(), now=NOW, **kwargs)


def test_local_cost_hand_computed() -> None:
    local = _cost().figures.local
    assert local.energy_usd_per_hour == Decimal("0.036")  # 180 / 1000 × 0.20
    assert local.usd_per_hour == Decimal("0.72")  # 0.684 + 0.036
    assert local.capacity_requests_per_hour == 7200  # 2 req/s × 3600
    assert local.usd_per_request == Decimal("0.0001")  # 0.72 / 7200
    assert local.usd_per_1k_requests == Decimal("0.1")  # 0.0001 × 1000
    assert local.usd_per_1m_output_tokens == Decimal("2")  # 0.72 / (100 tok/s × 3600) × 10^6
    assert local.energy_usd_per_request == Decimal("0.000005")  # 0.036 / 7200
    assert local.fixed_usd_per_month == Decimal("499.32")  # 0.684 × 730


def test_api_cost_and_break_even_hand_computed() -> None:
    cheap, tiny, free = _cost("cheap", "tiny", "free").figures.apis
    # cheap: 100 × 0.30/1M + 50 × 1.50/1M = 0.00003 + 0.000075 = $0.000105 per request.
    assert cheap.usd_per_request == Decimal("0.000105")
    assert cheap.usd_per_1k_requests == Decimal("0.105")
    assert cheap.usd_per_1m_output_tokens == Decimal("2.1")  # 0.000105 / 50 × 10^6
    # Break-even: 499.32 / (0.000105 - 0.000005) = 4,993,200 requests a month = 6,840/hour (÷ 730) = 164,160/day.
    be = cheap.break_even
    assert (be.requests_per_month, be.requests_per_hour, be.requests_per_day) == (4_993_200, 6840, 164_160)
    assert be.within_capacity  # 6,840 <= 7,200 requests/hour the machine serves
    assert be.summary == "local is cheaper above 164,160 requests/day (6,840.0/hour)"
    # tiny: 0.000002 + 0.000004 = 0.000006; 499.32 / 0.000001 = 499,320,000 a month = 684,000/hour > 7,200.
    assert tiny.usd_per_request == Decimal("0.000006")
    assert tiny.break_even.requests_per_hour == 684_000 and not tiny.break_even.within_capacity
    assert "the API is cheaper at any volume" in tiny.break_even.summary
    # free: 0.000001 + 0.000003 = 0.000004 < 0.000005 of energy per request: never.
    assert free.break_even.requests_per_month is None and free.break_even.summary.startswith("never")


def test_break_even_without_fixed_cost() -> None:
    be = break_even(Decimal(0), Decimal("0.001"), Decimal("0.0001"), Decimal(100))
    assert be.requests_per_month == 0 and be.within_capacity
    assert be.summary == "local is cheaper at any volume (no fixed cost)"


def test_decimal_exact_and_json_round_trip(tmp_path: Path) -> None:
    # 0.1 + 0.2 style drift: 3 requests in 0.3 s; in floats 3 / 0.3 = 10.000000000000002.
    result = _cost(result=make_result(make_level(3, 0.3)))
    assert result.inputs.request_throughput == Decimal(10)
    assert result.inputs.duration_s == Decimal("0.3")
    # 0.72 / 36,000 req/h = 0.00002 exactly.
    assert result.figures.local.usd_per_request == Decimal("0.00002")
    path = save(result, tmp_path / "cost.json")
    raw = json.loads(path.read_text())
    assert raw["kind"] == "cost" and raw["schema_version"] == 1
    assert raw["figures"]["local"]["usd_per_request"] == "0.00002"  # a string: no float on the way
    assert load(path) == result


def test_failed_requests_are_not_throughput_or_billed() -> None:
    # 10 good + 2 failed in 6.0 s: 10/6 requests/s; tokens only from the 10.
    result = _cost(result=make_result(make_level(10, 6.0, failed=2)))
    assert result.inputs.completed_requests == 10
    assert result.inputs.output_token_throughput == Decimal(500) / Decimal("6.0")
    assert result.figures.apis[0].usd_per_request == Decimal("0.000105")


def test_level_choice() -> None:
    slow = make_level(10, 10.0)  # 50 output tokens/s
    fast = make_level(10, 5.0, concurrency=4)  # 100 output tokens/s
    result = make_result(slow, fast)
    index, level, _, why = choose_level(result)
    assert (index, level.label, why) == (1, "concurrency 4", "the highest output-token throughput of 2 levels")
    assert choose_level(result, "0")[0] == 0
    assert choose_level(result, "sync")[0] == 0
    assert choose_level(result, "tiny:latest concurrency 4")[0] == 1
    with pytest.raises(CostError, match=r"no level 2 in the result; levels are 0: tiny:latest sync; 1: "):
        choose_level(result, "2")
    with pytest.raises(CostError, match="no level matches 'batch 8'"):
        choose_level(result, "batch 8")


def test_prompt_tokens_fallbacks() -> None:
    unknown = make_result(make_level(4, 2.0, prompt=None), prompt_tokens=None)
    with pytest.raises(CostError, match="pass --prompt-tokens N"):
        _cost(result=unknown)
    # Given on the command line: 200 × 0.30/1M + 50 × 1.50/1M = 0.00006 + 0.000075 = 0.000135.
    given = _cost(result=unknown, prompt_tokens=200)
    assert given.figures.apis[0].usd_per_request == Decimal("0.000135")
    assert "given with --prompt-tokens (200)" in given.inputs.token_counts
    # From the bench configuration when the server did not report them: 100 -> the 0.000105 above.
    configured = _cost(result=make_result(make_level(4, 2.0, prompt=None), prompt_tokens=100))
    assert configured.figures.apis[0].usd_per_request == Decimal("0.000105")
    assert "configured --prompt-tokens (100)" in configured.inputs.token_counts


def test_nothing_completed_is_an_error() -> None:
    with pytest.raises(CostError, match="completed no requests"):
        _cost(result=make_result(make_level(0, 1.0, failed=3)))


def test_presets_state_their_assumptions() -> None:
    laptop = PRESETS["laptop"]
    assert laptop.usd_per_hour == Decimal(1500) / Decimal(26280)  # $1,500 over 3 × 8,760 h
    assert "3 years" in laptop.description and "30 W" in laptop.description
    assert PRESETS["cloud-cpu-small"].watts == 0 and "included" in PRESETS["cloud-cpu-small"].description
    assert hardware().name == "laptop"  # the default
    with_preset_power = hardware("desktop", usd_per_hour=Decimal("0.1"))
    assert (with_preset_power.usd_per_hour, with_preset_power.watts) == (Decimal("0.1"), Decimal(150))
    bare = hardware(usd_per_hour=Decimal("0.1"))
    assert bare.watts == 0 and "no power cost counted" in bare.description
    with pytest.raises(CostError, match="unknown hardware preset 'mainframe'"):
        hardware("mainframe")
    with pytest.raises(CostError, match="at least 0"):
        hardware(usd_per_hour=Decimal("-1"))


def test_real_price_data_for_a_known_model() -> None:
    book = GenaiPriceBook()
    quote = book.quote("gpt-4o-mini", NOW)
    assert quote.provider_id == "openai" and quote.model_id == "gpt-4o-mini"
    result = compute_cost(make_result(make_level(10, 5.0)), HW, ["gpt-4o-mini"], prices=book, now=NOW)
    (api,) = result.figures.apis
    # Per request: 100 × input + 50 × output, per million tokens (0.15 and 0.60 in genai-prices 0.2.3:
    # 0.000015 + 0.00003 = 0.000045).
    expected = (100 * quote.input_usd_per_mtok + 50 * quote.output_usd_per_mtok) / 10**6
    assert api.usd_per_request == expected and api.usd_per_1k_requests == expected * 1000
    source = result.price_source
    assert source.package == "genai-prices" and source.version >= "0.2.3"
    assert source.prices_as_of == NOW.date() and source.latest_price_change <= NOW.date()


def test_provider_prefix_and_unknown_models() -> None:
    book = GenaiPriceBook()
    assert book.quote("anthropic/claude-haiku-4-5", NOW).provider_id == "anthropic"
    with pytest.raises(UnknownApiModel, match=r"no API price for 'gpt-4o-mni'.*close names: .*gpt-4o-mini"):
        book.quote("gpt-4o-mni", NOW)
    with pytest.raises(UnknownApiModel, match="no API price for 'not-a-model-at-all'"):
        compute_cost(make_result(make_level(2, 1.0)), HW, ["not-a-model-at-all"], prices=book, now=NOW)


def test_default_apis_all_resolve() -> None:
    from lokal.cost import DEFAULT_APIS

    book = GenaiPriceBook()
    for ref in DEFAULT_APIS:
        assert book.quote(ref, NOW).output_usd_per_mtok > 0


def test_sections_table_and_chart() -> None:
    from matplotlib.figure import Figure

    result = _cost("cheap", "tiny")
    (section,) = cost_sections(result)
    costs = section.tables[0]
    assert [row[0] for row in costs.rows] == ["local: custom", "cheap (Test)", "tiny (Test)"]
    assert costs.rows[0][2] == "$0.100" and costs.rows[1][2] == "$0.105"  # $ per 1,000 requests
    assert any("10^6" in n for n in section.notes)
    ax = Figure().add_subplot()
    section.charts[0].draw(ax)
    assert ax.get_ylabel() == "US$ per 1,000 requests"  # 0.105 / 0.006 = 17.5 < 50: a linear axis
    assert ax.get_yscale() == "linear"
    assert ax.get_title() == "Cost per 1,000 requests: tiny:latest, sync"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["local (custom)", "cheap", "tiny"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.000045"), "$0.0000450"),
        (Decimal("0.1"), "$0.100"),
        (Decimal("2.5"), "$2.50"),
        (Decimal(1234), "$1,234"),
    ],
)
def test_money(value: Decimal, text: str) -> None:
    assert money(value) == text
