"""Prices: the bundled table's figures, tiers, fast mode, lookup, cost modes, LiteLLM files.

Expected costs are the figures ccusage 20.0.24 printed for the same lines
(/work/tools/ccusage-notes.md §6 and the experiments noted there), worked out by hand here.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from contextd.errors import ConfigError
from contextd.usage.pricing import CostMode, PriceTable, entry_cost
from contextd.usage.service import bundled_prices, load_prices
from tests.usage.lines import entry

TABLE = bundled_prices()
D = Decimal


def cost(
    model: str, *, inp: int = 0, out: int = 0, cc: int = 0, c1h: int = 0, cr: int = 0
) -> Decimal | None:
    e = replace(entry(0, model=model, inp=inp, out=out, cc=cc, cr=cr), cache_write_1h=c1h)
    return entry_cost(e, TABLE, CostMode.CALCULATE)


def test_bundled_rates_per_million_tokens() -> None:
    # input / output / 5m write / 1h write / read, $ per Mtok (measured against ccusage),
    # checked on 100k tokens (under sonnet's 200k tier).
    for model, rates in {
        "claude-opus-4-6": ("5", "25", "6.25", "10", "0.5"),
        "claude-opus-4-7": ("5", "25", "6.25", "10", "0.5"),
        "claude-sonnet-4-5-20250929": ("3", "15", "3.75", "6", "0.3"),
        "claude-haiku-4-5-20251001": ("1", "5", "1.25", "2", "0.1"),
    }.items():
        n = 100_000
        got = (
            cost(model, inp=n),
            cost(model, out=n),
            cost(model, cc=n),
            cost(model, c1h=n),
            cost(model, cr=n),
        )
        assert got == tuple(D(r) / 10 for r in rates), model


def test_long_context_tier_applies_per_category_and_per_entry() -> None:
    sonnet = "claude-sonnet-4-5-20250929"
    # 200k x $0.30/M + 100k x $0.60/M = 0.06 + 0.06
    assert cost(sonnet, cr=300_000) == D("0.12")
    # in: 200k x 3 + 100k x 6 = 1.2; out: 200k x 15 + 100k x 22.5 = 5.25  (ccusage: 6.45)
    assert cost(sonnet, inp=300_000, out=300_000) == D("6.45")
    # 1h writes: 200k x 6 + 100k x 12 = 2.4 (ccusage: 2.4); 5m and 1h tiered separately:
    # 150k x 3.75 + 150k x 6 = 1.4625 (ccusage: 1.4625)
    assert cost(sonnet, c1h=300_000) == D("2.4")
    assert cost(sonnet, cc=150_000, c1h=150_000) == D("1.4625")
    # opus 4.6 has no tier: 300k reads x $0.5/M
    assert cost("claude-opus-4-6", cr=300_000) == D("0.15")


def test_fast_mode_multiplies_by_the_models_factor() -> None:
    base = entry(0, model="claude-opus-4-6", inp=100, out=1000, cc=1000, cr=100_000)
    # 100x5 + 1000x25 + 1000x6.25 + 100000x0.5 = 81,750 $/M = $0.08175 (ccusage: 0.08175)
    assert entry_cost(base, TABLE, CostMode.AUTO) == D("0.08175")
    assert entry_cost(replace(base, fast=True), TABLE, CostMode.AUTO) == D("0.4905")
    opus48 = replace(base, model="claude-opus-4-8", fast=True)
    assert entry_cost(opus48, TABLE, CostMode.AUTO) == D("0.1635")


@pytest.mark.parametrize(
    "model",
    ["claude-opus-4-6[1m]", "anthropic/claude-opus-4-6", "claude-opus-4-6-20991231", "opus-4-6"],
)
def test_lookup_finds_variants_of_a_known_name(model: str) -> None:
    assert cost(model, out=1_000_000) == D("25")


@pytest.mark.parametrize("model", ["Claude-Opus-4-6", "claude-foo-9", "gpt-5"])
def test_unknown_models_have_no_price_never_zero(model: str) -> None:
    assert cost(model, out=1000) is None


def test_modes_choose_between_cost_usd_and_the_tokens() -> None:
    e = replace(entry(0, out=1_000_000), cost_usd=D("1.5"))
    assert entry_cost(e, TABLE, CostMode.AUTO) == D("1.5")
    assert entry_cost(e, TABLE, CostMode.DISPLAY) == D("1.5")
    assert entry_cost(e, TABLE, CostMode.CALCULATE) == D("25")
    plain = entry(0, out=1_000_000)
    assert entry_cost(plain, TABLE, CostMode.AUTO) == D("25")
    assert entry_cost(plain, TABLE, CostMode.DISPLAY) is None


def test_synthetic_entries_cost_nothing_but_modelless_tokens_are_unknown() -> None:
    assert entry_cost(entry(0, model=None), TABLE, CostMode.AUTO) == 0
    assert entry_cost(entry(0, model=None, out=5), TABLE, CostMode.AUTO) is None


def test_costs_add_up_exactly() -> None:
    one = cost("claude-haiku-4-5-20251001", cr=1)
    assert one == D("1E-7")
    assert one is not None
    assert sum([one] * 1000, D(0)) == D("0.0001")  # floats would drift


def test_a_litellm_file_adds_and_overrides_models(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        '{"sample_spec": {"input_cost_per_token": "x"},'
        ' "claude-opus-4-6": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},'
        ' "my-model": {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002,'
        '   "cache_read_input_token_cost": 1e-07, "provider_specific_entry": {"fast": 3}},'
        ' "image-model": {"output_cost_per_image": 0.04}}'.replace('"x"', "null")
    )
    table = load_prices(path)
    mine = table.lookup("my-model")
    assert mine is not None
    assert mine.cost(entry(0, inp=1_000_000, cr=1_000_000)) == D("1.1")
    assert mine.fast_multiplier == 3
    opus = table.lookup("claude-opus-4-6")
    assert opus is not None
    assert opus.cost(entry(0, out=1_000_000)) == D(2)
    assert table.lookup("claude-haiku-4-5-20251001") is not None  # the bundled rest stays
    assert table.lookup("image-model") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"m": {"input_cost_per_token": "1", "output_cost_per_token": 1}}', "not a number"),
        ('{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1}}', ">= 0"),
    ],
)
def test_bad_price_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_prices(path)


def test_a_missing_price_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_prices(tmp_path / "absent.json")


def test_tables_merge_with_the_override_on_top() -> None:
    small = PriceTable.from_litellm(
        '{"claude-opus-4-6": {"input_cost_per_token": 0, "output_cost_per_token": 0}}', "mine"
    )
    merged = TABLE.merged(small)
    assert merged.source == "bundled+mine"
    price = merged.lookup("claude-opus-4-6")
    assert price is not None
    assert price.cost(entry(0, out=10)) == 0
