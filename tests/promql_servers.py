"""Real PromQL backends for tests: VictoriaMetrics and Prometheus from the Debian packages.

Each server runs as a child process bound to 127.0.0.1 on a free port, with its own temporary
data directory, and is stopped by its PID (SIGTERM, then SIGKILL after a bound). Every wait is
a poll against a deadline; nothing here sleeps to synchronise.

Fixtures (re-exported by ``tests/conftest.py``, so any test can ask for them):

``victoria_metrics``
    A fresh, empty VictoriaMetrics. ``push(text, timestamp_ms=None)`` imports Prometheus text
    exposition and flushes it, so the samples are queryable when ``push`` returns.
``prometheus_backfilled``
    A factory: ``prometheus_backfilled(openmetrics_text)`` turns timestamped OpenMetrics text
    into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and starts a
    Prometheus over them: historical data, queryable at once. ``openmetrics_from_scrapes``
    builds such text from plain exposition scrapes taken at known times.
``prometheus_scraping``
    A factory: ``prometheus_scraping(target_url)`` starts a Prometheus scraping the target
    every second. Use ``wait_for`` to wait until a query sees the data. Keep these tests few.

All three yield a ``PromQLServer``: ``url``, ``query(promql, time=None)`` returning
``[(labels, value), ...]`` in the order the server answered, ``query_range(...)`` and
``wait_for(...)``. A missing binary skips the test, except when the ``CI`` environment variable
is set: there it fails, because ``.ci/run`` installs the packages (``scripts/bootstrap``).

The module-level context managers (``running_victoria_metrics``, ``running_prometheus``) are
the same thing for fixtures of a wider scope.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

VICTORIA_METRICS = "victoria-metrics"
PROMETHEUS = "prometheus"
PROMTOOL = "promtool"

START_TIMEOUT = 30.0  # seconds for a server to answer its health/readiness endpoint
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 10.0  # seconds per HTTP request to a server
POLL_INTERVAL = 0.02  # seconds between two polls of a condition (the bound is a deadline)
VM_MIN_LATENCY_MS = 1000  # VictoriaMetrics hides samples newer than this, even at latencyOffset=0s
PORT_ATTEMPTS = 3  # another process may take the free port before the server binds it

Labels = dict[str, str]
Sample = tuple[Labels, float]
Series = tuple[Labels, list[tuple[float, float]]]


class PromQLError(RuntimeError):
    """A server refused a request or answered something that is not a PromQL success."""


def require_binary(name: str, packages: str = "victoria-metrics and prometheus") -> str:
    """The path of ``name``; skip the test when it is absent, fail instead when ``CI`` is set."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = (
        f"{name!r} is not on PATH; install the Debian packages {packages} "
        "(scripts/bootstrap does it)"
    )
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so a missing binary is a failure")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """GET (or POST ``body`` to) one of our loopback servers: ``(status, body)``."""
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")  # noqa: S310  (http://127.0.0.1 URLs built in this module)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310  (same)
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _float(value: object) -> float:
    # PromQL JSON carries sample values as strings ("0.5", "NaN", "+Inf").
    if not isinstance(value, str):
        raise PromQLError(f"sample value {value!r} is not a string")
    return float(value)


def _labels(metric: object) -> Labels:
    if not isinstance(metric, dict):
        raise PromQLError(f"series labels {metric!r} are not an object")
    return {str(key): str(val) for key, val in metric.items()}


def _pair(point: object) -> tuple[float, float]:
    if not isinstance(point, list) or len(point) != 2:
        raise PromQLError(f"sample {point!r} is not a [time, value] pair")
    return float(point[0]), _float(point[1])


class ServerProcess:
    """A child process with its log file; started by ``spawn``, stopped by PID."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the PID, SIGKILL it if it has not exited within ``STOP_TIMEOUT``."""
        if self.popen.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=STOP_TIMEOUT)


