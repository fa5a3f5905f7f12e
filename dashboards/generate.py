"""The contextd Grafana dashboard, built from the metric contract.

``python -m dashboards.generate`` writes ``dashboards/contextd.json``; ``--check`` exits 1 when
the committed file differs from what this module builds (the tests run the same comparison).
Every query is spelled from the names in :mod:`contextd.exporters.names`, so renaming a metric
there changes the dashboard, and the committed JSON then fails the check until regenerated.

The dashboard is built with the Grafana Foundation SDK (``grafana-foundation-sdk``), whose
models are generated from Grafana's own schema: the builders only produce fields the schema
knows, and ``Dashboard.from_json`` reads the result back (the schema test).

Template variables: ``datasource`` (any Prometheus-compatible source: Prometheus,
VictoriaMetrics), and ``user`` / ``project`` filters over the per-session series. Queries use
Grafana's ``$__rate_interval`` and ``$__range``; :data:`MACROS` holds the values the tests put in
their place to run every query against a real VictoriaMetrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import bargauge, common, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from contextd.exporters import names

OUT = Path(__file__).resolve().parent / "contextd.json"
UID = "contextd-sessions"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
FILTER = 'user=~"$user", project=~"$project"'
# Grafana's macros and variables, as the tests substitute them to run the queries.
MACROS = {"$__rate_interval": "5m", "$__range": "1h", "$user": ".*", "$project": ".*"}
WARN, CRITICAL = 70.0, 90.0


def sel(metric: names.Metric, extra: str = "") -> str:
    """``metric`` with the dashboard's user/project filter (and ``extra`` matchers)."""
    suffix = "_bucket" if metric.kind is names.Kind.HISTOGRAM else ""
    return f"{metric.name}{suffix}{{{FILTER}{', ' + extra if extra else ''}}}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


PanelBuilder = TypeVar("PanelBuilder", stat.Panel, bargauge.Panel, timeseries.Panel, table.Panel)


def target(ref: str, query: Query) -> prom.Dataquery:
    built = prom.Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    built = built.legend_format(query.legend or "__auto")
    return built.instant() if query.instant else built.range()


def percent_thresholds() -> builder.ThresholdsConfig:
    return (
        builder.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([
            models.Threshold(value=None, color="green"),
            models.Threshold(value=WARN, color="orange"),
            models.Threshold(value=CRITICAL, color="red"),
        ])
    )  # fmt: skip


def last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def with_targets(panel: PanelBuilder, queries: list[Query]) -> PanelBuilder:
    """``panel`` with the queries (refs A, B, ...) and explicit options for its kind."""
    panel = panel.datasource(DATASOURCE)
    for ref, query in zip("ABCDEFGH", queries, strict=False):  # at most 8 queries a panel
        panel = panel.with_target(target(ref, query))
    if isinstance(panel, stat.Panel | bargauge.Panel):
        panel = panel.reduce_options(last_value())
    elif isinstance(panel, timeseries.Panel):
        panel = panel.legend(common.VizLegendOptions().show_legend(True)
                             .display_mode(common_models.LegendDisplayMode.LIST)
                             .placement(common_models.LegendPlacement.BOTTOM))  # fmt: skip
    elif isinstance(panel, table.Panel):
        panel = panel.show_header(True)
    return panel


def overview() -> Iterator[Builder[models.Panel]]:
    """The top row: how many sessions, how full, how close to the thresholds."""
    yield with_targets(
        stat.Panel().title("Active sessions").unit("short").height(4).span(4)
        .description("Live sessions (active or idle) the daemon tracks."),
        [Query(f"sum({names.ACTIVE_SESSIONS.name})", instant=True)],
    )  # fmt: skip
    yield with_targets(
        stat.Panel().title("Context tokens, all sessions").unit("short").height(4).span(5)
        .description("Tokens in the context windows of all live sessions together."),
        [Query(f"sum({sel(names.CONTEXT_TOKENS)})", instant=True)],
    )  # fmt: skip
    yield with_targets(
        stat.Panel().title("Average context usage").unit("percent").height(4).span(5)
        .min(0).max(100).thresholds(percent_thresholds())
        .color_mode(common_models.BigValueColorMode.BACKGROUND),
        [Query(f"avg({sel(names.CONTEXT_PERCENT)})", instant=True)],
    )  # fmt: skip
    yield with_targets(
        stat.Panel().title(f"Sessions over {WARN:.0f} % / {CRITICAL:.0f} %").unit("short")
        .height(4).span(5),
        [Query(f"count({sel(names.CONTEXT_PERCENT)} > {WARN:g}) or vector(0)",
               legend=f"over {WARN:.0f} %", instant=True),
         Query(f"count({sel(names.CONTEXT_PERCENT)} > {CRITICAL:g}) or vector(0)",
               legend=f"over {CRITICAL:.0f} %", instant=True)],
    )  # fmt: skip
    yield with_targets(
        stat.Panel().title("Burn rate").unit("short").height(4).span(5)
        .description("Tokens per minute across the live sessions (all token types)."),
        [Query(f"sum(rate({sel(names.TOKENS)}[$__rate_interval])) * 60",
               legend="tokens/min", instant=True)],
    )  # fmt: skip


