"""Hardware cost presets: a few typical machines, each with its assumptions written out.

Owned machines are amortised over their whole life, round the clock (purchase ÷ (years × 8,760 h)): the
cheapest honest figure for a machine that serves all the time; one used 8 hours a day costs three times as much
per hour it is used. Cloud prices are approximate on-demand list prices (2025, us-east-1, Linux) and include
power, so their draw is 0 W. Every figure can be overridden (`--hardware-usd-per-hour`, `--watts`).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Literal

HOURS_PER_YEAR = Decimal(8760)
#: A typical household electricity tariff, rounded (the US residential average was about $0.16/kWh in 2024).
DEFAULT_USD_PER_KWH = Decimal("0.15")
DEFAULT_PRESET = "laptop"


@dataclasses.dataclass(frozen=True)
class HardwarePreset:
    name: str
    kind: Literal["owned", "rented"]
    usd_per_hour: Decimal
    watts: Decimal  # draw while serving; 0 when the hourly price includes power
    description: str


def _owned(name: str, what: str, purchase: int, years: int, watts: int) -> HardwarePreset:
    per_hour = Decimal(purchase) / (years * HOURS_PER_YEAR)
    return HardwarePreset(
        name=name,
        kind="owned",
        usd_per_hour=per_hour,
        watts=Decimal(watts),
        description=(
            f"{what}: ${purchase:,} amortised over {years} years of round-the-clock use "
            f"(${purchase:,} ÷ {years * 8760:,} h = ${per_hour:.4f}/h), drawing about {watts} W while serving"
        ),
    )


def _rented(name: str, what: str, usd_per_hour: str) -> HardwarePreset:
    return HardwarePreset(
        name=name,
        kind="rented",
        usd_per_hour=Decimal(usd_per_hour),
        watts=Decimal(0),
        description=(
            f"{what}, on demand at about ${usd_per_hour}/h (2025 list price; check your provider's current "
            "price); power is included in the price (0 W)"
        ),
    )


PRESETS: dict[str, HardwarePreset] = {
    p.name: p
    for p in (
        _owned("laptop", "a laptop", 1500, 3, 30),
        _owned("desktop", "a desktop workstation", 2500, 3, 150),
        _rented("cloud-cpu-small", "a small cloud CPU VM, 2 vCPU / 8 GiB (e.g. AWS m7i.large)", "0.1008"),
        _rented("cloud-cpu-large", "a large cloud CPU VM, 16 vCPU / 32 GiB (e.g. AWS c7i.4xlarge)", "0.714"),
        _rented("cloud-gpu-small", "a cloud VM with one NVIDIA L4 GPU, 24 GB (e.g. AWS g6.xlarge)", "0.8048"),
    )
}
