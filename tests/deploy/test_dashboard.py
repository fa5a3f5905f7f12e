"""The Grafana dashboard: generated from the metric contract, valid against Grafana's schema,
and every panel's PromQL answering with the expected figures from a real VictoriaMetrics.

Known data is imported into VictoriaMetrics with timestamps: three sessions of two users, one
sample a minute over the last 30 minutes, gauges constant and counters growing linearly, so
every rate and increase has an exact expected value (VictoriaMetrics does not extrapolate).
Grafana's macros are replaced as :data:`dashboards.generate.MACROS` says (``$__rate_interval``
= 5m, ``$__range`` = 1h, the user/project filters = ``.*``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as models

from contextd.exporters import names
from dashboards import generate
from tests.promql_servers import VictoriaMetrics, running_victoria_metrics

pytestmark = pytest.mark.slow
MINUTES = 30
# session -> (user, project, model, context tokens, window, percent)
SESSIONS = {
    "s-web": ("u1", "web", "claude-opus-4-6", 190_000, 200_000, 95.0),
    "s-api": ("u1", "api", "claude-sonnet-4-5", 150_000, 200_000, 75.0),
    "s-cli": ("u2", "cli", "claude-sonnet-4-5", 40_000, 200_000, 20.0),
}
# Per minute: tokens by type, cost (USD), checkpoints and tokens saved, crossings.
PER_MINUTE = {
    "s-web": {"input": 100, "output": 400, "cache_read": 50_000, "cache_creation": 2_000,
              "cost": 0.5, "checkpoints": 0.1, "saved": 12_000.0, "t70": 0.1, "t90": 0.05},
    "s-api": {"input": 50, "output": 150, "cache_read": 20_000, "cache_creation": 1_000,
              "cost": 0.25, "checkpoints": 0.0, "saved": 0.0, "t70": 0.1, "t90": 0.0},
    "s-cli": {"input": 10, "output": 40, "cache_read": 5_000, "cache_creation": 500,
              "cost": 0.0, "checkpoints": 0.0, "saved": 0.0, "t70": 0.0, "t90": 0.0},
}  # fmt: skip

BLOCK = {names.BLOCK_ACTIVE: 1, names.BLOCK_TOKENS: 2_500_000, names.BLOCK_COST: 12.5,
         names.BLOCK_BURN_RATE: 42_000, names.BLOCK_PROJECTED_TOKENS: 9_000_000,
         names.BLOCK_PROJECTED_COST: 40.25, names.BLOCK_REMAINING: 5_400}  # fmt: skip


def panels() -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(generate.OUT.read_text())
    return [p for p in data["panels"] if p["type"] != "row"]


def substituted(expr: str) -> str:
    for macro, value in generate.MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def exposition(now_ms: int) -> str:
    """The known data as timestamped Prometheus text, one sample a minute."""
    lines = []
    for minute in range(MINUTES + 1):
        at = now_ms - (MINUTES - minute) * 60_000
        for sid, (user, project, model, tokens, window, percent) in SESSIONS.items():
            labels = f'session_id="{sid}",project="{project}",model="{model}",user="{user}"'
            rate = PER_MINUTE[sid]
            lines += [
                f"{names.CONTEXT_TOKENS.name}{{{labels}}} {tokens} {at}",
                f"{names.CONTEXT_WINDOW.name}{{{labels}}} {window} {at}",
                f"{names.CONTEXT_PERCENT.name}{{{labels}}} {percent} {at}",
                f"{names.COST.name}{{{labels}}} {rate['cost'] * minute} {at}",
                f"{names.CHECKPOINTS.name}{{{labels}}} {rate['checkpoints'] * minute} {at}",
                f"{names.TOKENS_SAVED.name}{{{labels}}} {rate['saved'] * minute} {at}",
                f"{names.THRESHOLD_70.name}{{{labels}}} {rate['t70'] * minute} {at}",
                f"{names.THRESHOLD_90.name}{{{labels}}} {rate['t90'] * minute} {at}",
            ]
            lines += [f'{names.TOKENS.name}{{{labels},type="{kind}"}} {rate[kind] * minute} {at}'
                      for kind in names.TOKEN_TYPES]  # fmt: skip
        lines += [f"{metric.name} {value} {at}" for metric, value in BLOCK.items()]
        lines += [
            f"{names.ACTIVE_SESSIONS.name} {len(SESSIONS)} {at}",
            f'{names.HOOK_EVENTS.name}{{event="PreToolUse"}} {30 * minute} {at}',
            f"{names.TRANSCRIPT_LINES.name} {120 * minute} {at}",
            f'{names.TRANSCRIPT_REJECTED.name}{{reason="malformed"}} {minute} {at}',
        ]
        for le, count in (("0.001", 50), ("0.005", 59), ("+Inf", 60)):
            lines.append(f'{names.HTTP_DURATION.name}_bucket{{route="/hooks",code="200",'
                         f'le="{le}"}} {count * minute} {at}')  # fmt: skip
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VictoriaMetrics, float]]:
    with running_victoria_metrics(tmp_path_factory.mktemp("vm-dashboard")) as server:
        now_ms = (int(time.time()) - 5) * 1000
        server.push(exposition(now_ms))
        yield server, now_ms / 1000


# -- generation and schema --------------------------------------------------------------------


def test_the_committed_dashboard_is_what_the_generator_builds() -> None:
    assert generate.OUT.read_text() == generate.render(), (
        "dashboards/contextd.json is stale: run python -m dashboards.generate"
    )
    assert generate.main(["--check"]) == 0


def test_a_renamed_metric_changes_the_dashboard_and_fails_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renamed = replace(names.CONTEXT_PERCENT, name="contextd_session_context_fill_ratio")
    monkeypatch.setattr(names, "CONTEXT_PERCENT", renamed)
    assert "contextd_session_context_fill_ratio" in generate.render()
    assert generate.main(["--check"]) == 1


def test_the_dashboard_reads_back_through_grafanas_schema_models() -> None:
    """The SDK's models are generated from Grafana's dashboard schema: reading the JSON into
    them and writing it out again loses and adds nothing."""
    data = json.loads(generate.OUT.read_text())
    model = models.Dashboard.from_json(data)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    assert again == data
    assert model.uid == generate.UID
    assert model.templating is not None
    assert model.templating.list_val is not None
    assert [v.name for v in model.templating.list_val] == ["datasource", "user", "project"]


def test_panels_cover_the_issue_and_every_query_names_contract_metrics() -> None:
    titles = {p["title"] for p in panels()}
    for wanted in ("Context usage per session", "Top 5 sessions by context usage",
                   "Threshold crossings", "Checkpoints", "Tokens saved by checkpoints",
                   "Tokens per minute by type", "Tokens per minute by model", "Cost by model",
                   "Active sessions", "Burn rate", "Block tokens", "Block cost",
                   "Block burn rate (tokens/min)", "Projected cost at block end"):  # fmt: skip
        assert wanted in titles
    known = {m.name for m in names.ALL} | {f"{names.HTTP_DURATION.name}_bucket"}
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bcontextd_[a-z0-9_]+", target["expr"]))
            assert used, target["expr"]
            assert used <= known, (panel["title"], used - known)
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# -- every panel's PromQL against VictoriaMetrics -----------------------------------------------


def test_every_panel_query_answers_with_data(vm: tuple[VictoriaMetrics, float]) -> None:
    server, now = vm
    for panel in panels():
        for target in panel["targets"]:
            expr = substituted(target["expr"])
            if target.get("instant"):
                assert server.query(expr, time=now), (panel["title"], expr)
            else:
                series = server.query_range(expr, now - 20 * 60, now, 60)
                assert series, (panel["title"], expr)
                assert all(points for _, points in series), (panel["title"], expr)


def value_of(server: VictoriaMetrics, now: float, title: str, ref: str = "A") -> dict[str, float]:
    """The instant result of one panel query, keyed by its legend's labels."""
    (panel,) = [p for p in panels() if p["title"] == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref]
    result = server.query(substituted(target["expr"]), time=now)
    return {",".join(labels.get(k, "") for k in ("project", "session_id", "type", "model")):
            value for labels, value in result}  # fmt: skip


