"""How the monitor writes figures, shared by the Textual UI and ``contextd monitor --once``.

Pure functions of a snapshot: no clock is read here (a snapshot carries its own time), so the
same snapshot always reads the same.
"""

from __future__ import annotations

from contextd.monitor.data import MonitorSnapshot, SessionRow, SourceKind
from contextd.monitor.usage import BlockFigures, UsageSnapshot
from contextd.views import tokens_text

BAR_CELLS = "▏▎▍▌▋▊▉█"  # eighths of a cell, left to right
BLOCKS = "▁▂▃▄▅▆▇█"  # eighths of a cell, bottom to top


def duration(seconds: float | None) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def bar(percent: float, width: int) -> str:
    """A horizontal bar ``width`` cells wide, filled to ``percent`` (eighths of a cell)."""
    eighths = round(max(0.0, min(100.0, percent)) / 100 * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BAR_CELLS[part - 1] if part else "")
    return text.ljust(width)


def _columns(values: tuple[float, ...], width: int) -> list[float]:
    """At most ``width`` columns: each the largest of its share of ``values`` (peaks stay)."""
    if len(values) <= width:
        return list(values)
    return [max(values[i * len(values) // width : (i + 1) * len(values) // width])
            for i in range(width)]  # fmt: skip


def chart(values: tuple[float, ...], width: int, height: int, top: float = 100.0) -> str:
    """A block chart of ``values`` on an absolute ``[0, top]`` scale, with a percent axis."""
    axis = 5  # "100%┤"
    columns = _columns(values, max(1, width - axis))
    eighths = [round(max(0.0, min(top, v)) / top * height * 8) for v in columns]
    rows = []
    for level in range(height - 1, -1, -1):
        label = {height - 1: f"{top:3.0f}%┤", 0: "  0%┤"}.get(level, "    │")
        cells = "".join(
            " " if e <= level * 8 else "█" if e >= (level + 1) * 8 else BLOCKS[e - level * 8 - 1]
            for e in eighths
        )
        rows.append(label + cells)
    return "\n".join(rows)


def saved(row: SessionRow) -> str:
    average = row.average_saved
    return tokens_text(average) if average is not None else "-"


def context(row: SessionRow) -> str:
    return f"{tokens_text(row.context_tokens)}/{tokens_text(row.window_tokens)}"


def health(snap: MonitorSnapshot) -> str:
    """``VictoriaMetrics http://… · 5 active sessions · daemon up 1h02m``."""
    if snap.source is SourceKind.NONE:
        return "no data source reachable"
    uptime = duration(snap.uptime_seconds) if snap.uptime_seconds is not None else "unknown"
    return (f"{snap.backend} {snap.address} · {snap.aggregate.active_sessions} active sessions"
            f" · daemon uptime {uptime}")  # fmt: skip


def banner(snap: MonitorSnapshot) -> str | None:
    """What the user must know about the data source: fallback, nothing reachable, no data."""
    if snap.source is SourceKind.NONE:
        return "No data source reachable:\n" + "\n".join(snap.problems)
    if snap.source is SourceKind.DAEMON:
        return (f"Data source: the daemon's JSON API at {snap.address} (no PromQL backend). "
                f"Missing: {'; '.join(snap.missing)}.\n" + "\n".join(snap.problems))  # fmt: skip
    if snap.missing:
        return "; ".join(snap.missing)
    return None


def rate(per_hour: float | None, total: int) -> str:
    """A crossing rate per hour, or the total where the source has no rates."""
    return f"{per_hour:.1f}/h" if per_hour is not None else f"{total} total"


def aggregate_lines(snap: MonitorSnapshot) -> list[tuple[str, str]]:
    agg = snap.aggregate
    return [
        ("context tokens", tokens_text(agg.total_context_tokens)),
        ("per session", f"{tokens_text(agg.average_tokens)} ({agg.average_percent:.1f} %)"),
        ("70 % crossings", rate(agg.warn_rate_per_hour, agg.warn_crossings)),
        ("90 % crossings", rate(agg.critical_rate_per_hour, agg.critical_crossings)),
    ]


def plain(snap: MonitorSnapshot) -> str:
    """The snapshot as plain text (``contextd monitor --once``)."""
    lines = [health(snap)]
    note = banner(snap)
    if note:
        lines.append(note)
    if snap.source is SourceKind.NONE:
        return "\n".join(lines) + "\n"
    lines.append("  ".join(f"{name}: {value}" for name, value in aggregate_lines(snap)))
    rows = [("STATE", "PROJECT", "MODEL", "CONTEXT", "USE%", "CKPT", "AVG SAVED", "DURATION",
             "SESSION")]  # fmt: skip
    rows += [(r.state.upper(), r.project or "-", r.model or "-", context(r), f"{r.percent:.1f}",
              str(r.checkpoints), saved(r), duration(r.duration_seconds), r.session_id)
             for r in snap.top]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def money(value: float | None) -> str:
    """``$12.50``; ``n/a`` when no price is known."""
    return "n/a" if value is None else f"${value:,.2f}"


def block_lines(block: BlockFigures) -> list[tuple[str, str]]:
    """The active block's figures (the severity is drawn apart, in its colour)."""
    return [
        ("tokens", tokens_text(block.tokens)),
        ("cost", money(block.cost_usd)),
        ("burn rate", f"{tokens_text(block.burn_rate)}/min "
                      f"({tokens_text(block.non_cache_rate)}/min input+output)"),
        ("projected", f"{tokens_text(block.projected_tokens)} tokens, "
                      f"{money(block.projected_cost_usd)} at the block's end"),
        ("time left", duration(block.remaining_seconds)),
    ]  # fmt: skip


def usage_source(snap: UsageSnapshot) -> str:
    """Where the usage figures come from, what they cover, and what failed on the way."""
    if snap.source is SourceKind.NONE:
        return "No usage figures: " + "; ".join(snap.problems)
    lines = [f"{snap.backend} {snap.address} · {snap.scope}", *snap.missing]
    if snap.source is SourceKind.DAEMON:
        lines.append("Data source: the daemon's JSON API (no PromQL backend): "
                     + "; ".join(snap.problems))  # fmt: skip
    return "\n".join(lines)
