"""The monitor's widgets. Each one draws a part of a :class:`MonitorSnapshot` and nothing else:
no widget reads a source or a clock, so what they show is a function of the snapshot.

A session's state is a CSS class (``ok``, ``warning``, ``critical``) on its badge and bar;
``app.tcss`` gives each its colour.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import DataTable, Label, Sparkline, Static

from contextd.monitor import text
from contextd.monitor.data import (
    EventRow,
    MonitorSnapshot,
    SessionRow,
    SourceKind,
    State,
)
from contextd.monitor.usage import CostRow, UsageSnapshot
from contextd.usage.blocks import Severity

STATE_STYLE = {State.OK: "bold green", State.WARNING: "bold yellow", State.CRITICAL: "bold red"}


def set_state(widget: Widget, state: State) -> None:
    """Mark ``widget`` with exactly one state class."""
    for each in State:
        widget.set_class(each is state, each.value)


class HealthLine(Static):
    def show(self, snap: MonitorSnapshot) -> None:
        self.update(text.health(snap))
        self.set_class(snap.source is SourceKind.NONE, "-down")


class Banner(Static):
    """Which data source is in use and what is missing; hidden when PromQL has it all."""

    def show(self, snap: MonitorSnapshot, refresh_seconds: float) -> None:
        note = text.banner(snap)
        if snap.source is SourceKind.NONE:
            note = f"{note}\nRetrying every {refresh_seconds:g} s; press r to retry now."
        self.display = note is not None
        self.update(note or "")
        self.set_class(snap.source is SourceKind.DAEMON, "-fallback")
        self.set_class(snap.source is SourceKind.NONE, "-unreachable")


class AggregatePanel(Static):
    def show(self, snap: MonitorSnapshot) -> None:
        self.update("   ".join(f"[b]{name}[/b] {value}"
                               for name, value in text.aggregate_lines(snap)))  # fmt: skip


class UsageBar(Widget):
    """A percent bar as wide as the widget (the layout decides: narrower when compact)."""

    percent: reactive[float] = reactive(0.0)

    def render(self) -> str:
        return text.bar(self.percent, self.size.width)


class HistoryChart(Widget):
    """Usage percent over time on a fixed 0-100 scale (a sparkline would rescale a flat line)."""

    values: reactive[tuple[float, ...]] = reactive(())

    def render(self) -> str:
        if not self.values:
            return "no history"
        return text.chart(self.values, self.size.width, self.size.height)


class SessionLine(Horizontal):
    """One of the top sessions: badge, project, model, tokens/window, bar, sparkline, figures."""

    def compose(self) -> ComposeResult:
        yield Label(classes="badge")
        yield Label(classes="project")
        yield Label(classes="model wide-only")
        yield Label(classes="context")
        yield UsageBar(classes="bar")
        yield Label(classes="percent")
        yield Sparkline([], classes="spark medium-up")
        yield Label(classes="checkpoints")
        yield Label(classes="duration wide-only")

    def show(self, row: SessionRow) -> None:
        self.session_id = row.session_id
        badge = self.query_one(".badge", Label)
        badge.update(row.state.upper())
        set_state(badge, row.state)
        self.query_one(".project", Label).update(row.project or row.session_id[:8])
        self.query_one(".model", Label).update(row.model or "-")
        self.query_one(".context", Label).update(text.context(row))
        bar = self.query_one(UsageBar)
        bar.percent = row.percent
        set_state(bar, row.state)
        self.query_one(".percent", Label).update(f"{row.percent:5.1f}%")
        self.query_one(Sparkline).data = list(row.history)
        self.query_one(".checkpoints", Label).update(
            f"ckpt {row.checkpoints} avg {text.saved(row)}"
        )
        self.query_one(".duration", Label).update(text.duration(row.duration_seconds))


class TopSessions(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("Top sessions by context usage", classes="title")
        yield Label("no live sessions", classes="empty")
        for _ in range(5):
            yield SessionLine()

    def show(self, snap: MonitorSnapshot) -> None:
        lines = list(self.query(SessionLine))
        for line, row in zip(lines, snap.top, strict=False):
            line.show(row)
        for i, line in enumerate(lines):
            line.display = i < len(snap.top)
        self.query_one(".empty", Label).display = not snap.top


def state_text(state: State) -> Text:
    return Text(state.upper(), style=STATE_STYLE[state])


class SessionTable(DataTable[str | Text]):
    """Every session, fullest first; Enter opens its detail."""

    COLUMNS = ("state", "project", "model", "context", "use%", "ckpt", "avg saved", "duration",
               "session")  # fmt: skip

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for column in self.COLUMNS:
            self.add_column(column, key=column)

    def show(self, snap: MonitorSnapshot) -> None:
        """Replace the rows, keeping the cursor on the same session when it is still there."""
        selected = self.selected_session
        self.clear()
        for r in snap.sessions:
            self.add_row(state_text(r.state), r.project or "-", r.model or "-", text.context(r),
                         f"{r.percent:.1f}", str(r.checkpoints), text.saved(r),
                         text.duration(r.duration_seconds), r.session_id,
                         key=r.session_id)  # fmt: skip
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected))

    @property
    def selected_session(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return key.value


class EventList(DataTable[str]):
    def show(self, events: tuple[EventRow, ...]) -> None:
        if not self.columns:
            self.add_columns("at (UTC)", "event", "detail")
        self.clear()
        for event in events:
            self.add_row(event.at.replace("T", " ")[:19], event.kind, event.summary)


class BlockPanel(Vertical):
    """The active 5-hour block: figures, and the burn-rate severity as a coloured badge
    (a CSS class ``normal``, ``moderate`` or ``high``)."""

    def compose(self) -> ComposeResult:
        yield Label("current 5-hour block", classes="title")
        yield Label("", id="usage-severity", classes="severity")
        yield Static("", id="usage-block")

    def show(self, snap: UsageSnapshot) -> None:
        block = snap.block
        severity = self.query_one("#usage-severity", Label)
        severity.display = block is not None
        if block is None:
            none = "no active block" if snap.source is not SourceKind.NONE else "-"
            self.query_one("#usage-block", Static).update(none)
            return
        severity.update(f"burn rate {block.severity.value}")
        for each in Severity:
            severity.set_class(each is block.severity, each.value.lower())
        self.query_one("#usage-block", Static).update(
            "\n".join(f"[b]{name:<11}[/b]{value}" for name, value in text.block_lines(block))
        )


class CostTable(DataTable[str]):
    """Costs per session or per project, costliest first."""

    def __init__(self, *columns: str, id: str) -> None:
        super().__init__(id=id)
        self.names = columns
        """("session", "project", "cost") or ("project", "cost")."""

    def on_mount(self) -> None:
        self.add_columns(*self.names)

    def show(self, rows: tuple[CostRow, ...]) -> None:
        self.clear()
        for row in rows:
            cells = [row.name, row.project or "-", text.money(row.cost_usd)]
            if "session" not in self.names:
                del cells[1]
            self.add_row(*cells, key=row.name)