def block() -> Iterator[Builder[models.Panel]]:
    """The active 5-hour usage block of each machine (the gauges carry no session labels)."""
    for title, metric, unit in (  # six panels, 4 columns each: one full row
        ("Block tokens", names.BLOCK_TOKENS, "short"),
        ("Block cost", names.BLOCK_COST, "currencyUSD"),
        ("Block burn rate (tokens/min)", names.BLOCK_BURN_RATE, "short"),
        ("Projected tokens at block end", names.BLOCK_PROJECTED_TOKENS, "short"),
        ("Projected cost at block end", names.BLOCK_PROJECTED_COST, "currencyUSD"),
        ("Block time left", names.BLOCK_REMAINING, "s"),
    ):
        yield with_targets(
            stat.Panel().title(title).unit(unit).height(4).span(4)
            .description(metric.help),
            [Query(f"{metric.name} and on (instance) ({names.BLOCK_ACTIVE.name} == 1)",
                   legend="{{instance}}", instant=True)],
        )  # fmt: skip


def context() -> Iterator[Builder[models.Panel]]:
    """Per-session context usage over time, and the sessions closest to their limit."""
    yield with_targets(
        timeseries.Panel().title("Context usage per session").unit("percent").min(0).max(100)
        .height(9).span(16).thresholds(percent_thresholds())
        .thresholds_style(common.GraphThresholdsStyleConfig()
                          .mode(common_models.GraphTresholdsStyleMode.LINE))
        .description("Context tokens as a percentage of each session's window; "
                     f"lines at {WARN:.0f} % and {CRITICAL:.0f} %."),
        [Query(sel(names.CONTEXT_PERCENT), legend="{{project}} {{session_id}}")],
    )  # fmt: skip
    yield with_targets(
        bargauge.Panel().title("Top 5 sessions by context usage").unit("percent")
        .min(0).max(100).height(9).span(8).thresholds(percent_thresholds())
        .orientation(common_models.VizOrientation.HORIZONTAL),
        [Query(f"topk(5, {sel(names.CONTEXT_PERCENT)})", legend="{{project}} {{session_id}}",
               instant=True)],
    )  # fmt: skip
    yield with_targets(
        table.Panel().title("Live sessions").height(8).span(24)
        .description("One row per live session: context tokens, window and usage."),
        [Query(sel(names.CONTEXT_TOKENS), legend="tokens", instant=True),
         Query(sel(names.CONTEXT_WINDOW), legend="window", instant=True),
         Query(sel(names.CONTEXT_PERCENT), legend="percent", instant=True)],
    )  # fmt: skip


def checkpoints() -> Iterator[Builder[models.Panel]]:
    """Threshold crossings, checkpoints and what they saved."""
    yield with_targets(
        timeseries.Panel().title("Threshold crossings").unit("short").height(8).span(8)
        .description("Upward crossings of the 70 % and 90 % thresholds, all sessions."),
        [Query(f"sum(increase({sel(names.THRESHOLD_70)}[$__rate_interval]))",
               legend=f"{WARN:.0f} %"),
         Query(f"sum(increase({sel(names.THRESHOLD_90)}[$__rate_interval]))",
               legend=f"{CRITICAL:.0f} %")],
    )  # fmt: skip
    yield with_targets(
        timeseries.Panel().title("Checkpoints").unit("short").height(8).span(8),
        [Query(f"sum by (project) (increase({sel(names.CHECKPOINTS)}[$__rate_interval]))",
               legend="{{project}}")],
    )  # fmt: skip
    yield with_targets(
        stat.Panel().title("Tokens saved by checkpoints").unit("short").height(8).span(8),
        [Query(f"sum(increase({sel(names.TOKENS_SAVED)}[$__range]))", legend="saved",
               instant=True),
         Query(f"sum(increase({sel(names.TOKENS_SAVED)}[$__range])) / "
               f"sum(increase({sel(names.CHECKPOINTS)}[$__range]))",
               legend="per checkpoint", instant=True)],
    )  # fmt: skip


