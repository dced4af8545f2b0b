"""Reading a real Prometheus (scripts/build-prometheus) that scrapes the simulator every second."""

from __future__ import annotations

import pytest

from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
from tests.ports import free_port
from tests.telemetry.conftest import Telemetry, wait_for


def test_dcgm_series_are_read_back_with_their_labels(telemetry: Telemetry) -> None:
    samples = telemetry.client.query('DCGM_FI_DEV_GPU_UTIL{namespace="acme-prod"}')
    assert sorted(s.labels["gpu"] for s in samples) == ["0", "1"]
    for sample in samples:
        assert sample.value == 87
        assert sample.labels["Hostname"] == "eu-acme-1" and sample.labels["pod"] == "chat-7d9c8b6f5-x2k4q"
        assert sample.labels["job"] == "gpu"
    # A GPU no pod holds carries no pod mapping: Prometheus drops the empty labels.
    free = telemetry.client.query('DCGM_FI_DEV_GPU_UTIL{Hostname="eu-acme-1", gpu="7"}')
    assert len(free) == 1 and "namespace" not in free[0].labels


def test_model_server_series_are_read_back(telemetry: Telemetry) -> None:
    (running,) = telemetry.client.query('vllm:num_requests_running{model_name="llama-3-70b"}')
    assert running.value == 12 and running.labels["namespace"] == "acme-prod"
    # 20 requests/s at 0.4 s each: the p99 from the histogram's buckets lies in (0.3, 0.5].
    wait_for(
        "requests in the latency histogram",
        lambda: bool(
            telemetry.client.query(
                'rate(vllm:e2e_request_latency_seconds_count{model_name="llama-3-70b"}[5s]) > 0'
            )
        ),
    )
    (p99,) = telemetry.client.query(
        'histogram_quantile(0.99, sum by (le, model_name) (rate(vllm:e2e_request_latency_seconds_bucket{model_name="llama-3-70b"}[5s])))'  # noqa: E501
    )
    assert 0.3 < p99.value <= 0.5


def test_an_injected_xid_error_reaches_prometheus(telemetry: Telemetry) -> None:
    assert telemetry.client.query("DCGM_FI_DEV_XID_ERRORS > 0") == []
    answer = telemetry.control("gpu", {"node": "us-spot-1", "gpu": 3, "xid": 79})
    assert answer.status_code == 200, answer.text
    wait_for(
        "the XID error in Prometheus", lambda: bool(telemetry.client.query("DCGM_FI_DEV_XID_ERRORS > 0"))
    )
    (faulty,) = telemetry.client.query("DCGM_FI_DEV_XID_ERRORS > 0")
    assert faulty.value == 79
    assert (faulty.labels["Hostname"], faulty.labels["gpu"], faulty.labels["namespace"]) == (
        "us-spot-1",
        "3",
        "initech-batch",
    )
    telemetry.control("gpu", {"node": "us-spot-1", "gpu": 3, "xid": 0})
    wait_for("the XID error to clear", lambda: not telemetry.client.query("DCGM_FI_DEV_XID_ERRORS > 0"))


def test_a_promql_error_is_raised_with_prometheus_message(telemetry: Telemetry) -> None:
    with pytest.raises(PrometheusError, match=r"bad_data: .*parse error.*\(query 'sum\(\('\)"):
        telemetry.client.query("sum((")


def test_a_range_answer_is_refused_rather_than_misread(telemetry: Telemetry) -> None:
    with pytest.raises(PrometheusError, match="answered a 'matrix', not an instant vector"):
        telemetry.client.query("up[5s]")


def test_an_unreachable_prometheus_is_an_error_not_an_empty_answer() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        PrometheusClient(url, timeout=2) as client,
        pytest.raises(PrometheusError, match=f"{url} is unreachable"),
    ):
        client.query("up")


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(PrometheusError, match="expected an http"):
        PrometheusClient("127.0.0.1:9090")


def test_a_range_query_answers_each_series_over_time(telemetry: Telemetry) -> None:
    (now,) = telemetry.client.query("time()")
    found = telemetry.client.query_range(
        'DCGM_FI_DEV_GPU_UTIL{Hostname="eu-acme-1", gpu="0"}', start=now.value - 4, end=now.value, step=1
    )
    (series,) = found
    assert series.labels["namespace"] == "acme-prod" and series.values
    assert all(value == 87 for _, value in series.values)  # the waste scenario's busy chat pod
    times = [at for at, _ in series.values]
    assert times == sorted(times) and all(now.value - 4 <= at <= now.value for at in times)
    with pytest.raises(PrometheusError, match='bad_data: invalid parameter "query"'):
        telemetry.client.query_range("vector(1)[1m:]", start=now.value - 4, end=now.value, step=1)
