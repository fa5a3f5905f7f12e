"""A PromQL client for Prometheus and VictoriaMetrics: instant and range queries, typed results.

Both servers speak the same HTTP API (``/api/v1/query``, ``/api/v1/query_range``); the
differences that matter to a reader are handled here: VictoriaMetrics answers a scalar
expression as a one-sample vector, and a value may be ``NaN`` or ``±Inf`` (sent as strings).

Standard library only (``urllib``): the monitor runs its queries in a worker thread, and
``contextd monitor --once`` should not pay for an HTTP library. Errors are the
:class:`~contextd.errors.SourceError` family: :class:`SourceUnreachableError` when nothing
answers at the URL, :class:`QueryError` when the server refuses the query (its own message is
kept) or answers something that is not a PromQL success.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from contextd.errors import QueryError, SourceUnreachableError

DEFAULT_URL = "http://127.0.0.1:8428"  # VictoriaMetrics' default listen address

Labels = Mapping[str, str]


def _frozen(labels: Labels) -> Labels:
    return MappingProxyType(dict(labels))


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector (a scalar result has empty labels)."""

    labels: Labels = field(default_factory=dict)
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Series:
    """One element of a range query's matrix: ``(unix seconds, value)`` points in time order."""

    labels: Labels
    points: tuple[tuple[float, float], ...]

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(value for _, value in self.points)


def _value(raw: object) -> float:
    if not isinstance(raw, str):
        raise QueryError(f"sample value {raw!r} is not a string")
    try:
        return float(raw)  # also "NaN", "+Inf", "-Inf"
    except ValueError:
        raise QueryError(f"sample value {raw!r} is not a number") from None


def _point(raw: object) -> tuple[float, float]:
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], int | float):
        raise QueryError(f"sample {raw!r} is not a [time, value] pair")
    return float(raw[0]), _value(raw[1])


def _labels(raw: object) -> Labels:
    if not isinstance(raw, dict):
        raise QueryError(f"series labels {raw!r} are not an object")
    return _frozen({str(key): str(value) for key, value in raw.items()})


class PromQLClient:
    """The Prometheus HTTP query API at ``url`` (Prometheus or VictoriaMetrics)."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        """The decoded JSON of ``GET path?params``; a PromQL error answer becomes QueryError."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310 (the user's backend URL, http or https)
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SourceUnreachableError(f"cannot reach {self.url}: {reason}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            raise QueryError(
                f"{self.url}{path} answered {status} with a body that is not JSON"
            ) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            message = answer.get("error") if isinstance(answer, dict) else None
            raise QueryError(f"{self.url} refused {params.get('query', path)!r}: "
                             f"{message or f'HTTP {status}'}")  # fmt: skip
        return answer.get("data")

    def backend(self) -> str:
        """``"Prometheus <version>"`` or ``"VictoriaMetrics"``, from the build-info endpoint.

        VictoriaMetrics answers that endpoint with empty data; Prometheus names its version.
        """
        data = self._get("/api/v1/status/buildinfo", {})
        version = data.get("version") if isinstance(data, dict) else None
        return f"Prometheus {version}" if version else "VictoriaMetrics"

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query at ``at`` (unix seconds; the server's now by default)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if not isinstance(data, dict):
            raise QueryError(f"{promql!r}: answer without data")
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return [Sample(_frozen({}), _point(result)[1])]
        if data.get("resultType") != "vector" or not isinstance(result, list):
            raise QueryError(f"{promql!r}: not an instant vector: {data.get('resultType')!r}")
        samples = []
        for item in result:
            if not isinstance(item, dict):
                raise QueryError(f"{promql!r}: vector item {item!r} is not an object")
            samples.append(Sample(_labels(item.get("metric")), _point(item.get("value"))[1]))
        return samples

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """A range query over ``[start, end]`` every ``step`` seconds."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step:g}"}  # fmt: skip
        data = self._get("/api/v1/query_range", params)
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise QueryError(f"{promql!r}: not a range (matrix) result")
        if not isinstance(result, list):
            raise QueryError(f"{promql!r}: matrix without a result list")
        series = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                raise QueryError(f"{promql!r}: matrix item {item!r} has no values")
            points = tuple(_point(raw) for raw in item["values"])
            series.append(Series(_labels(item.get("metric")), points))
        return series
