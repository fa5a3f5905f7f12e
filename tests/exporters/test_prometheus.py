"""The Prometheus collector: the metric contract rendered from snapshots on each scrape."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from contextd.errors import ConfigError
from contextd.exporters import names
from contextd.exporters.prometheus import SessionCollector, render
from contextd.models import ZERO_TOKENS, SessionSnapshot, SessionStatus, TokenCounts

# The OpenMetrics writer and parser are not annotated in prometheus_client.
generate_openmetrics: Callable[[CollectorRegistry], bytes] = openmetrics_exposition.generate_latest
parse_openmetrics: Callable[[str], Iterable[Metric]] = (
    openmetrics_parser.text_string_to_metric_families
)

NOW = 1_700_000_000.0
A = "aaaaaaaa-0000-0000-0000-000000000001"
B = "bbbbbbbb-0000-0000-0000-000000000002"
C = "cccccccc-0000-0000-0000-000000000003"


def snap(
    session_id: str,
    *,
    status: SessionStatus = SessionStatus.ACTIVE,
    context: int = 0,
    window: int = 200_000,
    started: float = NOW - 60,
    last: float = NOW,
    project: str | None = "spotter",
    model: str | None = "claude-opus-4-6",
    user: str | None = "0123456789abcdef",
    warn: int = 0,
    critical: int = 0,
    checkpoints: int = 0,
    saved: int = 0,
    tokens: TokenCounts = ZERO_TOKENS,
    cwd: str | None = None,
) -> SessionSnapshot:
    return SessionSnapshot(
        session_id=session_id,
        status=status,
        started_at=started,
        last_activity=last,
        project=project,
        model=model,
        user=user,
        cwd=cwd,
        context_tokens=context,
        window_tokens=window,
        warn_crossings=warn,
        critical_crossings=critical,
        checkpoints=checkpoints,
        tokens_saved=saved,
        tokens=tokens,
    )


def scrape_registry(
    sessions: Sequence[SessionSnapshot] | list[SessionSnapshot],
    counters: Mapping[str, int] | None = None,
    *,
    max_series: int = 500,
) -> CollectorRegistry:
    """A fresh registry holding one collector over ``sessions`` (read on each scrape)."""
    registry = CollectorRegistry()
    registry.register(
        SessionCollector(lambda: sessions, lambda: counters or {}, max_series=max_series)
    )
    return registry


def labels(session_id: str, project: str = "spotter", model: str = "claude-opus-4-6",
           user: str = "0123456789abcdef",
           session_type: str = "unknown") -> dict[str, str]:  # fmt: skip
    return {"session_id": session_id, "project": project, "model": model, "user": user,
            "session_type": session_type}  # fmt: skip


def value(registry: CollectorRegistry, metric: names.Metric, **label_values: str) -> float | None:
    return registry.get_sample_value(metric.name, label_values)


def session_ids(registry: CollectorRegistry) -> set[str]:
    families = text_string_to_metric_families(render(registry).decode())
    return {s.labels["session_id"] for f in families for s in f.samples if "session_id" in s.labels}


def test_every_per_session_metric_reports_the_snapshot_values() -> None:
    s = snap(A, context=150_000, window=200_000, started=NOW - 3600, last=NOW, warn=2,
             critical=1, checkpoints=3, saved=90_000,
             tokens=TokenCounts(10, 20, 30, 40))  # fmt: skip
    registry = scrape_registry([s])
    lab = labels(A)

    assert registry.get_sample_value(names.CONTEXT_TOKENS.name, lab) == 150_000
    assert registry.get_sample_value(names.CONTEXT_PERCENT.name, lab) == 75.0
    assert registry.get_sample_value(names.CONTEXT_WINDOW.name, lab) == 200_000
    assert registry.get_sample_value(names.THRESHOLD_70.name, lab) == 2
    assert registry.get_sample_value(names.THRESHOLD_90.name, lab) == 1
    assert registry.get_sample_value(names.CHECKPOINTS.name, lab) == 3
    assert registry.get_sample_value(names.TOKENS_SAVED.name, lab) == 90_000
    assert registry.get_sample_value(names.DURATION.name, lab) == 3600.0
    assert registry.get_sample_value(names.ACTIVE_SESSIONS.name) == 1
    assert registry.get_sample_value(names.SESSION_SERIES_DROPPED.name) == 0


def test_tokens_are_exported_per_type() -> None:
    registry = scrape_registry([snap(A, tokens=TokenCounts(input=1, output=2, cache_creation=3,
                                                           cache_read=4))])  # fmt: skip
    by_type = {
        kind: registry.get_sample_value(names.TOKENS.name, {**labels(A), "type": kind})
        for kind in names.TOKEN_TYPES
    }
    assert by_type == {"input": 1, "output": 2, "cache_creation": 3, "cache_read": 4}


def test_cost_is_declared_without_samples_until_prices_exist() -> None:
    registry = scrape_registry([snap(A, tokens=TokenCounts(input=5))])
    families = {f.name: f for f in text_string_to_metric_families(render(registry).decode())}

    cost = families[names.COST.family]
    assert cost.type == "counter"
    assert cost.documentation == names.COST.help
    assert cost.samples == []


def test_only_live_sessions_are_exported() -> None:
    sessions = [
        snap("active", status=SessionStatus.ACTIVE),
        snap("idle", status=SessionStatus.IDLE),
        snap("ended", status=SessionStatus.ENDED),
        snap("expired", status=SessionStatus.EXPIRED),
        snap("superseded", status=SessionStatus.SUPERSEDED),
    ]
    registry = scrape_registry(sessions)

    assert session_ids(registry) == {"active", "idle"}
    assert registry.get_sample_value(names.ACTIVE_SESSIONS.name) == 2


def test_a_session_that_expires_vanishes_from_the_next_scrape() -> None:
    sessions = [snap(A, context=10), snap(B, context=20)]
    registry = scrape_registry(sessions)
    assert session_ids(registry) == {A, B}

    sessions[0] = snap(A, context=10, status=SessionStatus.EXPIRED)

    assert session_ids(registry) == {B}
    assert registry.get_sample_value(names.CONTEXT_TOKENS.name, labels(A)) is None
    assert registry.get_sample_value(names.TOKENS.name, {**labels(A), "type": "input"}) is None
    assert registry.get_sample_value(names.ACTIVE_SESSIONS.name) == 1


def test_unknown_project_model_and_user_are_empty_label_values() -> None:
    registry = scrape_registry([snap(A, context=5, project=None, model=None, user=None)])

    assert registry.get_sample_value(names.CONTEXT_TOKENS.name, labels(A, "", "", "")) == 5


def test_sessions_beyond_the_cap_are_summed_into_the_other_series() -> None:
    sessions = [
        snap(A, context=180_000, window=200_000),  # 90 %: kept
        snap(B, context=100_000, window=1_000_000, started=NOW - 100, warn=1, checkpoints=2,
             saved=7, tokens=TokenCounts(1, 2, 3, 4)),  # 10 %
        snap(C, context=50_000, window=200_000, started=NOW - 500, critical=1, checkpoints=1,
             saved=5, tokens=TokenCounts(10, 20, 30, 40)),  # 25 %
    ]  # fmt: skip
    registry = scrape_registry(sessions, max_series=1)
    other = labels(names.OVERFLOW_SESSION, "", "", "", "")

    assert session_ids(registry) == {A, names.OVERFLOW_SESSION}
    assert registry.get_sample_value(names.CONTEXT_TOKENS.name, other) == 150_000
    assert registry.get_sample_value(names.CONTEXT_WINDOW.name, other) == 1_200_000
    assert registry.get_sample_value(names.CONTEXT_PERCENT.name, other) == 12.5
    assert registry.get_sample_value(names.THRESHOLD_70.name, other) == 1
    assert registry.get_sample_value(names.THRESHOLD_90.name, other) == 1
    assert registry.get_sample_value(names.CHECKPOINTS.name, other) == 3
    assert registry.get_sample_value(names.TOKENS_SAVED.name, other) == 12
    assert registry.get_sample_value(names.DURATION.name, other) == 500.0
    for kind, total in zip(names.TOKEN_TYPES, (11, 22, 44, 33), strict=True):
        assert registry.get_sample_value(names.TOKENS.name, {**other, "type": kind}) == total
    assert registry.get_sample_value(names.SESSION_SERIES_DROPPED.name) == 2
    assert registry.get_sample_value(names.ACTIVE_SESSIONS.name) == 3


def test_the_cap_keeps_the_fullest_sessions_then_the_most_recent_then_by_id() -> None:
    sessions = [
        snap("z-full", context=190_000),
        snap("b-half-old", context=100_000, last=NOW - 10),
        snap("c-half-new", context=100_000, last=NOW),
        snap("a-half-new", context=100_000, last=NOW),
        snap("d-empty", context=0),
    ]
    assert session_ids(scrape_registry(sessions, max_series=2)) == {
        "z-full", "a-half-new", names.OVERFLOW_SESSION,
    }  # fmt: skip
    assert session_ids(scrape_registry(sessions, max_series=3)) == {
        "z-full", "a-half-new", "c-half-new", names.OVERFLOW_SESSION,
    }  # fmt: skip


def test_no_overflow_series_while_under_the_cap() -> None:
    registry = scrape_registry([snap(A), snap(B)], max_series=2)

    assert session_ids(registry) == {A, B}
    assert registry.get_sample_value(names.SESSION_SERIES_DROPPED.name) == 0


def test_a_cap_of_zero_sums_every_live_session_into_other() -> None:
    registry = scrape_registry([snap(A, context=1), snap(B, context=2)], max_series=0)

    assert session_ids(registry) == {names.OVERFLOW_SESSION}
    other = labels(names.OVERFLOW_SESSION, "", "", "", "")
    assert registry.get_sample_value(names.CONTEXT_TOKENS.name, other) == 3
    assert registry.get_sample_value(names.SESSION_SERIES_DROPPED.name) == 2


def test_a_negative_cap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_series"):
        SessionCollector(tuple, dict, max_series=-1)


live_sessions = st.lists(
    st.builds(
        snap,
        st.uuids().map(str),
        status=st.sampled_from(SessionStatus),
        context=st.integers(0, 1_000_000),
        window=st.integers(0, 1_000_000),
        last=st.floats(NOW - 1000, NOW),
        checkpoints=st.integers(0, 5),
        tokens=st.builds(TokenCounts, *[st.integers(0, 10**9)] * 4),
    ),
    max_size=40,
    unique_by=lambda s: s.session_id,
)


@settings(max_examples=150, deadline=None)
@given(sessions=live_sessions, cap=st.integers(0, 45))
def test_series_never_exceed_the_cap_and_the_totals_are_kept(
    sessions: list[SessionSnapshot], cap: int
) -> None:
    registry = scrape_registry(sessions, max_series=cap)
    live = [s for s in sessions if s.live]
    families = {f.name: f for f in text_string_to_metric_families(render(registry).decode())}

    context = families[names.CONTEXT_TOKENS.name].samples
    assert len(context) == (cap + 1 if len(live) > cap else len(live))
    assert sum(s.value for s in context) == sum(s.context_tokens for s in live)
    output = [s for s in families[names.TOKENS.family].samples if s.labels["type"] == "output"]
    assert sum(s.value for s in output) == sum(s.tokens.output for s in live)
    checkpoints = families[names.CHECKPOINTS.family].samples
    assert sum(s.value for s in checkpoints) == sum(s.checkpoints for s in live)
    dropped = registry.get_sample_value(names.SESSION_SERIES_DROPPED.name)
    assert dropped == max(0, len(live) - cap)
    assert registry.get_sample_value(names.ACTIVE_SESSIONS.name) == len(live)


def test_transcript_counters_become_lines_and_rejections_by_reason() -> None:
    counters = {
        "transcript_lines": 1000,
        "transcript_rejected_invalid_json": 3,
        "transcript_rejected_oversize": 2,
        "transcript_oversize": 2,
        "transcript_malformed": 3,
        "transcript_blank": 7,
        "transcript_responses": 400,
    }
    registry = scrape_registry([], counters)

    assert registry.get_sample_value(names.TRANSCRIPT_LINES.name) == 1000
    rejected = {
        s.labels["reason"]: s.value
        for f in text_string_to_metric_families(render(registry).decode())
        if f.name == names.TRANSCRIPT_REJECTED.family
        for s in f.samples
    }
    assert rejected == {"invalid_json": 3, "oversize": 2}  # oversize counted once


def test_hook_event_counters_are_exported_by_event() -> None:
    registry = scrape_registry([], {"hook_events_PreToolUse": 5, "hook_events_Stop": 1})

    assert value(registry, names.HOOK_EVENTS, event="PreToolUse") == 5
    assert value(registry, names.HOOK_EVENTS, event="Stop") == 1
    assert registry.get_sample_value(names.TRANSCRIPT_LINES.name) == 0


def test_counter_suffixes_that_are_not_identifiers_are_folded_into_other() -> None:
    counters = {
        "hook_events_/home/alice/.claude/settings.json": 2,
        "hook_events_sk-ant-api03-leaked": 1,
        "hook_events_PostToolUse": 4,
    }
    registry = scrape_registry([], counters)

    assert value(registry, names.HOOK_EVENTS, event=names.OVERFLOW_SESSION) == 3
    assert value(registry, names.HOOK_EVENTS, event="PostToolUse") == 4


def test_exposed_families_match_the_names_module() -> None:
    sessions = [snap(A, context=1, tokens=TokenCounts(1, 1, 1, 1))]
    counters = {"transcript_lines": 1, "transcript_rejected_oversize": 1, "hook_events_Stop": 1}
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            render(scrape_registry(sessions, counters)).decode()
        )
    }
    expected = [m for m in names.ALL if m is not names.HTTP_DURATION]

    assert set(families) == {m.family for m in expected}
    for metric in expected:
        family = families[metric.family]
        assert family.type == metric.kind.value
        assert family.documentation == metric.help
        sample_names = {s.name for s in family.samples}
        assert sample_names <= {metric.name}
        for sample in family.samples:
            assert tuple(sorted(sample.labels)) == tuple(sorted(metric.labels))


def test_exposition_text_uses_the_contract_names_exactly() -> None:
    text = render(scrape_registry([snap(A, context=1)], {"transcript_lines": 1})).decode()
    typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}

    assert typed == {m.name for m in names.ALL if m is not names.HTTP_DURATION}


def test_label_values_carry_no_paths_or_keys() -> None:
    leaked = "sk-ant-api03-abcdefghijklmnop"
    sessions = [
        snap(A, context=10, project="spotter", cwd="/home/alice/projects/spotter"),
        snap(B, context=20, project=None, cwd=f"/home/alice/{leaked}"),
    ]
    counters = {"transcript_rejected_oversize": 1, f"hook_events_{leaked}": 1,
                "hook_events_/etc/passwd": 1}  # fmt: skip
    text = render(scrape_registry(sessions, counters, max_series=1)).decode()
    allowed = set(names.SESSION_LABELS) | {"type", "reason", "event"}

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= allowed
            for label_value in sample.labels.values():
                assert "/" not in label_value
                assert "\\" not in label_value
                assert "sk-ant" not in label_value
    assert "/home/alice" not in text
    assert leaked not in text


def test_describe_names_every_family_without_reading_the_sources() -> None:
    def unreadable() -> list[SessionSnapshot]:
        raise AssertionError("describe() must not read the snapshot")

    collector = SessionCollector(unreadable, dict)
    described = {m.name for m in collector.describe()}
    registry = CollectorRegistry()
    registry.register(collector)

    assert described == {m.family for m in names.ALL if m is not names.HTTP_DURATION}
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter(names.THRESHOLD_70.family, "clash", registry=registry)


def test_the_daemon_latency_histogram_sits_beside_the_collector() -> None:
    registry = scrape_registry([snap(A, context=1)])
    http = Histogram(names.HTTP_DURATION.name, names.HTTP_DURATION.help,
                     list(names.HTTP_DURATION.labels), registry=registry)  # fmt: skip
    http.labels(route="/metrics", code="200").observe(0.002)

    text = render(registry)
    assert text == generate_latest(registry)
    assert registry.get_sample_value(f"{names.HTTP_DURATION.name}_count",
                                     {"route": "/metrics", "code": "200"}) == 1  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), min_size=4, max_size=4),
    context=st.integers(0, 10**12),
    latency=st.floats(0, 1e6),
)
def test_render_is_byte_for_byte_generate_latest(
    texts: list[str], context: int, latency: float
) -> None:
    session_id, project, model, user = texts
    sessions = [snap(session_id, project=project, model=model, user=user, context=context),
                snap("another-session", context=5)]  # fmt: skip
    registry = scrape_registry(sessions, {"hook_events_Stop": 2})
    requests = Counter("contextd_test_requests", "Help with \\ and \n.", ["k"], registry=registry)
    requests.labels(k=project).inc(1)
    hist = Histogram("contextd_test_latency_seconds", "h", ["route"], registry=registry)
    hist.labels(route=model).observe(latency)

    assert render(registry) == generate_latest(registry)


def test_openmetrics_exposition_declares_units_that_are_name_suffixes() -> None:
    registry = scrape_registry([snap(A, context=1)], {"transcript_lines": 1})
    text = generate_openmetrics(registry).decode()
    families = {f.name: f for f in parse_openmetrics(text)}

    for metric in names.ALL:
        if metric is names.HTTP_DURATION:
            continue
        family = families[metric.family]
        if metric.family.endswith("_" + metric.unit) and metric.unit:
            assert family.unit == metric.unit
        else:
            assert family.unit == ""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH "
                    "(Debian package prometheus)")  # fmt: skip
def test_promtool_lint_finds_only_the_known_gauge_name() -> None:
    sessions = [snap(A, context=1, tokens=TokenCounts(1, 2, 3, 4)), snap(B, context=2)]
    counters = {"transcript_lines": 3, "transcript_rejected_oversize": 1, "hook_events_Stop": 1}
    text = render(scrape_registry(sessions, counters, max_series=1))

    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            timeout=30, check=False)  # fmt: skip
    problems = (result.stdout + result.stderr).decode().strip().splitlines()

    # DESIGN.md fixes ``contextd_active_sessions_total`` as a gauge's name (it is in the
    # PromQL contract); promtool's naming lint objects to ``_total`` on a gauge. Anything
    # else is a real problem.
    known = f'{names.ACTIVE_SESSIONS.name} non-counter metrics should not have "_total" suffix'
    assert [p for p in problems if p != known] == []
