"""The Textual app of ``contextd monitor``: the main view, sessions, detail, aggregate, usage,
help.

Reads run in worker threads (the sources are blocking HTTP clients); results come back to
the UI thread with ``call_from_thread`` and are drawn by every screen on the stack, so a screen
opened later already shows the latest snapshot. A failing source never raises here: the
:class:`~contextd.monitor.data.FallbackSource` turns it into a snapshot that says so.
"""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Label, Sparkline, Static
from textual.worker import Worker

from contextd.monitor import text
from contextd.monitor.data import (
    DEFAULT_THRESHOLDS,
    MonitorSnapshot,
    SessionDetail,
    SourceKind,
    State,
    Thresholds,
)
from contextd.monitor.data import Source as DataSource
from contextd.monitor.usage import UsageSnapshot, read_usage
from contextd.monitor.widgets import (
    AggregatePanel,
    Banner,
    BlockPanel,
    CostTable,
    EventList,
    HealthLine,
    HistoryChart,
    SessionTable,
    TopSessions,
    set_state,
)
from contextd.views import tokens_text

HELP = """\
[b]contextd monitor[/b]: context usage of every Claude Code session

  [b]q[/b]      quit
  [b]r[/b]      refresh now
  [b]s[/b]      all sessions (arrows to move, Enter for a session's detail)
  [b]a[/b]      aggregate view
  [b]u[/b]      usage: the current 5-hour block (tokens, cost, burn rate, projection) and
         the cost per session and per project
  [b]?[/b]      this help
  [b]Esc[/b]    back

Badges: OK below {warn:g} %, WARNING from {warn:g} %, CRITICAL from {critical:g} %.
Burn rate (input + output tokens a minute): NORMAL, MODERATE from 500, HIGH from 1,000.
Data: PromQL (Prometheus or VictoriaMetrics); the daemon's JSON API when no backend answers.
"""


def _monitor(screen: Screen[None]) -> MonitorApp:
    """The app a screen of this module runs in."""
    app = screen.app
    assert isinstance(app, MonitorApp)
    return app


class MainScreen(Screen[None]):
    """Health, aggregate and the top five sessions."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield HealthLine(id="health")
        yield Banner(id="banner")
        yield AggregatePanel(id="aggregate")
        yield TopSessions(id="top")
        yield Footer()

    def show(self, snap: MonitorSnapshot) -> None:
        app = _monitor(self)
        self.query_one(HealthLine).show(snap)
        self.query_one(Banner).show(snap, app.refresh_seconds)
        self.query_one(AggregatePanel).display = snap.source is not SourceKind.NONE
        self.query_one(AggregatePanel).show(snap)
        self.query_one(TopSessions).display = snap.source is not SourceKind.NONE
        self.query_one(TopSessions).show(snap)


class SessionsScreen(Screen[None]):
    """Every session in a navigable table."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner(id="banner")
        yield SessionTable(id="sessions")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SessionTable).focus()

    def show(self, snap: MonitorSnapshot) -> None:
        app = _monitor(self)
        self.query_one(Banner).show(snap, app.refresh_seconds)
        self.query_one(SessionTable).show(snap)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(DetailScreen(event.row_key.value))


class LoadingScreen(Screen[None]):
    """A view whose figures are read in a worker when it opens and again at every refresh
    (one read at a time: a slow source does not pile up threads)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "back")]

    def __init__(self) -> None:
        super().__init__()
        self._loading: Worker[None] | None = None

    def on_mount(self) -> None:
        self.reload()

    def show(self, snap: MonitorSnapshot) -> None:
        """A refresh reloads the view too."""
        self.reload()

    def reload(self) -> None:
        if self._loading is None or self._loading.is_finished:
            self._loading = self.load()

    def load(self) -> Worker[None]:
        """Start reading (a ``@work(thread=True)`` method that draws what it read)."""
        raise NotImplementedError


class DetailScreen(LoadingScreen):
    """One session: its figures, its usage history chart and its recent events."""

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id
        self.loaded: SessionDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Label(self.session_id, id="detail-title")
            yield Label("", id="detail-badge", classes="badge")
            yield Static("loading…", id="detail-figures")
            yield Label("usage history (percent)", classes="title")
            yield HistoryChart(id="detail-chart")
            yield Label("", id="detail-range")
            yield Label("recent events", classes="title")
            yield EventList(id="detail-events")
            yield Static("", id="detail-notes")
        yield Footer()

    @work(thread=True, group="detail")
    def load(self) -> None:
        app = _monitor(self)
        detail = app.source.detail(self.session_id)
        app.call_from_thread(self.draw, detail)

    def draw(self, detail: SessionDetail) -> None:
        self.loaded = detail
        row = detail.session
        badge = self.query_one("#detail-badge", Label)
        if row is None:
            badge.update("GONE")
            self.query_one("#detail-figures", Static).update("this session is not live any more")
        else:
            badge.update(row.state.upper())
            set_state(badge, row.state)
            self.query_one("#detail-figures", Static).update(
                f"[b]{row.project or '-'}[/b]  {row.model or '-'}\n"
                f"context {text.context(row)}  {row.percent:.1f} %   "
                f"checkpoints {row.checkpoints}  avg saved {text.saved(row)}   "
                f"duration {text.duration(row.duration_seconds)}\n"
                f"crossings: {row.warn_crossings} over 70 %, {row.critical_crossings} over 90 %"
            )
        values = [value for _, value in detail.history]
        self.query_one(HistoryChart).values = tuple(values)
        self.query_one("#detail-range", Label).update(
            f"{len(values)} points, min {min(values):.1f} %, max {max(values):.1f} %"
            if values else "no history"
        )  # fmt: skip
        self.query_one(EventList).show(detail.events)
        self.query_one("#detail-notes", Static).update("\n".join(detail.notes))


class AggregateScreen(Screen[None]):
    """Totals across sessions and the total context over the last 30 minutes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner(id="banner")
        with Vertical(id="aggregate-view"):
            yield Static("", id="aggregate-figures")
            yield Label("total context tokens, last 30 minutes", classes="title")
            yield Sparkline([], id="aggregate-chart")
        yield Footer()

    def show(self, snap: MonitorSnapshot) -> None:
        app = _monitor(self)
        self.query_one(Banner).show(snap, app.refresh_seconds)
        agg = snap.aggregate
        states = {state: sum(1 for r in snap.sessions if r.state is state) for state in State}
        lines = [f"[b]{name:<16}[/b]{value}" for name, value in text.aggregate_lines(snap)]
        lines += [
            f"[b]{'active sessions':<16}[/b]{agg.active_sessions}",
            f"[b]{'checkpoints':<16}[/b]{agg.checkpoints}",
            f"[b]{'tokens saved':<16}[/b]{tokens_text(agg.tokens_saved)}",
            f"[b]{'states':<16}[/b]" + "  ".join(
                f"{state.upper()} {count}" for state, count in states.items()),
        ]  # fmt: skip
        self.query_one("#aggregate-figures", Static).update("\n".join(lines))
        self.query_one("#aggregate-chart", Sparkline).data = list(agg.history)


