"""The metric contract: names, types, units, labels and help text, in one place.

These names are public API (DESIGN.md): the Prometheus collector, the OTLP exporter, the
monitor's PromQL and the Grafana dashboards all derive from this module, and tests hold them
to it. Counter names carry their ``_total`` suffix here as exposed; prometheus_client's
``CounterMetricFamily`` is given the name without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: Kind
    unit: str
    help: str
    labels: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """The name prometheus_client expects (counters without ``_total``)."""
        return self.name.removesuffix("_total") if self.kind is Kind.COUNTER else self.name


SESSION_LABELS = ("session_id", "project", "model", "user", "session_type")
UNKNOWN_SESSION_TYPE = "unknown"  # the session_type of a session no contextd command reported
OVERFLOW_SESSION = "_other"
TOKEN_TYPES = ("input", "output", "cache_read", "cache_creation")

CONTEXT_TOKENS = Metric(
    "contextd_session_context_tokens", Kind.GAUGE, "tokens",
    "Context tokens of the session's last main-chain response "
    "(input + cache_creation + cache_read).", SESSION_LABELS,
)  # fmt: skip
CONTEXT_PERCENT = Metric(
    "contextd_session_context_usage_percent", Kind.GAUGE, "percent",
    "Context tokens as a percentage (0-100) of the session's context window.", SESSION_LABELS,
)  # fmt: skip
CONTEXT_WINDOW = Metric(
    "contextd_session_context_window_tokens", Kind.GAUGE, "tokens",
    "Size of the session's context window.", SESSION_LABELS,
)  # fmt: skip
THRESHOLD_70 = Metric(
    "contextd_session_threshold_70_total", Kind.COUNTER, "",
    "Upward crossings of the first context threshold (70 % by default).", SESSION_LABELS,
)  # fmt: skip
THRESHOLD_90 = Metric(
    "contextd_session_threshold_90_total", Kind.COUNTER, "",
    "Upward crossings of the second context threshold (90 % by default).", SESSION_LABELS,
)  # fmt: skip
CHECKPOINTS = Metric(
    "contextd_session_checkpoint_total", Kind.COUNTER, "",
    "Checkpoints (compactions, explicit checkpoints) of the session.", SESSION_LABELS,
)  # fmt: skip
TOKENS_SAVED = Metric(
    "contextd_session_tokens_saved_total", Kind.COUNTER, "tokens",
    "Context tokens freed by the session's checkpoints.", SESSION_LABELS,
)  # fmt: skip
DURATION = Metric(
    "contextd_session_duration_seconds", Kind.GAUGE, "seconds",
    "Time from the session's first to its last activity.", SESSION_LABELS,
)  # fmt: skip
TOKENS = Metric(
    "contextd_session_tokens_total", Kind.COUNTER, "tokens",
    "Tokens the session used, by type, each API response counted once "
    "(sub-agents included).", (*SESSION_LABELS, "type"),
)  # fmt: skip
COST = Metric(
    "contextd_session_cost_usd_total", Kind.COUNTER, "USD",
    "Cost of the session's tokens in US dollars (sessions with a known price only).",
    SESSION_LABELS,
)  # fmt: skip

PER_SESSION: tuple[Metric, ...] = (
    CONTEXT_TOKENS, CONTEXT_PERCENT, CONTEXT_WINDOW, THRESHOLD_70, THRESHOLD_90, CHECKPOINTS,
    TOKENS_SAVED, DURATION, TOKENS, COST,
)  # fmt: skip

ACTIVE_SESSIONS = Metric(
    "contextd_active_sessions_total", Kind.GAUGE, "",
    "Live sessions (active or idle) the daemon tracks.",
)  # fmt: skip
SESSION_SERIES_DROPPED = Metric(
    "contextd_session_series_overflow", Kind.GAUGE, "",
    "Live sessions beyond the per-session series cap, summed into "
    f"session_id={OVERFLOW_SESSION!r}.",
)  # fmt: skip
TRANSCRIPT_LINES = Metric(
    "contextd_transcript_lines_total", Kind.COUNTER, "",
    "Transcript lines read.",
)  # fmt: skip
TRANSCRIPT_REJECTED = Metric(
    "contextd_transcript_lines_rejected_total", Kind.COUNTER, "",
    "Transcript lines skipped as unusable, by reason.", ("reason",),
)  # fmt: skip
HOOK_EVENTS = Metric(
    "contextd_hook_events_total", Kind.COUNTER, "",
    "Claude Code hook and status-line payloads accepted, by event.", ("event",),
)  # fmt: skip
HTTP_DURATION = Metric(
    "contextd_http_request_duration_seconds", Kind.HISTOGRAM, "seconds",
    "Time to answer HTTP requests, by route and status code.", ("route", "code"),
)  # fmt: skip

SELF: tuple[Metric, ...] = (
    ACTIVE_SESSIONS, SESSION_SERIES_DROPPED, TRANSCRIPT_LINES, TRANSCRIPT_REJECTED, HOOK_EVENTS,
    HTTP_DURATION,
)  # fmt: skip
BLOCK_ACTIVE = Metric(
    "contextd_block_active", Kind.GAUGE, "",
    "1 while a 5-hour usage block is active (all sessions of the machine), else 0.",
)  # fmt: skip
BLOCK_TOKENS = Metric(
    "contextd_block_tokens", Kind.GAUGE, "tokens",
    "Tokens (all types) used so far in the active 5-hour block.",
)  # fmt: skip
BLOCK_COST = Metric(
    "contextd_block_cost_usd", Kind.GAUGE, "USD",
    "Cost in US dollars of the active 5-hour block so far (known prices only).",
)  # fmt: skip
BLOCK_BURN_RATE = Metric(
    "contextd_block_burn_rate_tokens_per_minute", Kind.GAUGE, "",
    "Tokens per minute in the active block over the recent burn-rate window.",
)  # fmt: skip
BLOCK_NON_CACHE_BURN_RATE = Metric(
    "contextd_block_burn_rate_non_cache_tokens_per_minute", Kind.GAUGE, "",
    "Input and output tokens per minute in the active block over the recent burn-rate "
    "window: what the burn-rate severity is judged on (MODERATE from 500, HIGH from 1000).",
)  # fmt: skip
BLOCK_PROJECTED_TOKENS = Metric(
    "contextd_block_projected_tokens", Kind.GAUGE, "tokens",
    "Tokens the active block will have used at its end if the burn rate holds.",
)  # fmt: skip
BLOCK_PROJECTED_COST = Metric(
    "contextd_block_projected_cost_usd", Kind.GAUGE, "USD",
    "Cost in US dollars of the active block at its end if the burn rate holds.",
)  # fmt: skip
BLOCK_REMAINING = Metric(
    "contextd_block_remaining_seconds", Kind.GAUGE, "seconds",
    "Time left until the active block ends.",
)  # fmt: skip

USAGE: tuple[Metric, ...] = (
    BLOCK_ACTIVE, BLOCK_TOKENS, BLOCK_COST, BLOCK_BURN_RATE, BLOCK_NON_CACHE_BURN_RATE,
    BLOCK_PROJECTED_TOKENS, BLOCK_PROJECTED_COST, BLOCK_REMAINING,
)  # fmt: skip
"""Gauges of the active 5-hour block (no labels: one machine, one block)."""
ALL: tuple[Metric, ...] = PER_SESSION + SELF + USAGE

# The PromQL the dashboards, alert rules and ``contextd monitor`` rely on (DESIGN.md).
CONTRACT_QUERIES: tuple[str, ...] = (
    "topk(5, contextd_session_context_usage_percent)",
    "contextd_session_context_usage_percent > 70",
    "sum(contextd_session_context_tokens)",
    "avg(contextd_session_context_usage_percent)",
    "rate(contextd_session_threshold_70_total[5m])",
    "rate(contextd_session_tokens_saved_total[5m]) / rate(contextd_session_checkpoint_total[5m])",
    "contextd_active_sessions_total",
)
