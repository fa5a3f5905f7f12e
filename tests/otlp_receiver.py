"""A loopback OTLP/HTTP metrics receiver for tests: decodes what arrives with opentelemetry-proto.

``serve(status)`` (for ``yield from`` in a fixture) and ``receiving(status, delay=...)`` (a
context manager) run a ``ThreadingHTTPServer`` on a free 127.0.0.1 port that answers every
POST with ``status`` after ``delay`` seconds and keeps the decoded
``ExportMetricsServiceRequest``s. ``decoded(requests)`` flattens them into data points keyed
by ``(metric name, attributes)``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

WAIT = 10.0  # bound of every wait for requests to arrive

Attrs = frozenset[tuple[str, str]]
Points = dict[tuple[str, Attrs], float]


@dataclass
class Receiver:
    url: str
    status: int
    delay: float = 0.0  # seconds before each answer: a slow collector
    requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    arrived: int = 0  # requests that reached the handler (answered or still waiting)
    changed: threading.Condition = field(default_factory=threading.Condition)
    closing: threading.Event = field(default_factory=threading.Event)

    def wait_for_requests(self, count: int) -> list[ExportMetricsServiceRequest]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.requests) >= count, timeout=WAIT):
                pytest.fail(f"receiver got {len(self.requests)} requests, expected {count}")
            return list(self.requests)

    def wait_for_arrivals(self, count: int) -> int:
        with self.changed:
            if not self.changed.wait_for(lambda: self.arrived >= count, timeout=WAIT):
                pytest.fail(f"{self.arrived} requests reached the receiver, expected {count}")
            return self.arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.changed:
            receiver.arrived += 1
            receiver.changed.notify_all()
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        if receiver.delay:
            receiver.closing.wait(receiver.delay)  # a slow collector, released on close
        reply = ExportMetricsServiceResponse().SerializeToString()
        try:
            self.send_response(receiver.status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            return  # the exporter gave up waiting (a slow collector): not answered, not kept
        with receiver.changed:
            receiver.requests.append(request)
            receiver.paths.append(self.path)
            receiver.changed.notify_all()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what arrived, not the access log."""


@contextlib.contextmanager
def receiving(status: int = 200, *, delay: float = 0.0) -> Iterator[Receiver]:
    """A receiver on a free loopback port, for the ``with`` block; closed (port freed) after."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(
        f"http://127.0.0.1:{server.server_port}/v1/metrics", status, delay=delay
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def serve(status: int) -> Iterator[Receiver]:
    """For fixtures: ``yield from serve(200)``."""
    with receiving(status) as receiver:
        yield receiver


def _value(kv: KeyValue) -> str:
    return kv.value.string_value


def decoded(requests: Sequence[ExportMetricsServiceRequest]) -> tuple[Points, dict[str, str]]:
    """Points of the last request that carried each (name, attributes), and the resource."""
    points: Points = {}
    resource: dict[str, str] = {}
    for request in requests:
        for rm in request.resource_metrics:
            resource.update({kv.key: _value(kv) for kv in rm.resource.attributes})
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    assert kind in ("gauge", "sum")
                    data_points = (
                        metric.gauge.data_points if kind == "gauge" else metric.sum.data_points
                    )
                    for p in data_points:
                        key = frozenset((kv.key, _value(kv)) for kv in p.attributes)
                        value = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        points[(metric.name, key)] = value
    return points, resource
