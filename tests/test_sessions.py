"""The session engine: thresholds, checkpoints, windows, statuses, buffers, snapshots."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contextd.events import (
    Activity,
    Compaction,
    Origin,
    Response,
    SessionEnd,
    SessionStart,
    StatusLine,
)
from contextd.models import EventKind, SessionStatus, TokenCounts, WindowSource
from contextd.sessions import EngineConfig, SessionManager, project_name

T0 = 1_700_000_000.0
SID = "11111111-2222-3333-4444-555555555555"


def response(context: int, at: float = T0, *, model: str = "claude-opus-4-6", sid: str = SID,
             main: bool = True, output: int = 10) -> Response:  # fmt: skip
    usage = TokenCounts(input=context, output=output)
    return Response(sid, at, model, usage, context, main_chain=main)


def kinds(manager: SessionManager, sid: str = SID) -> list[EventKind]:
    return [e.kind for e in manager.events(sid)]


def test_context_and_percent_follow_the_last_main_chain_response() -> None:
    m = SessionManager()
    m.apply(response(50_000), T0)
    m.apply(response(80_000, T0 + 1), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert s.context_tokens == 80_000
    assert s.window_tokens == 200_000
    assert s.percent == pytest.approx(40.0)
    assert s.tokens == TokenCounts(input=130_000, output=20)


def test_sidechain_usage_counts_in_totals_but_not_in_context() -> None:
    m = SessionManager()
    m.apply(response(50_000), T0)
    m.apply(response(120_000, T0 + 1, model="claude-sonnet-4-5", main=False), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert s.context_tokens == 50_000
    assert s.model == "claude-opus-4-6"
    assert s.tokens.input == 170_000
    assert s.sidechain_tokens.input == 120_000
    assert {u.model for u in s.by_model} == {"claude-opus-4-6", "claude-sonnet-4-5"}


def test_seventy_percent_is_counted_once_per_upward_crossing() -> None:
    m = SessionManager()
    for i, ctx in enumerate([100_000, 150_000, 160_000, 170_000]):
        m.apply(response(ctx, T0 + i), T0 + i)
    s = m.session(SID)
    assert s is not None
    assert s.warn_crossings == 1
    assert s.critical_crossings == 0
    assert not s.warn_armed


def test_second_crossing_of_70_counts_only_after_dropping_below() -> None:
    m = SessionManager()
    for i, ctx in enumerate([150_000, 130_000, 150_000]):
        m.apply(response(ctx, T0 + i), T0 + i)
    s = m.session(SID)
    assert s is not None
    assert s.warn_crossings == 2


def test_second_crossing_of_70_counts_after_a_checkpoint_even_without_a_drop() -> None:
    m = SessionManager()
    m.apply(response(150_000), T0)
    m.apply(Compaction(SID, T0 + 1, "manual", pre_tokens=150_000, post_tokens=145_000), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert s.warn_crossings == 2  # re-armed by the checkpoint, and 145k is still above 70 %
    assert s.checkpoints == 1
    assert s.tokens_saved == 5_000


def test_ninety_percent_crossing_also_counts_seventy_when_jumping_past_both() -> None:
    m = SessionManager()
    m.apply(response(10_000), T0)
    events = m.apply(response(190_000, T0 + 1), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert (s.warn_crossings, s.critical_crossings) == (1, 1)
    crossed = [e.data["threshold"] for e in events if e.kind is EventKind.THRESHOLD_CROSSED]
    assert crossed == [70.0, 90.0]


def test_configured_thresholds_are_used() -> None:
    m = SessionManager(EngineConfig(warn_percent=50, critical_percent=60))
    m.apply(response(110_000), T0)
    s = m.session(SID)
    assert s is not None
    assert (s.warn_crossings, s.critical_crossings) == (1, 0)


@pytest.mark.parametrize(
    ("warn", "critical"), [(90.0, 70.0), (0.0, 50.0), (70.0, 101.0), (70.0, 70.0)]
)
def test_invalid_thresholds_are_rejected(warn: float, critical: float) -> None:
    with pytest.raises(ValueError, match="thresholds"):
        EngineConfig(warn_percent=warn, critical_percent=critical)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=260_000), min_size=1, max_size=40))
def test_crossings_equal_upward_transitions_of_a_reference_model(contexts: list[int]) -> None:
    m = SessionManager()
    for i, ctx in enumerate(contexts):
        m.apply(response(ctx, T0 + i), T0 + i)
    # Reference: a crossing is a step from below the threshold to at/above it (start below).
    window = 1_000_000 if any(c > 200_000 for c in contexts) else 200_000
    expected = {70.0: 0, 90.0: 0}
    for threshold in expected:
        below = True
        first_big = next((i for i, c in enumerate(contexts) if c > 200_000), None)
        for i, ctx in enumerate(contexts):
            win = window if first_big is not None and i >= first_big else 200_000
            pct = 100.0 * ctx / win
            if below and pct >= threshold:
                expected[threshold] += 1
                below = False
            elif pct < threshold:
                below = True
    s = m.session(SID)
    assert s is not None
    assert (s.warn_crossings, s.critical_crossings) == (expected[70.0], expected[90.0])


def test_compaction_without_post_tokens_is_measured_by_the_next_main_response() -> None:
    m = SessionManager()
    m.apply(response(165_000), T0)
    m.apply(Compaction(SID, T0 + 1, "auto", pre_tokens=170_251), T0 + 1)
    pending = m.session(SID)
    assert pending is not None
    assert pending.pending_checkpoint == 170_251
    assert pending.tokens_saved == 0
    m.apply(response(30_000, T0 + 2, main=False), T0 + 2)  # a sub-agent does not measure it
    m.apply(response(36_000, T0 + 3), T0 + 3)
    s = m.session(SID)
    assert s is not None
    assert s.checkpoints == 1
    assert s.pending_checkpoint is None
    assert s.tokens_saved == 170_251 - 36_000
    assert EventKind.CHECKPOINT_MEASURED in kinds(m)


def test_compaction_with_post_tokens_sets_context_immediately() -> None:
    m = SessionManager()
    m.apply(response(900_000, model="claude-opus-5"), T0)
    m.apply(Compaction(SID, T0 + 1, "auto", pre_tokens=975_114, post_tokens=2_897), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert s.context_tokens == 2_897
    assert s.tokens_saved == 975_114 - 2_897
    assert s.window_tokens == 1_000_000
    assert s.window_source is WindowSource.MODEL


def test_a_200k_model_showing_more_context_is_promoted_to_a_1m_window() -> None:
    m = SessionManager()
    m.apply(response(250_000, model="claude-sonnet-4-5"), T0)
    s = m.session(SID)
    assert s is not None
    assert s.window_tokens == 1_000_000
    assert s.window_source is WindowSource.OBSERVED
    assert s.percent == pytest.approx(25.0)


def test_a_replayed_older_response_never_overrides_newer_context() -> None:
    m = SessionManager()
    m.apply(response(90_000, T0 + 10), T0 + 10)
    m.apply(response(20_000, T0), T0 + 11)
    s = m.session(SID)
    assert s is not None
    assert s.context_tokens == 90_000
    assert s.tokens.input == 110_000  # usage still counts: it is a distinct response


def test_model_change_is_an_event_and_resets_the_table_window() -> None:
    m = SessionManager()
    m.apply(response(10_000, model="claude-opus-4-6"), T0)
    m.apply(response(10_000, T0 + 1, model="claude-opus-4-7"), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert s.model == "claude-opus-4-7"
    assert s.window_tokens == 1_000_000
    assert EventKind.MODEL_CHANGED in kinds(m)


def test_status_moves_from_active_to_idle_to_expired_with_time() -> None:
    m = SessionManager(EngineConfig(idle_after=60, expire_after=600))
    m.apply(Activity(SID, T0), T0)
    assert m.session(SID).status is SessionStatus.ACTIVE  # type: ignore[union-attr]
    m.tick(T0 + 59)
    assert m.session(SID).status is SessionStatus.ACTIVE  # type: ignore[union-attr]
    m.tick(T0 + 60)
    assert m.session(SID).status is SessionStatus.IDLE  # type: ignore[union-attr]
    m.tick(T0 + 600)
    assert m.session(SID).status is SessionStatus.EXPIRED  # type: ignore[union-attr]
    m.apply(Activity(SID, T0 + 700), T0 + 700)
    assert m.session(SID).status is SessionStatus.ACTIVE  # type: ignore[union-attr]
    changes = [(e.data["before"], e.data["after"]) for e in m.events(SID)
               if e.kind is EventKind.STATUS_CHANGED]  # fmt: skip
    assert changes == [("active", "idle"), ("idle", "expired"), ("expired", "active")]


def test_old_activity_creates_an_expired_session() -> None:
    m = SessionManager()
    m.apply(Activity(SID, T0), T0 + 86_400)
    s = m.session(SID)
    assert s is not None
    assert s.status is SessionStatus.EXPIRED
    assert not s.live


def test_per_session_event_buffer_keeps_the_last_500() -> None:
    m = SessionManager(EngineConfig(session_events=500, global_events=700))
    for i in range(800):
        m.apply(response(1000 + i, T0 + i), T0 + i)
    events = m.events(SID)
    assert len(events) == 500
    assert events[-1].data["context_tokens"] == 1799
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert len(m.events()) == 700


def test_global_buffer_interleaves_sessions_in_order() -> None:
    m = SessionManager()
    m.apply(response(1000, T0, sid="a"), T0)
    m.apply(response(2000, T0 + 1, sid="b"), T0 + 1)
    m.apply(response(3000, T0 + 2, sid="a"), T0 + 2)
    sids = [e.session_id for e in m.events() if e.kind is EventKind.RESPONSE]
    assert sids == ["a", "b", "a"]


def test_snapshots_are_immutable_and_published_per_change() -> None:
    m = SessionManager()
    m.apply(response(1000), T0)
    first = m.snapshot()
    assert m.snapshot() is first  # nothing changed: the same published object
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].context_tokens = 5  # type: ignore[misc]
    m.apply(response(2000, T0 + 1), T0 + 1)
    second = m.snapshot()
    assert second is not first
    assert first[0].context_tokens == 1000
    assert second[0].context_tokens == 2000


def test_snapshot_holds_every_session_in_memory_with_its_latest_state() -> None:
    m = SessionManager()
    m.apply(Activity("old", T0), T0 + 5)
    m.apply(Activity("new", T0 + 3), T0 + 5)
    m.drain()  # freezes what changed, as the store's commit does
    m.apply(Activity("old", T0 + 4), T0 + 5)
    by_id = {s.session_id: s.last_activity for s in m.snapshot()}
    assert by_id == {"old": T0 + 4, "new": T0 + 3}


def test_drain_then_adopt_rebuilds_identical_state() -> None:
    m = SessionManager()
    m.apply(response(150_000), T0)
    m.apply(Compaction(SID, T0 + 1, "auto", pre_tokens=160_000), T0 + 1)
    changes = m.drain()
    assert [s.session_id for s in changes.sessions] == [SID]
    assert m.drain().sessions == ()  # drained once
    rebuilt = SessionManager(next_seq=m.next_seq)
    rebuilt.adopt(changes.sessions[0], changes.events)
    rebuilt.apply(response(40_000, T0 + 2), T0 + 2)
    m.apply(response(40_000, T0 + 2), T0 + 2)
    assert rebuilt.session(SID) == m.session(SID)
    assert rebuilt.events(SID) == m.events(SID)


def test_evict_forgets_only_drained_sessions_that_are_no_longer_live() -> None:
    m = SessionManager(EngineConfig(idle_after=10, expire_after=20))
    m.apply(Activity("live", T0 + 100), T0 + 100)
    m.apply(Activity("gone", T0), T0 + 100)
    assert m.evict() == ()  # not yet persisted
    m.drain()
    assert m.evict() == ("gone",)
    assert m.knows("live")
    assert not m.knows("gone")


def test_origin_sets_project_from_the_first_cwd_and_tracks_the_latest() -> None:
    m = SessionManager()
    m.apply(Activity(SID, T0, Origin(cwd="/home/u/work/repo", git_branch="main")), T0)
    m.apply(Activity(SID, T0 + 1, Origin(cwd="/home/u/work/repo/sub", version="2.1.39")), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert (s.project, s.cwd, s.git_branch, s.version) == (
        "repo", "/home/u/work/repo/sub", "main", "2.1.39",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cwd", "name"),
    [("/home/u/repo", "repo"), ("/home/u/repo/", "repo"), ("C:\\Users\\me\\proj", "proj"),
     ("/", "/"), (None, None)],
)  # fmt: skip
def test_project_name_is_the_last_path_component(cwd: str | None, name: str | None) -> None:
    assert project_name(cwd) == name


def test_where_a_session_runs_does_not_depend_on_the_order_lines_arrive_in() -> None:
    lines = [
        Activity(SID, T0, Origin(cwd="/w/repo", git_branch="main", version="2.1.38")),
        Activity(SID, T0 + 5, Origin(cwd="/w/repo/sub", git_branch="feature", version="2.1.39")),
        Activity(SID, T0 + 2, Origin(cwd="/w/repo/agent", git_branch="main")),
    ]
    results = set()
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]):
        m = SessionManager()
        for i in order:
            m.apply(lines[i], T0 + 10)
        s = m.session(SID)
        assert s is not None
        results.add((s.project, s.cwd, s.git_branch, s.version, s.started_at, s.last_activity))
    assert results == {("repo", "/w/repo/sub", "feature", "2.1.39", T0, T0 + 5)}


# -- hooks and the status line ---------------------------------------------------------------


def test_clear_supersedes_the_previous_session_and_links_its_successor() -> None:
    m = SessionManager()
    origin = Origin(cwd="/w/repo")
    m.apply(SessionStart("old", T0, "startup", origin=origin), T0)
    m.apply(SessionEnd("old", T0 + 100, "clear", origin=origin), T0 + 100)
    m.apply(SessionStart("new", T0 + 101, "clear", origin=origin), T0 + 101)
    old, new = m.session("old"), m.session("new")
    assert old is not None
    assert new is not None
    assert (old.status, old.superseded_by, old.end_reason) == (
        SessionStatus.SUPERSEDED, "new", "clear",
    )  # fmt: skip
    assert new.status is SessionStatus.ACTIVE


def test_a_session_end_is_final_until_a_start_resumes_it() -> None:
    m = SessionManager()
    m.apply(response(50_000), T0)
    m.apply(SessionEnd(SID, T0 + 10, "prompt_input_exit"), T0 + 10)
    m.apply(Activity(SID, T0 + 12), T0 + 12)  # a late line from around the exit
    assert m.session(SID).status is SessionStatus.ENDED  # type: ignore[union-attr]
    m.apply(SessionStart(SID, T0 + 20, "resume"), T0 + 20)
    s = m.session(SID)
    assert s is not None
    assert (s.status, s.ended_at, s.end_reason) == (SessionStatus.ACTIVE, None, None)
    assert s.context_tokens == 50_000


def test_the_status_line_window_is_authoritative() -> None:
    m = SessionManager()
    m.apply(StatusLine(SID, T0, "claude-sonnet-4-5", window_tokens=1_000_000,
                       context_tokens=150_000), T0)  # fmt: skip
    m.apply(response(160_000, T0 + 1, model="claude-sonnet-4-5"), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert (s.window_tokens, s.window_source) == (1_000_000, WindowSource.STATUSLINE)
    assert s.percent == pytest.approx(16.0)
    assert s.warn_crossings == 0  # 15 % and 16 %, not 75 % and 80 % of a 200k table window


def test_status_line_context_crosses_thresholds_and_null_usage_changes_nothing() -> None:
    m = SessionManager()
    m.apply(StatusLine(SID, T0, "claude-opus-4-6", 200_000, 185_000), T0)
    m.apply(StatusLine(SID, T0 + 1, "claude-opus-4-6", 200_000, None), T0 + 1)
    s = m.session(SID)
    assert s is not None
    assert (s.context_tokens, s.warn_crossings, s.critical_crossings) == (185_000, 1, 1)


def test_hook_then_transcript_on_one_compaction_count_once_with_the_transcript_figures() -> None:
    m = SessionManager()
    m.apply(response(160_000), T0)
    m.apply(Compaction(SID, T0 + 5, "manual", pre_tokens=None, source="hook"), T0 + 5)
    m.apply(Compaction(SID, T0 + 4, "manual", pre_tokens=170_000, post_tokens=9_000), T0 + 6)
    s = m.session(SID)
    assert s is not None
    assert (s.checkpoints, s.tokens_saved, s.context_tokens) == (1, 161_000, 9_000)


def test_transcript_then_hook_on_one_compaction_count_once() -> None:
    m = SessionManager()
    m.apply(response(160_000), T0)
    m.apply(Compaction(SID, T0 + 4, "auto", pre_tokens=170_000), T0 + 4)
    m.apply(Compaction(SID, T0 + 5, "auto", pre_tokens=None, source="hook"), T0 + 5)
    m.apply(response(30_000, T0 + 6), T0 + 6)
    s = m.session(SID)
    assert s is not None
    assert (s.checkpoints, s.tokens_saved) == (1, 140_000)


def test_a_hook_compaction_alone_is_measured_from_the_current_context() -> None:
    m = SessionManager()
    m.apply(response(160_000), T0)
    m.apply(Compaction(SID, T0 + 5, "manual", pre_tokens=None, source="hook"), T0 + 5)
    m.apply(Compaction(SID, T0 + 6, "manual", pre_tokens=None, source="hook"), T0 + 6)  # again
    m.apply(response(20_000, T0 + 7), T0 + 7)
    s = m.session(SID)
    assert s is not None
    assert (s.checkpoints, s.tokens_saved) == (1, 140_000)


def test_two_compactions_from_the_transcript_minutes_apart_count_twice() -> None:
    m = SessionManager()
    m.apply(Compaction(SID, T0, "manual", pre_tokens=100_000, post_tokens=5_000), T0)
    m.apply(Compaction(SID, T0 + 10, "manual", pre_tokens=50_000, post_tokens=4_000), T0 + 10)
    s = m.session(SID)
    assert s is not None
    assert (s.checkpoints, s.tokens_saved) == (2, 141_000)


def test_a_checkpoint_without_its_after_figure_does_not_recount_the_stale_context() -> None:
    m = SessionManager()
    m.apply(response(150_000), T0)
    m.apply(Compaction(SID, T0 + 1, "auto", pre_tokens=150_000), T0 + 1)
    m.apply(response(148_000, T0 + 2), T0 + 2)  # compaction freed little: still above 70 %
    s = m.session(SID)
    assert s is not None
    assert s.warn_crossings == 2  # re-armed by the checkpoint, counted on the next real figure


def test_the_first_reported_session_type_sticks_and_a_reported_user_beats_the_default() -> None:
    m = SessionManager(EngineConfig(default_user="d" * 16))
    m.apply(Activity(SID, T0, Origin(cwd="/p")), T0)
    s = m.session(SID)
    assert s is not None
    assert (s.session_type, s.user) == (None, "d" * 16)
    m.apply(Activity(SID, T0 + 1, Origin(session_type="ssh", user="a" * 16)), T0 + 1)
    m.apply(Activity(SID, T0 + 2, Origin(session_type="tmux", user="b" * 16)), T0 + 2)
    m.apply(Activity(SID, T0 - 5, Origin(session_type="vscode")), T0 + 3)  # older, still later
    s = m.session(SID)
    assert s is not None
    assert (s.session_type, s.user) == ("ssh", "a" * 16)
    copy = SessionManager()
    copy.adopt(s)
    assert copy.session(SID) == s
