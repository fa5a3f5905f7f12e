"""The PromQL client against a real VictoriaMetrics (and one Prometheus for the backend name)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from contextd.errors import QueryError, SourceUnreachableError
from contextd.exporters import names
from contextd.monitor import queries
from contextd.monitor.promql import PromQLClient
from tests.monitor import known
from tests.monitor.conftest import closed_url
from tests.promql_servers import PromQLServer, VictoriaMetrics, openmetrics_from_scrapes

pytestmark = pytest.mark.slow


def test_monitor_queries_are_the_contract_where_the_contract_has_them() -> None:
    for query in (queries.TOP_SESSIONS, queries.TOTAL_CONTEXT, queries.AVERAGE_PERCENT):
        assert query in names.CONTRACT_QUERIES
    assert f"sum({names.CONTRACT_QUERIES[4]})" == queries.WARN_RATE
    assert all(m.name in queries.SESSIONS for m in queries.SESSION_METRICS)


def test_instant_query_returns_typed_samples(vm_loaded: VictoriaMetrics) -> None:
    client = PromQLClient(vm_loaded.url)

    samples = client.query(queries.TOP_SESSIONS, at=known.T0)

    assert sorted(s.labels["session_id"] for s in samples) == sorted(
        p.session_id for p in known.TOP5
    )
    by_id = {s.labels["session_id"]: s.value for s in samples}
    assert by_id == {p.session_id: p.percent() for p in known.TOP5}
    assert samples[0].labels["__name__"] == names.CONTEXT_PERCENT.name
    assert client.query(queries.TOTAL_CONTEXT, at=known.T0)[0].value == sum(
        p.tokens() for p in known.PLANS
    )


def test_a_scalar_result_is_one_sample_without_labels(vm_loaded: VictoriaMetrics) -> None:
    samples = PromQLClient(vm_loaded.url).query("scalar(vector(2))", at=known.T0)

    assert [(dict(s.labels), s.value) for s in samples] == [({}, 2.0)]


def test_range_query_returns_each_series_points_in_time_order(vm_loaded: VictoriaMetrics) -> None:
    client = PromQLClient(vm_loaded.url)
    payments = known.PLANS[4]

    series = client.query_range(queries.percent_history([payments.session_id]),
                                known.STAMPS[0], known.T0, known.STEP)  # fmt: skip

    assert [s.labels["session_id"] for s in series] == [payments.session_id]
    assert [t for t, _ in series[0].points] == [float(t) for t in known.STAMPS]
    assert list(series[0].values) == payments.history


def test_a_bad_query_is_a_query_error_with_the_servers_reason(vm_loaded: VictoriaMetrics) -> None:
    with pytest.raises(QueryError, match=r"refused 'sum\(': .*unexpected"):
        PromQLClient(vm_loaded.url).query("sum(")


def test_a_closed_port_is_unreachable_not_a_traceback() -> None:
    url = closed_url()
    with pytest.raises(SourceUnreachableError, match=f"cannot reach {url}: .*refused"):
        PromQLClient(url).query("up")


def test_a_server_that_is_not_promql_is_a_query_error(vm_loaded: VictoriaMetrics) -> None:
    with pytest.raises(QueryError, match="not JSON"):
        PromQLClient(f"{vm_loaded.url}/not-an-api").query("up")


def test_backend_names_victoria_metrics_and_prometheus(
    vm_loaded: VictoriaMetrics, prometheus_backfilled: Callable[[str], PromQLServer]
) -> None:
    prometheus = prometheus_backfilled("# EOF\n")

    assert PromQLClient(vm_loaded.url).backend() == "VictoriaMetrics"
    assert PromQLClient(prometheus.url).backend().startswith("Prometheus 2.")


def test_prometheus_answers_the_same_queries_and_keeps_nan(
    prometheus_backfilled: Callable[[str], PromQLServer],
) -> None:
    scrapes = [(float(at), known.scrape(i)) for i, at in enumerate(known.STAMPS)]
    client = PromQLClient(prometheus_backfilled(openmetrics_from_scrapes(scrapes)).url)

    top = client.query(queries.TOP_SESSIONS, at=known.T0)
    history = client.query_range(queries.percent_history([known.TOP5[0].session_id]),
                                 known.STAMPS[0], known.T0, known.STEP)  # fmt: skip

    assert {s.labels["session_id"]: s.value for s in top} == {
        p.session_id: p.percent() for p in known.TOP5
    }
    assert list(history[0].values) == known.TOP5[0].history
    assert math.isnan(client.query("vector(0) / 0", at=known.T0)[0].value)
