"""The daemon's OTLP push, end to end, and what a dead or slow collector does to the daemon.

A live ``contextd serve``, configured only by the standard environment
(``OTEL_EXPORTER_OTLP_ENDPOINT`` as a base URL, ``OTEL_METRIC_EXPORT_INTERVAL`` in ms), pushes
the metric contract for sessions made through its own API to a loopback OTLP/HTTP receiver
that decodes the protobuf: the same values, per ``session_id``, as its ``/metrics``.

Then the collector goes away (the receiver is stopped), or is never there (a closed port), or
answers 503 after two seconds. Exports fail and retry on the exporter's own thread; the daemon
must not notice: 200 hooks sent one after another each get their 200 (within the client's
per-request timeout; latency itself is measured in ``bench/``, not asserted here), every one
is committed, ``/healthz`` is ok, and SIGTERM still exits 0 within 10 s.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client.parser import text_string_to_metric_families

from contextd.exporters import names
from contextd.exporters.otlp import otel_name
from contextd.exporters.selection import REPORTED
from tests.otlp_receiver import Attrs, Points, Receiver, decoded, receiving
from tests.served import Served, free_port

pytestmark = pytest.mark.slow

EXPORT_INTERVAL_MS = 500
PUSH_TIMEOUT = 15.0  # s for a push carrying the expected values to arrive
HOOKS = 200
EXIT_BOUND = 10.0  # s from SIGTERM to exit
SLOW_503_DELAY = 2.0  # s the slow collector waits before each 503
WAIT = 10.0  # s: bound of the other waits
POLL = 0.02
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

A = "aaaaaaaa-0000-4000-8000-00000000000a"
B = "bbbbbbbb-0000-4000-8000-00000000000b"
CWD = {A: "/home/dev/spotter", B: "/home/dev/marot"}
MODEL = {A: "claude-opus-4-6", B: "claude-opus-4-6[1m]"}

# What the sessions made by ``make_sessions`` hold, per contract metric.
EXPECTED: dict[str, dict[names.Metric, float]] = {
    # 75 % (crosses 70 %), compacted, then 20 %: 150k - 40k saved.
    A: {names.CONTEXT_TOKENS: 40_000, names.CONTEXT_PERCENT: 20.0,
        names.CONTEXT_WINDOW: 200_000, names.THRESHOLD_70: 1, names.THRESHOLD_90: 0,
        names.CHECKPOINTS: 1, names.TOKENS_SAVED: 110_000},
    # The 1M window from the status line; 95 % crosses both thresholds.
    B: {names.CONTEXT_TOKENS: 950_000, names.CONTEXT_PERCENT: 95.0,
        names.CONTEXT_WINDOW: 1_000_000, names.THRESHOLD_70: 1, names.THRESHOLD_90: 1,
        names.CHECKPOINTS: 0, names.TOKENS_SAVED: 0},
}  # fmt: skip
HOOK_COUNTS = {"SessionStart": 2, "PostCompact": 1, "StatusLine": 3}


class StderrDrain:
    """Reads the daemon's stderr as it comes (a pipe nobody reads would fill up and block the
    daemon's logging) and keeps it for failure messages."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines: list[bytes] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            self._lines.append(line)

    def join(self) -> None:
        self._thread.join(WAIT)

    def text(self) -> str:
        return b"".join(self._lines).decode(errors="replace")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL)


def failed_exports(drain: StderrDrain) -> int:
    """Log lines about failed or retried exports. The only outside sign that exports are
    failing: the OpenTelemetry SDK logs each failed try (as a warning or an error)."""
    return sum("export" in line.lower() for line in drain.text().splitlines())


def wait_for_a_failed_export(drain: StderrDrain) -> None:
    already = failed_exports(drain)
    wait_until(lambda: failed_exports(drain) > already, "a failed export to be logged")


def terminate(served: Served, drain: StderrDrain) -> float:
    """SIGTERM the daemon's PID; its exit code must be 0 within EXIT_BOUND. Returns the time
    it took."""
    proc = served.proc
    assert proc is not None
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT)
        drain.join()
        pytest.fail(f"no exit {EXIT_BOUND} s after SIGTERM:\n{drain.text()}")
    elapsed = time.monotonic() - started
    drain.join()
    assert code == 0, drain.text()
    return elapsed