def usage() -> Iterator[Builder[models.Panel]]:
    """Tokens and cost by type and by model."""
    yield with_targets(
        timeseries.Panel().title("Tokens per minute by type").unit("short").height(8).span(12)
        .fill_opacity(20),
        [Query(f"sum by (type) (rate({sel(names.TOKENS)}[$__rate_interval])) * 60",
               legend="{{type}}")],
    )  # fmt: skip
    yield with_targets(
        timeseries.Panel().title("Tokens per minute by model").unit("short").height(8).span(12),
        [Query(f"sum by (model) (rate({sel(names.TOKENS)}[$__rate_interval])) * 60",
               legend="{{model}}")],
    )  # fmt: skip
    yield with_targets(
        bargauge.Panel().title("Cost by model").unit("currencyUSD").height(8).span(12)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .description("Cost in the selected time range (sessions with a known price only)."),
        [Query(f"sum by (model) (increase({sel(names.COST)}[$__range]))", legend="{{model}}",
               instant=True)],
    )  # fmt: skip
    yield with_targets(
        bargauge.Panel().title("Cost by project").unit("currencyUSD").height(8).span(12)
        .orientation(common_models.VizOrientation.HORIZONTAL),
        [Query(f"sum by (project) (increase({sel(names.COST)}[$__range]))",
               legend="{{project}}", instant=True)],
    )  # fmt: skip


def daemon() -> Iterator[Builder[models.Panel]]:
    """The daemon itself: ingest and latency."""
    yield with_targets(
        timeseries.Panel().title("Hook and status-line events").unit("reqps").height(7).span(8),
        [Query(f"sum by (event) (rate({names.HOOK_EVENTS.name}[$__rate_interval]))",
               legend="{{event}}")],
    )  # fmt: skip
    yield with_targets(
        timeseries.Panel().title("Transcript lines").unit("short").height(7).span(8),
        [Query(f"sum(rate({names.TRANSCRIPT_LINES.name}[$__rate_interval]))", legend="read"),
         Query(f"sum by (reason) (rate({names.TRANSCRIPT_REJECTED.name}[$__rate_interval]))",
               legend="rejected: {{reason}}")],
    )  # fmt: skip
    bucket = f"{names.HTTP_DURATION.name}_bucket"
    yield with_targets(
        timeseries.Panel().title("HTTP latency p99 by route").unit("s").height(7).span(8),
        [Query(f"histogram_quantile(0.99, sum by (le, route) "
               f"(rate({bucket}[$__rate_interval])))", legend="{{route}}")],
    )  # fmt: skip


def build() -> models.Dashboard:
    label_source = names.CONTEXT_TOKENS.name
    dash = (
        builder.Dashboard("contextd: Claude Code sessions")
        .uid(UID)
        .tags(["contextd", "claude-code"])
        .description("Context-window usage, thresholds, checkpoints, tokens and cost of every "
                     "Claude Code session contextd watches.")
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .editable()
        .with_variable(builder.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
        .with_variable(builder.QueryVariable("user").label("User").datasource(DATASOURCE)
                       .query(f"label_values({label_source}, user)")
                       .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .multi(True).include_all(True).all_value(".*"))
        .with_variable(builder.QueryVariable("project").label("Project").datasource(DATASOURCE)
                       .query(f"label_values({label_source}, project)")
                       .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .multi(True).include_all(True).all_value(".*"))
    )  # fmt: skip
    sections = (
        ("Overview", overview), ("5-hour block", block), ("Context", context),
        ("Checkpoints and thresholds", checkpoints), ("Tokens and cost", usage),
        ("Daemon", daemon),
    )  # fmt: skip
    for title, panels in sections:
        dash = dash.with_row(builder.Row(title))
        for panel in panels():
            dash = dash.with_panel(panel)
    return dash.build()


def render() -> str:
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed dashboard differs from the generated one",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python -m dashboards.generate", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
