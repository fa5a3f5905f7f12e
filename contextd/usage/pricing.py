"""Per-model prices and exact costs (no I/O: tables are built from already-read JSON text).

A price table is LiteLLM's ``model_prices_and_context_window.json`` format (the bundled
``prices.json`` is a subset of it: the Claude models ccusage 20.0.24 embeds, with its figures).
Per model, in US dollars per token:

==========================================================  =====================================
LiteLLM key                                                 used for
==========================================================  =====================================
``input_cost_per_token``                                    input tokens
``output_cost_per_token``                                   output tokens
``cache_creation_input_token_cost``                         5-minute cache writes
``cache_creation_input_token_cost_above_1hr``               1-hour cache writes (default: 2x input)
``cache_read_input_token_cost``                             cache reads
``…_above_200k_tokens`` of each of the above                the part of a count above 200,000
``provider_specific_entry.fast``                            multiplier for ``usage.speed: "fast"``
==========================================================  =====================================

Long-context tiers apply **per entry and per token category** (an entry with 300k cache reads
pays 200k at the base rate and 100k at the higher one), as ccusage does; the 1-hour write rate
above 200k defaults to twice the input rate above 200k. Arithmetic is :class:`~decimal.Decimal`
throughout (JSON numbers are parsed straight into Decimals), so totals are exact.

Model lookup (:meth:`PriceTable.lookup`): the exact name; else the name without a ``[…]``
suffix (``claude-opus-4-6[1m]``) or a ``provider/`` prefix; else the longest known name the
model name contains (``claude-opus-4-6-20991231``), else the shortest known name that contains
it (``opus-4-6``). Matching is case-sensitive. A model found nowhere is **unknown**: its cost is
None, never 0.

Cost modes (:class:`CostMode`): ``auto`` uses a line's ``costUSD`` when it has one and prices
the tokens otherwise; ``calculate`` always prices the tokens; ``display`` uses ``costUSD`` only
(None without one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from contextd.errors import ConfigError
from contextd.usage.entries import UsageEntry

TIER_THRESHOLD = 200_000
ZERO = Decimal(0)
TWO = Decimal(2)


class CostMode(StrEnum):
    AUTO = "auto"
    CALCULATE = "calculate"
    DISPLAY = "display"


@dataclass(frozen=True, slots=True)
class Rate:
    """One token category's price: base, and above :data:`TIER_THRESHOLD` when tiered."""

    base: Decimal
    above: Decimal | None = None

    def cost(self, tokens: int) -> Decimal:
        if tokens <= 0:
            return ZERO
        if self.above is None or tokens <= TIER_THRESHOLD:
            return tokens * self.base
        return TIER_THRESHOLD * self.base + (tokens - TIER_THRESHOLD) * self.above


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: Rate
    output: Rate
    cache_write_5m: Rate
    cache_write_1h: Rate
    cache_read: Rate
    fast_multiplier: Decimal = Decimal(1)

    def cost(self, entry: UsageEntry) -> Decimal:
        """The price of an entry's tokens."""
        total = (
            self.input.cost(entry.input)
            + self.output.cost(entry.output)
            + self.cache_write_5m.cost(entry.cache_write_5m)
            + self.cache_write_1h.cost(entry.cache_write_1h)
            + self.cache_read.cost(entry.cache_read)
        )
        return total * self.fast_multiplier if entry.fast else total


def _decimal(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ConfigError(f"price table: {where} is not a number: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:  # pragma: no cover - ints and Decimals always convert
        raise ConfigError(f"price table: {where} is not a number: {value!r}") from None
    if number < 0 or not number.is_finite():
        raise ConfigError(f"price table: {where} must be a finite number >= 0: {value!r}")
    return number


def _model_price(name: str, spec: Mapping[str, object]) -> ModelPrice | None:
    def get(key: str) -> Decimal | None:
        return _decimal(spec.get(key), f"{name}.{key}")

    inp, out = get("input_cost_per_token"), get("output_cost_per_token")
    if inp is None or out is None:
        return None  # not a token-priced model (images, audio, …)
    inp_above = get("input_cost_per_token_above_200k_tokens")
    write = get("cache_creation_input_token_cost")
    write_above = get("cache_creation_input_token_cost_above_200k_tokens")
    hour = get("cache_creation_input_token_cost_above_1hr")
    hour_above = get("cache_creation_input_token_cost_above_1hr_above_200k_tokens")
    read = get("cache_read_input_token_cost")
    extra = spec.get("provider_specific_entry")
    fast = _decimal(extra.get("fast"), f"{name}.fast") if isinstance(extra, dict) else None
    return ModelPrice(
        input=Rate(inp, inp_above),
        output=Rate(out, get("output_cost_per_token_above_200k_tokens")),
        cache_write_5m=Rate(write if write is not None else ZERO, write_above),
        cache_write_1h=Rate(
            hour if hour is not None else TWO * inp,
            hour_above
            if hour_above is not None
            else (TWO * inp_above if inp_above is not None else None),
        ),
        cache_read=Rate(
            read if read is not None else ZERO, get("cache_read_input_token_cost_above_200k_tokens")
        ),
        fast_multiplier=fast if fast is not None else Decimal(1),
    )


class PriceTable:
    """Model name → :class:`ModelPrice`, with the lookup rules of the module docstring."""

    def __init__(self, prices: Mapping[str, ModelPrice], source: str = "") -> None:
        self.prices = dict(prices)
        self.source = source
        self._found: dict[str, ModelPrice | None] = {}

    @classmethod
    def from_litellm(cls, text: str | bytes, source: str = "") -> PriceTable:
        """Parse LiteLLM-format JSON; raises :class:`ConfigError` when it is not one."""
        try:
            data = json.loads(text, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"price table {source or ''}: not JSON: {exc}".strip()) from None
        if not isinstance(data, dict):
            raise ConfigError(f"price table {source}: expected an object of models")
        prices = {}
        for name, spec in data.items():
            if isinstance(spec, dict):
                price = _model_price(name, spec)
                if price is not None:
                    prices[name] = price
        return cls(prices, source)

    def merged(self, override: PriceTable) -> PriceTable:
        """This table with ``override``'s models replacing or adding to its own."""
        return PriceTable({**self.prices, **override.prices}, f"{self.source}+{override.source}")

    def lookup(self, model: str) -> ModelPrice | None:
        try:
            return self._found[model]
        except KeyError:
            found = self._found[model] = self._search(model)
            return found

    def _search(self, model: str) -> ModelPrice | None:
        prices = self.prices
        candidates = [model, model.split("[", 1)[0], model.rsplit("/", 1)[-1]]
        for name in candidates:
            if name in prices:
                return prices[name]
        inside = [k for k in prices if k in model]
        if inside:
            return prices[max(inside, key=lambda k: (len(k), k))]
        around = [k for k in prices if model in k]
        if around:
            return prices[min(around, key=lambda k: (len(k), k))]
        return None


def entry_cost(entry: UsageEntry, table: PriceTable, mode: CostMode) -> Decimal | None:
    """An entry's cost in ``mode``; None when it cannot be known (unknown model, or no
    ``costUSD`` in display mode). ``<synthetic>`` entries (no model, no tokens) cost 0."""
    if mode is not CostMode.CALCULATE and entry.cost_usd is not None:
        return entry.cost_usd
    if mode is CostMode.DISPLAY:
        return None
    if entry.model is None:
        return ZERO if entry.total == 0 else None
    price = table.lookup(entry.model)
    return price.cost(entry) if price is not None else None