@contextlib.contextmanager
def pushing(tmp: Path, endpoint: str) -> Iterator[tuple[Served, StderrDrain]]:
    """A daemon exporting over OTLP/HTTP to ``endpoint`` (a base URL) every 500 ms."""
    served = Served(tmp)
    served.start(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": str(EXPORT_INTERVAL_MS),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    assert served.proc is not None
    assert served.proc.stderr is not None
    drain = StderrDrain(served.proc.stderr)
    try:
        yield served, drain
    finally:
        if served.proc.poll() is None:  # the test failed before terminate(): stop it by PID
            os.kill(served.proc.pid, signal.SIGTERM)
            try:
                served.proc.wait(timeout=EXIT_BOUND)
            except subprocess.TimeoutExpired:
                os.kill(served.proc.pid, signal.SIGKILL)
                served.proc.wait(timeout=WAIT)
        drain.join()  # before the pipe is closed under it
        served.stop()  # reaps it and closes the pipe


def post(served: Served, path: str, body: Mapping[str, object]) -> None:
    status, answer = served.post(path, body)
    assert status == 200, answer


def status_line(served: Served, sid: str, context: int, window: int) -> None:
    usage = {"input_tokens": 3, "cache_creation_input_tokens": 1_000,
             "cache_read_input_tokens": context - 1_003, "output_tokens": 50}  # fmt: skip
    post(served, "/api/statusline", {
        "session_id": sid, "cwd": CWD[sid], "model": {"id": MODEL[sid]},
        "context_window": {"context_window_size": window, "current_usage": usage},
    })  # fmt: skip


def make_sessions(served: Served) -> str:
    """The two sessions of EXPECTED, through the daemon's API; returns their user id."""
    for sid in (A, B):
        body = {"session_id": sid, "hook_event_name": "SessionStart", "cwd": CWD[sid],
                "source": "startup", "model": MODEL[sid]}  # fmt: skip
        post(served, "/hooks", body)
    status_line(served, A, 150_000, 200_000)
    post(served, "/hooks", {"session_id": A, "hook_event_name": "PostCompact", "cwd": CWD[A],
                            "trigger": "auto"})  # fmt: skip
    status_line(served, A, 40_000, 200_000)  # measures the checkpoint
    status_line(served, B, 950_000, 1_000_000)
    users = set()
    for sid, expected in EXPECTED.items():
        status, view = served.get(f"/api/sessions/{sid}")
        assert status == 200, view
        assert (view["context_tokens"], view["context_window"], view["context_percent"],
                view["threshold_warn_crossings"], view["threshold_critical_crossings"],
                view["checkpoints"], view["tokens_saved"]) == tuple(
            expected[m] for m in (names.CONTEXT_TOKENS, names.CONTEXT_WINDOW,
                                  names.CONTEXT_PERCENT, names.THRESHOLD_70, names.THRESHOLD_90,
                                  names.CHECKPOINTS, names.TOKENS_SAVED)
        )  # fmt: skip
        users.add(str(view["user"]))
    assert len(users) == 1
    return users.pop()


def attrs(sid: str, user: str, **extra: str) -> Attrs:
    labels = {"session_id": sid, "project": Path(CWD[sid]).name, "model": MODEL[sid],
              "user": user, "session_type": "unknown", **extra}  # fmt: skip
    return frozenset(labels.items())


def carries_expected(points: Points, user: str) -> bool:
    wanted: Points = {}
    for sid, values in EXPECTED.items():
        for metric, value in values.items():
            wanted[(otel_name(metric), attrs(sid, user))] = value
    wanted[(otel_name(names.ACTIVE_SESSIONS), frozenset())] = len(EXPECTED)
    for event, count in HOOK_COUNTS.items():
        wanted[(otel_name(names.HOOK_EVENTS), frozenset({("event", event)}))] = count
    return all(points.get(key) == value for key, value in wanted.items())


def first_push_with_expected(receiver: Receiver, user: str) -> ExportMetricsServiceRequest:
    """The first push that carries the expected values (exports run every 500 ms)."""
    deadline = time.monotonic() + PUSH_TIMEOUT
    seen = 0
    with receiver.changed:
        while True:
            for request in receiver.requests[seen:]:
                if carries_expected(decoded([request])[0], user):
                    return request
            seen = len(receiver.requests)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = decoded(receiver.requests[-1:])[0]
                pytest.fail(f"no push with the expected values in {seen} requests; last: {last}")
            receiver.changed.wait(remaining)


def scraped(served: Served) -> Points:
    """``/metrics`` as points keyed like OTLP's: the exposed name, labels as attributes."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=WAIT)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        conn.close()
    points: Points = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            points[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return points


def assert_pushed(request: ExportMetricsServiceRequest, user: str, prometheus: Points) -> None:
    """One push: the contract for both sessions, typed and named as OTLP wants, equal to
    ``/metrics``."""
    points, resource = decoded([request])
    metrics = {
        metric.name: metric
        for rm in request.resource_metrics
        for scope in rm.scope_metrics
        for metric in scope.metrics
    }
    assert resource["service.name"] == "contextd"

    # Both sessions, by session_id, with the values the daemon holds.
    sessions = {dict(key).get("session_id") for _, key in points} - {None}
    assert sessions == {A, B}
    for sid, values in EXPECTED.items():
        for metric, value in values.items():
            assert points[(otel_name(metric), attrs(sid, user))] == value, (sid, metric.name)
        for kind in names.TOKEN_TYPES:  # no transcript, so no tokens; but the series exist
            assert points[(otel_name(names.TOKENS), attrs(sid, user, type=kind))] == 0

    # Everything /metrics shows is pushed, with the very same values, series for series; a
    # metric with no series (cost: no prices yet; rejected lines: none) is in neither.
    for metric in REPORTED:
        pushed = {key: value for (name, key), value in points.items() if name == otel_name(metric)}
        shown = {key: value for (name, key), value in prometheus.items() if name == metric.name}
        assert pushed == shown, metric.name
        assert (otel_name(metric) in metrics) is bool(shown), metric.name
    assert {otel_name(m) for m in names.PER_SESSION if m is not names.COST} <= set(metrics)

    # Counters are cumulative monotonic sums named without _total; gauges are gauges.
    for metric in REPORTED:
        exported = metrics.get(otel_name(metric))
        if exported is None:
            continue
        if metric.kind is names.Kind.COUNTER:
            assert exported.name == metric.name.removesuffix("_total")
            assert exported.WhichOneof("data") == "sum"
            assert exported.sum.is_monotonic
            assert exported.sum.aggregation_temporality == CUMULATIVE
        else:
            assert exported.name == metric.name
            assert exported.WhichOneof("data") == "gauge"


def hook_events_committed(served: Served) -> int:
    status, stats = served.get("/api/stats")
    assert status == 200, stats
    ingest = stats["ingest"]
    assert isinstance(ingest, dict)
    return sum(int(v) for k, v in ingest.items() if str(k).startswith("hook_events_"))


def assert_responsive(served: Served) -> None:
    """HOOKS hooks one after another: each answered 200 and committed; healthy."""
    before = hook_events_committed(served)
    events = ("PreToolUse", "PostToolUse", "Stop", "UserPromptSubmit")
    for i in range(HOOKS):
        sid = (A, B)[i % 2]
        body = {"session_id": sid, "hook_event_name": events[i % len(events)], "cwd": CWD[sid],
                "tool_use_id": f"toolu_{i:04d}"}  # fmt: skip
        status, answer = served.post("/hooks", body)
        assert (status, answer) == (200, {}), i
    assert hook_events_committed(served) == before + HOOKS
    status, health = served.get("/healthz")
    assert status == 200
    assert (health["status"], health["ready"], health["live_sessions"]) == ("ok", True, 2)


def test_the_daemon_pushes_the_contract_and_shrugs_off_the_collector_going_away(
    tmp_path: Path,
) -> None:
    with contextlib.ExitStack() as collector:
        receiver = collector.enter_context(receiving(200))
        with pushing(tmp_path, receiver.url.removesuffix("/v1/metrics")) as (served, drain):
            user = make_sessions(served)
            request = first_push_with_expected(receiver, user)
            assert_pushed(request, user, scraped(served))
            assert set(receiver.paths) == {"/v1/metrics"}  # the signal path added to the base

            collector.close()  # the collector goes away; the daemon runs on
            wait_for_a_failed_export(drain)
            assert_responsive(served)
            assert terminate(served, drain) < EXIT_BOUND


@pytest.mark.parametrize("collector", ["closed port", "slow 503"])
def test_a_dead_or_slow_collector_never_slows_hooks_and_sigterm_still_exits_0(
    collector: str, tmp_path: Path
) -> None:
    with contextlib.ExitStack() as stack:
        receiver: Receiver | None = None
        if collector == "slow 503":
            receiver = stack.enter_context(receiving(503, delay=SLOW_503_DELAY))
            base = receiver.url.removesuffix("/v1/metrics")
        else:
            base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        served, drain = stack.enter_context(pushing(tmp_path, base))
        make_sessions(served)
        if receiver is not None:
            receiver.wait_for_arrivals(1)  # an export is now waiting on the slow collector
        else:
            wait_for_a_failed_export(drain)

        assert_responsive(served)
        elapsed = terminate(served, drain)

    assert elapsed < EXIT_BOUND