def test_panel_figures_are_the_known_data(vm: tuple[VictoriaMetrics, float]) -> None:
    server, now = vm
    assert value_of(server, now, "Active sessions") == {",,,": 3}
    assert value_of(server, now, "Block cost") == {",,,": 12.5}
    assert value_of(server, now, "Projected tokens at block end") == {",,,": 9_000_000}
    assert value_of(server, now, "Block time left") == {",,,": 5_400}
    assert value_of(server, now, "Context tokens, all sessions") == {",,,": 380_000}
    assert value_of(server, now, "Average context usage")[",,,"] == pytest.approx(190 / 3)
    assert value_of(server, now, "Sessions over 70 % / 90 %", "A") == {",,,": 2}
    assert value_of(server, now, "Sessions over 70 % / 90 %", "B") == {",,,": 1}
    tokens_per_minute = sum(sum(r[k] for k in names.TOKEN_TYPES) for r in PER_MINUTE.values())
    assert value_of(server, now, "Burn rate")[",,,"] == pytest.approx(tokens_per_minute)
    top = server.query(substituted(next(
        t["expr"] for p in panels() if p["title"] == "Top 5 sessions by context usage"
        for t in p["targets"])), time=now)  # fmt: skip
    assert sorted((labels["session_id"], v) for labels, v in top) == [
        ("s-api", 75.0), ("s-cli", 20.0), ("s-web", 95.0)]  # fmt: skip
    by_type = value_of(server, now, "Tokens per minute by type")
    for kind in names.TOKEN_TYPES:
        expected = sum(r[kind] for r in PER_MINUTE.values())
        assert by_type[f",,{kind},"] == pytest.approx(expected)
    cost = value_of(server, now, "Cost by model")
    # 30 minutes of data inside the 1 h range: 30 * 0.5 (opus) and 30 * (0.25 + 0) (sonnet).
    assert cost[",,,claude-opus-4-6"] == pytest.approx(15.0)
    assert cost[",,,claude-sonnet-4-5"] == pytest.approx(7.5)
    saved = value_of(server, now, "Tokens saved by checkpoints", "A")[",,,"]
    per_checkpoint = value_of(server, now, "Tokens saved by checkpoints", "B")[",,,"]
    assert saved == pytest.approx(12_000 * 30)
    assert per_checkpoint == pytest.approx(12_000 / 0.1)
