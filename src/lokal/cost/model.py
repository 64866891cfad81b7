"""The saved shape of `lokal cost`: a versioned `CostResult`, written first and rendered second.

Money and rates are `Decimal` end to end (serialised as JSON strings, so a figure read back is the figure
computed: no float drift). Inputs (what the benchmark measured), assumptions (what the user or a preset said)
and figures (what follows) are kept apart, so a reader can check every number.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal
from typing import Final, Literal

from pydantic import Field

from lokal.cost.prices import CostError
from lokal.results import Frozen, Result, read_result

SCHEMA_VERSION: Final = 1


class CostInputs(Frozen):
    """What the benchmark measured, at the load level the costs are computed for."""

    bench_file: str | None = None
    bench_name: str
    bench_created_at: datetime
    model: str
    level_index: int
    level_label: str
    level_choice: str = Field(description="why this level: the highest output-token throughput, or --level")
    completed_requests: int
    duration_s: Decimal
    request_throughput: Decimal = Field(description="completed requests per second")
    output_token_throughput: Decimal = Field(description="output tokens of completed requests per second")
    prompt_tokens_per_request: Decimal = Field(description="mean over completed requests")
    output_tokens_per_request: Decimal = Field(description="mean over completed requests")
    token_counts: str = Field(description="where the token counts came from")


class CostAssumptions(Frozen):
    hardware: str = Field(description="preset name, or 'custom'")
    hardware_description: str
    hardware_usd_per_hour: Decimal
    watts: Decimal
    usd_per_kwh: Decimal
    hours_per_month: Decimal = Decimal(730)


class LocalFigures(Frozen):
    hardware_usd_per_hour: Decimal
    energy_usd_per_hour: Decimal = Field(description="watts ÷ 1000 × $/kWh")
    usd_per_hour: Decimal
    usd_per_request: Decimal
    usd_per_1k_requests: Decimal
    usd_per_1m_output_tokens: Decimal
    energy_usd_per_request: Decimal
    fixed_usd_per_month: Decimal = Field(description="hardware $/hour × hours per month: paid busy or idle")
    capacity_requests_per_hour: Decimal


class BreakEven(Frozen):
    """Monthly volume above which local is cheaper than this API; None when it never is."""

    requests_per_month: Decimal | None
    requests_per_day: Decimal | None
    requests_per_hour: Decimal | None
    within_capacity: bool = Field(description="one machine, at the measured throughput, can serve that volume")
    summary: str


class ApiFigures(Frozen):
    ref: str = Field(description="the name given with --api")
    provider: str
    model_id: str
    model_name: str | None = None
    input_usd_per_mtok: Decimal | None = None
    output_usd_per_mtok: Decimal | None = None
    usd_per_request: Decimal
    usd_per_1k_requests: Decimal
    usd_per_1m_output_tokens: Decimal = Field(description="includes the prompt tokens' cost, as local does")
    break_even: BreakEven


class CostFigures(Frozen):
    local: LocalFigures
    apis: list[ApiFigures]


class PriceSource(Frozen):
    package: str
    version: str
    data: str = "bundled snapshot, no network update"
    latest_price_change: date | None = Field(None, description="newest dated price change on or before prices_as_of")
    prices_as_of: date


class CostResult(Result):
    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["cost"] = "cost"
    lokal_version: str
    created_at: datetime
    inputs: CostInputs
    assumptions: CostAssumptions
    figures: CostFigures
    price_source: PriceSource
    notes: list[str] = Field(default_factory=list)


def load(path: str | os.PathLike[str]) -> CostResult:
    """Read a saved `lokal cost --output` file, naming the file and the problem."""
    return read_result(path, CostResult, kind="cost", noun="cost result", version=SCHEMA_VERSION, error=CostError)
