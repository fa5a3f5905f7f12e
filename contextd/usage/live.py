"""The ``contextd usage`` screen, drawn with Rich from a live view (:func:`report.live_view`).

It reads only the JSON-ready view, so it draws the daemon's ``GET /api/usage`` answer and a
local computation alike. :class:`LiveUsage` is the refresh loop's body: each :meth:`step`
fetches a fresh view and returns what to draw; ``cli.py`` owns the terminal and the timing.
Long project names are shortened here, for display only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

NAME_WIDTH = 28
FULL_WIDTH = 110
"""Terminals narrower than this get the compact layout."""
_SEVERITY_STYLE = {"NORMAL": "green", "MODERATE": "yellow", "HIGH": "bold red"}
_LEVEL_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def shorten(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` cut in the middle with an ellipsis when longer than ``width``."""
    if len(name) <= width:
        return name
    keep = width - 1
    return name[: keep - keep // 2] + "…" + name[len(name) - keep // 2 :]


def tokens(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n:.0f}"


def money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def clock(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M")


def day_clock(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _severity(rate: Mapping[str, Any]) -> Text:
    level = str(rate["severity"])
    return Text(level, style=_SEVERITY_STYLE.get(level, ""))


def _header(view: Mapping[str, Any], source: str) -> Text:
    block = view["block"]
    text = Text("contextd usage", style="bold")
    text.append(f"  {clock(view['generated_at'])}  source: {source}", style="dim")
    if block is not None:
        text.append(
            f"\nblock {clock(block['start'])}-{clock(block['end'])}  "
            f"elapsed {duration(block['elapsed_seconds'])}  "
            f"left {duration(block['remaining_seconds'])}"
        )
    else:
        text.append("\nno active 5-hour block")
    return text


def _combined(block: Mapping[str, Any]) -> RenderableType:
    total = block["tokens"]["total"]
    limit = block["limit"]
    if limit is not None:
        bar = ProgressBar(total=max(limit["tokens"], 1), completed=min(total, limit["tokens"]))
        label = f"{tokens(total)} / {tokens(limit['tokens'])} tokens ({limit['percent']:.1f}%)"
    else:
        span = block["elapsed_seconds"] + block["remaining_seconds"]
        bar = ProgressBar(total=max(span, 1), completed=block["elapsed_seconds"])
        label = f"{tokens(total)} tokens (bar: time elapsed in the block)"
    rate = block["burn_rate"]
    projection = block["projection"]
    grid = Table.grid(padding=(0, 2))
    grid.add_row(bar, Text(label))
    line = Text(f"cost {money(block['cost_usd'])}")
    if not block["cost_complete"]:
        line.append(" (incomplete)", style="yellow")
    line.append(f"  burn {tokens(rate['tokens_per_minute'])}/min ")
    line.append_text(_severity(rate))
    line.append(
        f"  projected {tokens(projection['tokens'])} tokens, {money(projection['cost_usd'])}"
    )
    return Group(grid, line)


def _projects(rows: list[Mapping[str, Any]], compact: bool) -> Table:
    table = Table(expand=False, box=None, header_style="bold")
    columns = ["PROJECT", "TOKENS", "SHARE", "COST", "BURN/MIN", "SEVERITY"]
    if not compact:
        columns[1:1] = ["SESSIONS"]
        columns += ["STARTED", "ELAPSED"]
    for col in columns:
        table.add_column(col, justify="left" if col == "PROJECT" else "right", no_wrap=True)
    for row in rows:
        rate = row["burn_rate"]
        cells: list[RenderableType] = [
            shorten(row["project"]),
            tokens(row["tokens"]["total"]),
            f"{row['share_percent']:.1f}%",
            money(row["cost_usd"]),
            tokens(rate["tokens_per_minute"]),
            _severity(rate),
        ]
        if not compact:
            cells[1:1] = [str(row["sessions"])]
            cells += [clock(row["started_at"]), duration(row["elapsed_seconds"])]
        table.add_row(*cells)
    return table


def render(view: Mapping[str, Any], *, source: str = "transcripts", compact: bool = False) -> Group:
    """The screen for one view: header, combined usage, per-project breakdown, warnings."""
    parts: list[RenderableType] = [_header(view, source)]
    block = view["block"]
    if block is not None:
        parts.append(Panel(_combined(block), title="combined", title_align="left"))
        if view["projects"]:
            parts.append(
                Panel(_projects(view["projects"], compact), title="projects", title_align="left")
            )
    warnings = view["warnings"]
    if warnings:
        text = Text()
        for i, warning in enumerate(warnings):
            if i:
                text.append("\n")
            message = str(warning["message"])
            name = warning.get("project")
            if isinstance(name, str):
                message = message.replace(name, shorten(name))
            text.append(message, style=_LEVEL_STYLE.get(warning["level"], ""))
        parts.append(Panel(text, title="warnings", title_align="left"))
    return Group(*parts)


class LiveUsage:
    """One refresh of the live screen per :meth:`step`: fetch a view, render it."""

    def __init__(
        self, fetch: Callable[[], Mapping[str, Any]], *, source: str, compact: bool = False
    ) -> None:
        self._fetch = fetch
        self.source = source
        self.compact = compact
        self.view: Mapping[str, Any] | None = None

    def step(self) -> Group:
        self.view = self._fetch()
        return render(self.view, source=self.source, compact=self.compact)


def _lead(kind: str, row: Mapping[str, Any]) -> list[str]:
    if row.get("is_total"):
        return ["total"] + [""] * (len(_LEADS[kind]) - 1)
    if kind == "daily":
        return [row["date"]]
    if kind == "session":
        return [row["session_id"][:8], shorten(row["project"]), day_clock(row["last_activity"])]
    state = "gap" if row["gap"] else "active" if row["active"] else ""
    return [day_clock(row["start"]), state]


_LEADS = {"daily": ["DATE"], "session": ["SESSION", "PROJECT", "LAST"], "blocks": ["START", ""]}


def report_table(kind: str, report: Mapping[str, Any]) -> Table:
    """The ``daily``, ``session`` or ``blocks`` report (:mod:`contextd.usage.report`)."""
    rows = report[{"daily": "daily", "session": "sessions", "blocks": "blocks"}[kind]]
    table = Table(box=None, header_style="bold")
    lead = _LEADS[kind]
    for col in [*lead, "INPUT", "OUTPUT", "CACHE W", "CACHE R", "TOTAL", "COST", "MODELS"]:
        left = col in (*lead, "MODELS")
        table.add_column(col, justify="left" if left else "right", no_wrap=col != "MODELS")
    for row in [*rows, {**report["totals"], "models": [], "is_total": True}]:
        t = row["tokens"]
        cost = money(row["cost_usd"]) + ("" if row["cost_complete"] else "+?")
        names = [m if isinstance(m, str) else m["model"] for m in row["models"]]
        models = ", ".join(n.removeprefix("claude-") for n in names)
        table.add_row(
            *_lead(kind, row),
            tokens(t["input"]),
            tokens(t["output"]),
            tokens(t["cache_creation"]),
            tokens(t["cache_read"]),
            tokens(t["total"]),
            cost,
            models,
        )
    return table