def spawn(name: str, argv: Sequence[str], log_path: Path, ready_url: str) -> ServerProcess:
    """Start ``argv`` and poll ``ready_url`` until it answers 200, the process dies, or time is up.

    Raises ``OSError`` (``EADDRINUSE`` semantics) when the process exits early, so the caller
    can retry on another port; ``PromQLError`` when it never becomes ready.
    """
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(name, popen, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise OSError(
                f"{name} exited with status {popen.returncode} while starting:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError):  # connection refused until it listens
            status, _ = _http(ready_url)
            if status == 200:
                return server
        time.sleep(POLL_INTERVAL)
    server.stop()
    raise PromQLError(
        f"{name} was not ready at {ready_url} within {START_TIMEOUT:.0f}s:\n{server.log_tail()}"
    )


def spawn_on_free_port(
    name: str, argv_for: Callable[[int], Sequence[str]], log_path: Path, ready_path: str
) -> tuple[ServerProcess, int]:
    """``spawn`` on a free port, retrying on another port if the process dies at start."""
    failure: OSError | None = None
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        try:
            server = spawn(name, argv_for(port), log_path, f"http://127.0.0.1:{port}{ready_path}")
        except OSError as error:
            failure = error
            continue
        return server, port
    raise PromQLError(f"{name} did not start after {PORT_ATTEMPTS} attempts: {failure}")


class PromQLServer:
    """The Prometheus HTTP query API of a running server (Prometheus or VictoriaMetrics)."""

    def __init__(self, url: str, process: ServerProcess | None, name: str | None = None) -> None:
        """``process`` is None for a server these helpers did not start (then ``name`` it)."""
        self.url = url
        self.process = process
        self.name = process.name if process is not None else name or url

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started by these helpers"
        return self.process.pid

    def _api(self, path: str, params: Mapping[str, str]) -> dict[str, object]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        status, body = _http(url)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
            raise PromQLError(
                f"{self.name} answered {status} to {path} {dict(params)}: "
                f"{body[:500].decode(errors='replace')}"
            )
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PromQLError(f"{self.name} answered without data: {answer!r}")
        return data

    def query(self, promql: str, time: float | None = None) -> list[Sample]:
        """An instant query: ``[(labels, value), ...]`` in the server's order.

        A scalar result comes back as one sample with empty labels.
        """
        params = {"query": promql}
        if time is not None:
            params["time"] = repr(float(time))
        data = self._api("/api/v1/query", params)
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return [({}, _pair(result)[1])]
        if data.get("resultType") != "vector" or not isinstance(result, list):
            raise PromQLError(f"unexpected instant query result: {data!r}")
        samples: list[Sample] = []
        for item in result:
            if not isinstance(item, dict):
                raise PromQLError(f"unexpected vector item: {item!r}")
            samples.append((_labels(item.get("metric")), _pair(item.get("value"))[1]))
        return samples

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """A range query: ``[(labels, [(time, value), ...]), ...]``."""
        params = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        data = self._api("/api/v1/query_range", params)
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise PromQLError(f"unexpected range query result: {data!r}")
        series: list[Series] = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                raise PromQLError(f"unexpected matrix item: {item!r}")
            points = [_pair(point) for point in item["values"]]
            series.append((_labels(item.get("metric")), points))
        return series

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[Sample]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[Sample]:
        """Poll an instant query until ``predicate(result)`` holds; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise PromQLError(
                    f"{promql!r} on {self.name} still gave {result!r} after {timeout}s"
                )
            time.sleep(POLL_INTERVAL)


class VictoriaMetrics(PromQLServer):
    def push(self, exposition_text: str | bytes, timestamp_ms: int | None = None) -> None:
        """Import Prometheus text exposition and flush it to searchable storage.

        ``timestamp_ms`` stamps every sample that carries no timestamp of its own. The default
        is one second ago, not now: VictoriaMetrics never lets a query see the last second
        (``-search.latencyOffset`` has a floor of 1 s), so a sample stamped "now" would stay
        invisible to an immediate query, whatever its ``time``.
        """
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000) - VM_MIN_LATENCY_MS
        body = exposition_text.encode() if isinstance(exposition_text, str) else exposition_text
        url = f"{self.url}/api/v1/import/prometheus?timestamp={int(timestamp_ms)}"
        status, answer = _http(url, body)
        if status not in (200, 204):
            raise PromQLError(f"import answered {status}: {answer[:500].decode(errors='replace')}")
        status, answer = _http(f"{self.url}/internal/force_flush")
        if status != 200:
            raise PromQLError(f"force_flush answered {status}: {answer[:500]!r}")


@contextlib.contextmanager
def running_victoria_metrics(
    data_dir: Path, *, scrape_config: str | None = None
) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics over ``data_dir`` on a free loopback port, for the ``with`` block.

    With ``scrape_config`` (the text of a Prometheus-style config with ``scrape_configs``),
    it also scrapes the targets that config names.
    """
    binary = require_binary(VICTORIA_METRICS)
    data_dir.mkdir(parents=True, exist_ok=True)
    scraping: list[str] = []
    if scrape_config is not None:
        config = data_dir / "promscrape.yml"
        config.write_text(scrape_config)
        scraping = [f"-promscrape.config={config}"]

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={data_dir / 'storage'}",
            "-retentionPeriod=100y",
            # Samples are searchable as soon as they are flushed, and no query result is
            # cached, so a query after push() sees exactly what was pushed.
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
            *scraping,
        ]

    process, port = spawn_on_free_port(
        "victoria-metrics", argv, data_dir / "victoria-metrics.log", "/health"
    )
    try:
        yield VictoriaMetrics(f"http://127.0.0.1:{port}", process)
    finally:
        process.stop()


def _prometheus_config(path: Path, target_url: str | None) -> None:
    config: dict[str, object] = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}}
    if target_url is not None:
        target = urllib.parse.urlsplit(target_url)
        job: dict[str, object] = {
            "job_name": "contextd",
            "scheme": target.scheme or "http",
            "metrics_path": target.path or "/metrics",
            "static_configs": [{"targets": [target.netloc]}],
        }
        if target.query:
            job["params"] = urllib.parse.parse_qs(target.query)
        config["scrape_configs"] = [job]
    # JSON is YAML: no YAML library needed.
    path.write_text(json.dumps(config, indent=2))


