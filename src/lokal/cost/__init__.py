"""`lokal cost`: what 1,000 requests cost on your hardware, against cloud APIs, from a saved bench result.

presets.py  typical machines (owned and amortised, or rented by the hour), assumptions written out
prices.py   cloud API prices from genai-prices (Decimal, dated), behind a small `PriceBook` interface
compute.py  the cost model: local $/request and $/1M output tokens, API $ for the same tokens, break-even
model.py    the saved `CostResult` (`kind: "cost"`), rendered later by `lokal report`
sections.py the report sections: tables and a bar chart of $ per 1,000 requests
"""

from __future__ import annotations

from lokal.cost.compute import Hardware, break_even, choose_level, compute_cost, hardware
from lokal.cost.model import CostResult, load
from lokal.cost.presets import PRESETS, HardwarePreset
from lokal.cost.prices import DEFAULT_APIS, CostError, GenaiPriceBook, PriceBook, UnknownApiModel

__all__ = [
    "DEFAULT_APIS",
    "PRESETS",
    "CostError",
    "CostResult",
    "GenaiPriceBook",
    "Hardware",
    "HardwarePreset",
    "PriceBook",
    "UnknownApiModel",
    "break_even",
    "choose_level",
    "compute_cost",
    "hardware",
    "load",
]
