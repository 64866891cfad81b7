"""Cloud API prices from `genai-prices` (pydantic's maintained price data, bundled with the package).

Why genai-prices: it is kept up to date by its maintainers, prices in `Decimal` (no float drift), knows
tiered prices and dated price changes, and resolves the model names people actually type. lokal uses the
snapshot bundled with the installed package (never a network update), so a cost figure is reproducible:
the package version and the newest price change in its data are recorded with every result.
"""

from __future__ import annotations

import dataclasses
import difflib
from datetime import date, datetime
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from lokal.errors import LokalError

#: Defaults for `--api`: two cheap models and two frontier ones from three providers.
DEFAULT_APIS = ("gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5", "gpt-5", "claude-sonnet-4-5")


class CostError(LokalError, ValueError):
    """Bad `lokal cost` input: an impossible figure, a level that is not in the result, no token counts."""

    status_code = 400


class UnknownApiModel(CostError, LookupError):
    """An `--api` model the price data does not know."""

    status_code = 404


@dataclasses.dataclass(frozen=True)
class ApiQuote:
    """Which priced model a name resolved to, and its headline token prices (USD per million tokens)."""

    ref: str
    provider_id: str
    provider: str
    model_id: str
    model_name: str | None
    input_usd_per_mtok: Decimal | None
    output_usd_per_mtok: Decimal | None


@dataclasses.dataclass(frozen=True)
class PriceData:
    package: str
    version: str
    latest_change: date | None  # newest dated price change in the data on or before `as_of`
    as_of: date  # the date prices were looked up for


class PriceBook(Protocol):
    """What the cost model needs from a price source (genai-prices here; a fixed table in tests)."""

    def quote(self, ref: str, at: datetime) -> ApiQuote: ...

    def request_price(self, ref: str, prompt_tokens: int, output_tokens: int, at: datetime) -> Decimal: ...

    def data(self, at: datetime) -> PriceData: ...


def _split(ref: str, provider_ids: set[str]) -> tuple[str | None, str]:
    """`anthropic/claude-haiku-4-5` -> ("anthropic", "claude-haiku-4-5"); plain names pick their provider."""
    head, sep, tail = ref.strip().partition("/")
    if sep and head.lower() in provider_ids and tail:
        return head.lower(), tail
    return None, ref.strip()


def _base(price: Any) -> Decimal | None:
    """A flat price, or the base of a tiered one (the tier applies past e.g. 200k prompt tokens)."""
    if price is None or isinstance(price, Decimal):
        return price
    return getattr(price, "base", None)


class GenaiPriceBook:
    """`PriceBook` over the genai-prices snapshot bundled with the installed package."""

    def __init__(self) -> None:
        from genai_prices import data_snapshot

        self._snapshot = data_snapshot.get_snapshot()
        self._provider_ids = {p.id for p in self._snapshot.providers}

    def _find(self, ref: str) -> tuple[Any, Any]:
        provider_id, model_ref = _split(ref, self._provider_ids)
        try:
            return self._snapshot.find_provider_model(model_ref, None, provider_id, None)
        except LookupError:
            raise UnknownApiModel(self._unknown_message(ref)) from None

    def _unknown_message(self, ref: str) -> str:
        ids = sorted({m.id for p in self._snapshot.providers for m in p.models})
        wanted = ref.strip().lower().rsplit("/", 1)[-1]
        close = difflib.get_close_matches(wanted, ids, n=6, cutoff=0.6)
        if not close:
            close = [i for i in ids if wanted and (wanted in i or i in wanted)][:6]
        hint = f"; close names: {', '.join(close)}" if close else ""
        return f"no API price for '{ref}' in genai-prices {_package_version()}{hint}"

    def quote(self, ref: str, at: datetime) -> ApiQuote:
        provider, model = self._find(ref)
        prices = model.get_prices(at)
        return ApiQuote(
            ref=ref,
            provider_id=provider.id,
            provider=provider.name,
            model_id=model.id,
            model_name=model.name,
            input_usd_per_mtok=_base(getattr(prices, "input_mtok", None)),
            output_usd_per_mtok=_base(getattr(prices, "output_mtok", None)),
        )

    def request_price(self, ref: str, prompt_tokens: int, output_tokens: int, at: datetime) -> Decimal:
        from genai_prices import Usage

        provider, model = self._find(ref)
        usage = Usage(input_tokens=prompt_tokens, output_tokens=output_tokens)
        return model.calc_price(usage, provider, genai_request_timestamp=at).total_price

    def data(self, at: datetime) -> PriceData:
        from genai_prices import types

        dates = [
            c.constraint.start_date
            for p in self._snapshot.providers
            for m in p.models
            if isinstance(m.prices, list)
            for c in m.prices
            if isinstance(c.constraint, types.StartDateConstraint) and c.constraint.start_date <= at.date()
        ]
        return PriceData(
            package="genai-prices", version=_package_version(), latest_change=max(dates, default=None), as_of=at.date()
        )


def _package_version() -> str:
    try:
        return version("genai-prices")
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        return "unknown"