@contextlib.contextmanager
def running_prometheus(
    data_dir: Path, *, openmetrics_text: str | None = None, target_url: str | None = None
) -> Iterator[PromQLServer]:
    """A Prometheus on a free loopback port, for the ``with`` block.

    With ``openmetrics_text``, its storage is first backfilled from that text by promtool.
    With ``target_url``, it scrapes that URL every second.
    """
    binary = require_binary(PROMETHEUS)
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = data_dir / "tsdb"
    storage.mkdir(exist_ok=True)
    if openmetrics_text is not None:
        backfill(openmetrics_text, storage, data_dir / "backfill.om")
    config = data_dir / "prometheus.yml"
    _prometheus_config(config, target_url)

    def argv(port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Retention counts from the newest block, not the clock; backfilled history can be
            # old, so never let it be compacted away during a test.
            "--storage.tsdb.retention.time=100y",
            "--log.level=warn",
        ]

    process, port = spawn_on_free_port("prometheus", argv, data_dir / "prometheus.log", "/-/ready")
    try:
        yield PromQLServer(f"http://127.0.0.1:{port}", process)
    finally:
        process.stop()


def backfill(openmetrics_text: str, storage: Path, input_path: Path) -> None:
    """Write TSDB blocks for ``openmetrics_text`` into ``storage`` with promtool."""
    if openmetrics_text.rstrip("\n").rsplit("\n", 1)[-1] != "# EOF":
        raise ValueError("OpenMetrics text for promtool must end with a '# EOF' line")
    promtool = require_binary(PROMTOOL)
    input_path.write_text(
        openmetrics_text if openmetrics_text.endswith("\n") else f"{openmetrics_text}\n"
    )
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(input_path), str(storage)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise PromQLError(
            f"promtool backfill failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


_OPENMETRICS_TYPES = {"untyped": "unknown"}


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def openmetrics_from_scrapes(scrapes: Iterable[tuple[float, str | bytes]]) -> str:
    """One timestamped OpenMetrics document from Prometheus text scrapes taken at given times.

    ``scrapes`` is ``[(unix_seconds, exposition_text), ...]``. OpenMetrics (and promtool) want
    each family's samples together and each series' samples in time order, counters declared
    under the family name without ``_total``, timestamps in seconds and a final ``# EOF``;
    prometheus_client's parser already maps text-format counters to that representation.
    """
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help), in first-seen order
    points: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]]]
    points = {}
    for at, text in sorted(scrapes, key=lambda scrape: scrape[0]):
        decoded = text.decode() if isinstance(text, bytes) else text
        for family in text_string_to_metric_families(decoded):
            families.setdefault(family.name, (family.type, family.documentation))
            by_series = points.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                by_series.setdefault(key, []).append((at, sample.value))
    lines: list[str] = []
    for name, (kind, documentation) in families.items():
        lines.append(f"# TYPE {name} {_OPENMETRICS_TYPES.get(kind, kind)}")
        if documentation:
            lines.append(f"# HELP {name} {_escape_help(documentation)}")
        for (sample_name, labels), series in points[name].items():
            label_text = ",".join(f'{key}="{_escape_label_value(val)}"' for key, val in labels)
            selector = f"{sample_name}{{{label_text}}}" if label_text else sample_name
            lines.extend(f"{selector} {_format_value(value)} {at:.3f}" for at, value in series)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A fresh, empty VictoriaMetrics for this test."""
    with running_victoria_metrics(tmp_path_factory.mktemp("victoria-metrics")) as server:
        yield server


@pytest.fixture
def prometheus_backfilled(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], PromQLServer]]:
    """Factory: ``prometheus_backfilled(openmetrics_text)`` -> a Prometheus holding that data."""
    with contextlib.ExitStack() as servers:

        def start(openmetrics_text: str) -> PromQLServer:
            data_dir = tmp_path_factory.mktemp("prometheus-backfilled")
            return servers.enter_context(
                running_prometheus(data_dir, openmetrics_text=openmetrics_text)
            )

        yield start


@pytest.fixture
def prometheus_scraping(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], PromQLServer]]:
    """Factory: ``prometheus_scraping(target_url)`` -> a Prometheus scraping it every second."""
    with contextlib.ExitStack() as servers:

        def start(target_url: str) -> PromQLServer:
            data_dir = tmp_path_factory.mktemp("prometheus-scraping")
            return servers.enter_context(running_prometheus(data_dir, target_url=target_url))

        yield start


# -- the contract's queries, spelled out here (not imported from contextd.exporters.names, so
# that a rename there fails these tests) ------------------------------------------------------

TOPK = "topk(5, contextd_session_context_usage_percent)"
OVER_70 = "contextd_session_context_usage_percent > 70"
SUM_TOKENS = "sum(contextd_session_context_tokens)"
AVG_PERCENT = "avg(contextd_session_context_usage_percent)"
RATE_70 = "rate(contextd_session_threshold_70_total[5m])"
SAVED_PER_CHECKPOINT = (
    "rate(contextd_session_tokens_saved_total[5m]) / rate(contextd_session_checkpoint_total[5m])"
)
ACTIVE = "contextd_active_sessions_total"
CHECKED = (TOPK, OVER_70, SUM_TOKENS, AVG_PERCENT, RATE_70, SAVED_PER_CHECKPOINT, ACTIVE)


# -- assertions shared by the PromQL tests ------------------------------------------------------


def by_session(result: Sequence[Sample]) -> dict[str, tuple[dict[str, str], float]]:
    """A query result keyed by its ``session_id`` label (which must be unique)."""
    out = {labels["session_id"]: (labels, value) for labels, value in result}
    assert len(out) == len(result), f"duplicate session_id in {result}"
    return out


def assert_values(actual: Sequence[float], expected: Sequence[float]) -> None:
    assert list(actual) == pytest.approx(list(expected), rel=1e-9, abs=1e-12, nan_ok=True)