class UsageScreen(LoadingScreen):
    """The current 5-hour block and the cost per session and per project (``u``)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: UsageSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="usage-view"):
            yield Static("loading…", id="usage-source")
            yield BlockPanel(id="usage-block-panel")
            yield Label("cost per session", classes="title")
            yield CostTable("session", "project", "cost", id="usage-sessions")
            yield Label("cost per project", classes="title")
            yield CostTable("project", "cost", id="usage-projects")
        yield Footer()

    @work(thread=True, group="usage")
    def load(self) -> None:
        app = _monitor(self)
        snap = read_usage(app.source)
        app.call_from_thread(self.draw, snap)

    def draw(self, snap: UsageSnapshot) -> None:
        self.loaded = snap
        source = self.query_one("#usage-source", Static)
        source.update(text.usage_source(snap))
        source.set_class(snap.source is SourceKind.DAEMON, "-fallback")
        source.set_class(snap.source is SourceKind.NONE, "-unreachable")
        self.query_one(BlockPanel).show(snap)
        self.query_one("#usage-sessions", CostTable).show(snap.sessions)
        self.query_one("#usage-projects", CostTable).show(snap.projects)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "close"),
        Binding("question_mark", "app.pop_screen", "close"),
    ]

    def compose(self) -> ComposeResult:
        app = _monitor(self)
        limits = app.thresholds
        yield Static(HELP.format(warn=limits.warn, critical=limits.critical), id="help")


class MonitorApp(App[None]):
    """``contextd monitor``: refreshes every ``refresh_seconds`` from ``source``."""

    CSS_PATH = "app.tcss"
    TITLE = "contextd monitor"
    # Screens get "-compact" under 80 columns, "-medium" under 120 (app.tcss hides columns).
    HORIZONTAL_BREAKPOINTS = [(0, "-compact"), (80, "-medium"), (120, "-wide")]  # noqa: RUF012 (typed by Textual)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("r", "refresh", "refresh"),
        Binding("s", "sessions", "sessions"),
        Binding("a", "aggregate", "aggregate"),
        Binding("u", "usage", "usage"),
        Binding("question_mark", "help", "help", key_display="?"),
    ]

    def __init__(
        self, source: DataSource, *, refresh_seconds: float = 5.0,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:  # fmt: skip
        super().__init__()
        self.source = source
        self.refresh_seconds = refresh_seconds
        self.thresholds = thresholds
        self.snapshot: MonitorSnapshot | None = None
        self.refreshes = 0  # snapshots drawn so far (tests wait on it)
        self._fetching: Worker[None] | None = None

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.set_interval(self.refresh_seconds, self.action_refresh)
        self.action_refresh()

    def action_refresh(self) -> None:
        """Start a refresh, unless one is still running (a slow backend must not pile up
        threads: the running one will draw what it gets)."""
        if self._fetching is None or self._fetching.is_finished:
            self._fetching = self.fetch()

    @work(thread=True, group="refresh")
    def fetch(self) -> None:
        snap = self.source.snapshot()
        self.call_from_thread(self.draw, snap)

    def draw(self, snap: MonitorSnapshot) -> None:
        self.snapshot = snap
        self.sub_title = snap.backend or "no data source"
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen | SessionsScreen | AggregateScreen | LoadingScreen):
                screen.show(snap)
        self.refreshes += 1

    def _open(self, screen: Screen[None]) -> None:
        """Open ``screen`` over the main view (never stacking views on views)."""
        while len(self.screen_stack) > 2:  # the default screen, then MainScreen
            self.pop_screen()
        self.push_screen(screen)
        if self.snapshot is not None and isinstance(screen, SessionsScreen | AggregateScreen):
            self.call_after_refresh(screen.show, self.snapshot)

    def action_sessions(self) -> None:
        self._open(SessionsScreen())

    def action_aggregate(self) -> None:
        self._open(AggregateScreen())

    def action_usage(self) -> None:
        self._open(UsageScreen())

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
