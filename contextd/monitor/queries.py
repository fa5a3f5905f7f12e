"""The PromQL the monitor sends, built from the metric contract (``contextd.exporters.names``).

No metric name is spelled here: a rename in ``names`` changes every query at once, and
``tests/monitor`` checks that the top-5 query is the contract's ``topk`` word for word.
"""

from __future__ import annotations

from collections.abc import Iterable

from contextd.exporters import names

RATE_WINDOW = "5m"  # the window of the contract's rate() queries

# Per-session figures the monitor shows, read in one instant query and joined by session.
SESSION_METRICS: tuple[names.Metric, ...] = (
    names.CONTEXT_PERCENT, names.CONTEXT_TOKENS, names.CONTEXT_WINDOW, names.THRESHOLD_70,
    names.THRESHOLD_90, names.CHECKPOINTS, names.TOKENS_SAVED, names.DURATION,
)  # fmt: skip

TOP = 5
TOP_SESSIONS = f"topk({TOP}, {names.CONTEXT_PERCENT.name})"
SESSIONS = '{__name__=~"%s"}' % "|".join(m.name for m in SESSION_METRICS)  # noqa: UP031 (braces)
TOTAL_CONTEXT = f"sum({names.CONTEXT_TOKENS.name})"
AVERAGE_PERCENT = f"avg({names.CONTEXT_PERCENT.name})"
ACTIVE_SESSIONS = f"sum({names.ACTIVE_SESSIONS.name})"
WARN_RATE = f"sum(rate({names.THRESHOLD_70.name}[{RATE_WINDOW}]))"
CRITICAL_RATE = f"sum(rate({names.THRESHOLD_90.name}[{RATE_WINDOW}]))"

# The usage view: the active block's gauges in one query, costs per live session and project.
USAGE_BLOCK = '{__name__=~"%s"}' % "|".join(m.name for m in names.USAGE)  # noqa: UP031 (braces)
SESSION_COSTS = names.COST.name
PROJECT_COSTS = f"sum by (project) ({names.COST.name})"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _regex_literal(value: str) -> str:
    """``value`` matched literally inside a PromQL ``=~`` regex."""
    special = set("\\.^$|?*+()[]{}")
    return "".join(f"\\{c}" if c in special else c for c in value)


def percent_history(session_ids: Iterable[str]) -> str:
    """Context usage percent over time of the given sessions (one series each)."""
    pattern = "|".join(_regex_literal(sid) for sid in session_ids)
    return f'{names.CONTEXT_PERCENT.name}{{session_id=~"{_quote(pattern)}"}}'
