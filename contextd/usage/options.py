"""``contextd usage`` options and ``GET /api/usage`` query parameters → :class:`UsageOptions`.

One parser for both, so the CLI and the daemon accept and refuse the same values. Keys (the
CLI spells them with dashes): ``report`` (live|daily|session|blocks), ``mode``
(auto|calculate|display),
``token_limit`` (a positive integer, or ``max``: the most tokens an earlier block used),
``cost_threshold`` (US dollars), ``session_duration`` (hours, default 5), ``burn_window``
(minutes, default 10), ``projects`` and ``exclude`` (comma-separated names or directories),
``since`` and ``until`` (``YYYY-MM-DD`` or ``YYYYMMDD``, inclusive), ``timezone`` (an IANA
name; default the local one). A bad value raises :class:`~contextd.errors.OptionError`
naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contextd.errors import OptionError
from contextd.usage.blocks import HOUR_MS, MINUTE_MS
from contextd.usage.pricing import CostMode
from contextd.usage.report import UsageOptions

KEYS = (
    "report",
    "mode",
    "token_limit",
    "cost_threshold",
    "session_duration",
    "burn_window",
    "projects",
    "exclude",
    "since",
    "until",
    "timezone",
)

KEYS = ("report", "mode", "token_limit", "cost_threshold", "session_duration", "burn_window",
        "projects", "exclude", "since", "until", "timezone")  # fmt: skip
REPORTS = ("live", "daily", "session", "blocks")
_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")


def local_timezone() -> tzinfo:
    return datetime.now().astimezone().tzinfo or UTC


def _positive(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(key, f"expected a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise OptionError(key, f"must be a positive number, got {raw!r}")
    return value


def _date(key: str, raw: str) -> date:
    match = _DATE.fullmatch(raw.strip())
    try:
        if match is None:
            raise ValueError
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise OptionError(key, f"expected a date YYYY-MM-DD, got {raw!r}") from None


def _names(raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def parse_report(raw: str | None) -> str:
    report = raw or "live"
    if report not in REPORTS:
        raise OptionError("report", f"expected one of {', '.join(REPORTS)}, got {raw!r}")
    return report


def _mode(raw: str) -> dict[str, object]:
    try:
        return {"mode": CostMode(raw)}
    except ValueError:
        raise OptionError("mode", f"expected auto, calculate or display, got {raw!r}") from None


def _token_limit(raw: str) -> dict[str, object]:
    if raw == "max":
        return {"token_limit_max": True}
    if raw.isdigit() and int(raw) > 0:
        return {"token_limit": int(raw)}
    raise OptionError("token_limit", f"expected a positive integer or 'max', got {raw!r}")


def _cost_threshold(raw: str) -> dict[str, object]:
    try:
        threshold = Decimal(raw)
    except InvalidOperation:
        threshold = Decimal(-1)
    if not threshold.is_finite() or threshold < 0:
        raise OptionError("cost_threshold", f"expected an amount in USD, got {raw!r}")
    return {"cost_threshold": threshold}


def _timezone(raw: str) -> dict[str, object]:
    try:
        return {"tz": ZoneInfo(raw)}
    except (ZoneInfoNotFoundError, ValueError):
        raise OptionError("timezone", f"unknown time zone {raw!r}") from None


_PARSERS: dict[str, Callable[[str], dict[str, object]]] = {
    "mode": _mode,
    "token_limit": _token_limit,
    "cost_threshold": _cost_threshold,
    "session_duration": lambda raw: {
        "session_duration_ms": round(_positive("session_duration", raw) * HOUR_MS)
    },
    "burn_window": lambda raw: {"burn_window_ms": round(_positive("burn_window", raw) * MINUTE_MS)},
    "projects": lambda raw: {"projects": _names(raw)},
    "exclude": lambda raw: {"exclude": _names(raw)},
    "since": lambda raw: {"since": _date("since", raw)},
    "until": lambda raw: {"until": _date("until", raw)},
    "timezone": _timezone,
}


def parse_options(values: Mapping[str, str]) -> UsageOptions:
    """Options from string values (absent or empty keys keep their defaults); ``report`` is
    accepted and left to :func:`parse_report`."""
    changes: dict[str, object] = {"tz": local_timezone()}
    for key, raw in values.items():
        if key == "report":
            continue
        parser = _PARSERS.get(key)
        if parser is None:
            raise OptionError(key, "unknown parameter")
        if raw != "":
            changes.update(parser(raw))
    since, until = changes.get("since"), changes.get("until")
    if isinstance(since, date) and isinstance(until, date) and since > until:
        raise OptionError("until", f"{until} is before since ({since})")
    return UsageOptions(**changes)  # type: ignore[arg-type]
