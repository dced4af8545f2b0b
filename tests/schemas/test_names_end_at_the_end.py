"""Every name and value the project checks with a pattern is checked whole: Python's `$` also
matches before a final newline, so a `^...$` pattern used with `re.match` accepted "acme\\n", and
the value went on into a PromQL query, a Kubernetes label or a quantity. Each check below accepts
the value without the newline (so the test fails for the newline, not for the value) and refuses
it with one."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import HTTPException

from pdp.decision import Decision
from pdp.product.console.pages.enforcement.charts import denial_rate_promql
from pdp.product.console.pages.sla.charts import burn_rate_promql
from pdp.product.console.pages.usage.charts import queued_promql
from pdp.product.console.pages.waste.views import idle_promql
from pdp.records.postgres import RecordsStoreError, check_writer
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject, gpu_requests
from pdp.substrate.kueue import checks
from pdp.telemetry.waste import deployment_of, duration_seconds


def _pod_asking(gpus: str) -> dict[str, Any]:
    return {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}


def test_a_records_writer_name() -> None:
    assert check_writer("pdp-0") == "pdp-0"
    with pytest.raises(RecordsStoreError, match="--records-writer"):
        check_writer("pdp-0\n")


def test_a_chart_window() -> None:
    assert "[5m]" in denial_rate_promql("5m")
    with pytest.raises(ValueError, match="rate window"):
        denial_rate_promql("5m\n")
    burn_rate_promql({}, "1h")
    with pytest.raises(ValueError, match="window"):
        burn_rate_promql({}, "1h\n")


def test_a_tenant_or_namespace_in_a_console_query() -> None:
    assert '"acme"' in queued_promql("acme")
    with pytest.raises(HTTPException):
        queued_promql("acme\n")
    assert "acme-prod" in idle_promql(["acme-prod"])
    with pytest.raises(HTTPException):
        idle_promql(["acme-prod\n"])


def test_a_gpu_quantity() -> None:
    assert sum(gpu_requests(_pod_asking("4")).values()) == 4
    with pytest.raises(InvalidObject, match="not a whole number"):
        gpu_requests(_pod_asking("4\n"))


def test_a_decision_id_is_a_kueue_label_only_when_it_is_a_label_value() -> None:
    def labels(decision_id: str) -> dict[str, str]:
        decision = Decision.from_dict({"outcome": "ALLOW", "decision_id": decision_id, "constraints": {}})
        return dict(checks.placement_update("main", {}, decision).get("labels", {}))

    assert labels("d-1") == {checks.DECISION_LABEL: "d-1"}
    assert labels("d-1\n") == {}  # the API server would refuse the whole update for it


def test_a_waste_window_and_a_pod_name() -> None:
    assert duration_seconds("5m") == 300
    with pytest.raises(ValueError):
        duration_seconds("5m\n")
    assert deployment_of("chat-7d9c8b6f5-x2k4q") == "chat"
    assert deployment_of("chat-7d9c8b6f5-x2k4q\n") == "chat-7d9c8b6f5-x2k4q\n"
