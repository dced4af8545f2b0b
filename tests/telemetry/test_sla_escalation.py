"""SLA escalation end to end: the telemetry simulator scraped by a real Prometheus, a lifecycle
worker (real OPA deciding the sla_breach intent, DBOS) applying to a real kube-apiserver, the
periodic SLA check and `POST /v1/sla/check` starting escalation workflows. A deployment's latency
goes over its SLA -> the burn-rate alert fires -> enterprise is re-placed onto a less loaded pool
(once, across a kill -9), standard is credited, spot notified only; tenants see only their own SLA."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config

from pdp.lifecycle.services.sla_checks import workflow_prefix
from pdp.telemetry.sla import Windows, sla_report
from tests.e2e.controlplane import ControlPlane, kube_binaries
from tests.e2e.kueue import install_crds, kueue_folder
from tests.lifecycle.harness import (
    Worker,
    audit_records,
    deploy,
    examples_with,
    h100_deployment,
    onboard,
    tenant_doc,
)
from tests.telemetry.conftest import Telemetry, wait_for

H100 = "H100-80GB"
LATENCY_SLA = {"class": "latency-critical", "latency_p99_ms": 500, "availability": 99.9}
ENT = tenant_doc(
    "globex", "slaent", ["slaent-ml"], tier="enterprise", sla=LATENCY_SLA, entitlements={H100: 16}
)
STD = tenant_doc(
    "globex", "slastd", ["slastd-ml"], entitlements={H100: 16},
    sla={"class": "throughput", "latency_p99_ms": 500, "availability": 99.5},
)  # fmt: skip
SPOT = tenant_doc(
    "initech-spot", "slaspot", ["slaspot-batch"], entitlements={H100: 16},
    sla={"class": "best-effort", "availability": 99},
)  # fmt: skip
CHAT = ["chat-7d9c8b6f5-x2k4q", "chat-7d9c8b6f5-b2c4d"]
EMBED = "embed-6b7c8d9f4-p2m4n"
GEN = "gen-5f6d7c8b9-qw8rt"
SEARCH = "search-8b9c7d6f5-m2n4p"
RANK = "rank-7c6d5f4b8-h2j4k"
# The worker's sla_alerting (below), for the test's own reading of the alerts.
WINDOWS = Windows("30s", "5s", 14.4, "180s", "15s", 6.0, "10m")
CREDIT = {"fast": 5, "slow": 2}  # policies/gpupaas/sla_breach: standard's credit per alert
ENTERPRISE_CREDIT = {"fast": 10, "slow": 5}
SERVING = {"model_name": "llama", "requests_per_second": 30, "latency_seconds": 0.2}


def _pod(namespace: str, pod: str, gpus: list[int], serving: bool = True) -> dict[str, Any]:
    alloc: dict[str, Any] = {"gpus": gpus, "namespace": namespace, "pod": pod, "utilization": 90,
                             "memory_used_mib": 70000}  # fmt: skip
    if serving:
        alloc["serving"] = dict(SERVING)
    return alloc


def _scenario() -> dict[str, Any]:
    # eu-h100-shared (32 GPUs): 8 held on eu-shared-1; us-h100-shared (64 GPUs): 2 held.
    eu = [_pod("slaent-ml", CHAT[0], [0]), _pod("slaent-ml", CHAT[1], [1]), _pod("slastd-ml", EMBED, [2, 3]),
          _pod("other-ml", "fill-7c8d9f6b5-k2m4n", [4, 5, 6], serving=False),
          _pod("slaent-ml", RANK, [7])]  # fmt: skip
    us = [_pod("slaspot-batch", GEN, [0, 1]), _pod("slaent-ml", SEARCH, [2])]
    model = "NVIDIA H100 80GB HBM3"
    nodes = [
        {"name": "eu-shared-1", "model": model, "gpus": 8, "allocations": eu},
        {"name": "us-shared-1", "model": model, "gpus": 8, "allocations": us},
    ]
    return {"scenario": {"name": "sla-escalation", "nodes": nodes}}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("kube")).start()
    try:
        api = config.new_client_from_config(str(cp.kubeconfig))
        install_crds(api, kueue_folder())  # the tenants' Kueue objects are validated against them
        api.close()
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def serving(telemetry: Telemetry) -> Telemetry:
    def requests_seen() -> bool:
        got = telemetry.client.query('sum(rate(vllm:request_success_total{namespace="slaspot-batch"}[5s]))')
        return bool(got) and got[0].value > 20

    return telemetry.play(_scenario(), "Prometheus to see the model servers' requests", requests_seen)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, serving: Telemetry, kube: ControlPlane
) -> Iterator[tuple[Worker, dict[str, str]]]:
    # Windows of seconds (the SRE workbook's burn rates; the slow long window six times the fast
    # one, as 6h to 1h, so a sudden breach fires the fast alert first), a check every 2 s, no
    # second escalation of a deployment within the test.
    alerting = {
        "fast": {"long": "30s", "short": "5s"}, "slow": {"long": "180s", "short": "15s"},
        "period": "10m", "check_schedule": "*/2 * * * * *", "cooldown": "30m",
    }  # fmt: skip
    root = examples_with(tmp_path_factory.mktemp("sla-worker"), sla_alerting=alerting)
    worker = Worker(
        root, kubeconfig=kube.kubeconfig, prometheus=serving.prometheus_url, capacity_retry_schedule=""
    ).start()
    try:
        tokens = {doc["tenant"]["name"]: onboard(worker, doc) for doc in (ENT, STD, SPOT)}
        for tenant, name in (
            ("slaent", "chat"),
            ("slaent", "search"),
            ("slaent", "rank"),
            ("slastd", "embed"),
            ("slaspot", "gen"),
        ):
            deploy(worker, tenant, h100_deployment(name, 2))
        yield worker, tokens
    finally:
        worker.stop()


def _slow(serving: Telemetry, namespace: str, pods: list[str], **change: float) -> None:
    for pod in pods:
        r = serving.control("serving", {"namespace": namespace, "pod": pod, **change})
        assert r.status_code == 200, r.text


def _escalation(worker: Worker, tenant: str, deployment: str, timeout: float = 120) -> dict[str, Any]:
    """The deployment's first escalation once it ends (whichever check started it), and the only
    one: checks every 2 s and requests meanwhile started no second."""
    workflow_id = f"{workflow_prefix(tenant, deployment)}1"

    def started() -> bool:
        with worker.client() as c:
            return c.get(f"/v1/workflows/{workflow_id}").status_code == 200

    wait_for(f"the escalation of {tenant}/{deployment}", started, timeout=timeout)
    done = worker.wait_workflow(workflow_id, timeout=timeout)
    with worker.client() as c:
        assert c.get(f"/v1/workflows/{workflow_prefix(tenant, deployment)}2").status_code == 404
    return done


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _sla_events(records: list[dict[str, Any]]) -> list[str]:
    return [r["event"] for r in records if r["event"].startswith("sla.")]


def _deployment_affinity(kube: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        dep = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
        terms = (
            dep.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        )
        return [
            {"key": e.key, "operator": e.operator, "values": e.values}
            for e in terms.node_selector_terms[0].match_expressions
        ]
    finally:
        api.close()


def test_enterprise_breach_is_replaced_onto_the_less_loaded_pool_once_across_a_kill9(
    world: tuple[Worker, dict[str, str]], serving: Telemetry, kube: ControlPlane
) -> None:
    worker, _ = world
    assert {"key": "gpupaas.io/pool", "operator": "In", "values": ["us-h100-shared"]} not in (
        _deployment_affinity(kube, "slaent-ml", "chat")
    )
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "sla:replace"})
    try:
        _slow(serving, "slaent-ml", CHAT, latency_seconds=2.0)
        # The periodic check sees the fast burn-rate alert and escalates; the worker is killed
        # inside the re-placement, after the notice.
        assert worker.wait_paused(timeout=120) == "sla:replace"
    finally:
        worker.kill9()
        worker.start()
    out = _escalation(worker, "slaent", "chat")
    assert out["status"] == "SUCCESS", out
    result = out["output"]
    assert result["status"] == "replaced", result
    assert result["from_pools"] == ["eu-h100-shared"] and result["to_pool"] == "us-h100-shared"
    # The object in the real API server: its pods now required on the less loaded pool, in its region.
    affinity = _deployment_affinity(kube, "slaent-ml", "chat")
    assert {"key": "gpupaas.io/pool", "operator": "In", "values": ["us-h100-shared"]} in affinity
    assert {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["us-east-1"]} in affinity
    records = _audit(worker, "slaent")
    assert _sla_events(records) == ["sla.notified", "sla.replaced", "sla.escalated"]
    (notified,) = [r for r in records if r["event"] == "sla.notified"]
    severity, notice = notified["detail"]["severity"], notified["detail"]["notice"][0]
    assert notified["detail"]["codes"] == ["SLA_REPLACED"] and f"({severity} alert)" in notice
    assert (
        'deployment "chat" of tenant "slaent" (tier enterprise) breaches its latency SLA'
        in (notified["detail"]["notice"][0])
    )
    assert "onto pool us-h100-shared" in notified["detail"]["notice"][0]
    replaced = [r for r in records if r["event"] == "deployment.replaced"]
    assert len(replaced) == 1 and replaced[0]["detail"]["to_pool"] == "us-h100-shared", replaced
    decisions = [r["detail"]["kind"] for r in records if r["event"] == "decision" and
                 r["workflow_id"] == out["workflow_id"]]  # fmt: skip
    assert decisions == ["sla_breach", "deploy_model"], decisions
    _slow(serving, "slaent-ml", CHAT, latency_seconds=0.2)


def test_a_breach_over_before_the_recheck_is_cancelled_and_nothing_is_done(
    world: tuple[Worker, dict[str, str]], serving: Telemetry
) -> None:
    worker, _ = world
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "sla:recheck"})
    try:
        _slow(serving, "slaent-ml", [SEARCH], latency_seconds=2.0)
        assert worker.wait_paused(timeout=120) == "sla:recheck"
        worker.kill9()
        # The latency is back under the SLA while the worker is down: once the alerts' short
        # windows hold only good requests, no alert fires (each needs both its windows over).
        _slow(serving, "slaent-ml", [SEARCH], latency_seconds=0.2)

        def healed() -> bool:
            report = sla_report(serving.client, {"slaent": ENT["tenant"]}, WINDOWS)
            search = [r for r in report.rows if r.deployment == "search"]
            return bool(search) and not search[0].alerts

        wait_for("the alerts on slaent/search to stop", healed, timeout=90)
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.kill9()
        worker.start()
    out = _escalation(worker, "slaent", "search")["output"]
    assert out["status"] == "cancelled" and "no latency alert fires" in out["reason"], out
    events = [
        r["event"] for r in _audit(worker, "slaent")
        if r["event"].startswith("sla.") and r["detail"].get("deployment") == "search"
    ]  # fmt: skip
    assert events == ["sla.notified", "sla.cancelled", "sla.escalated"], events


def test_standard_breach_is_credited_by_the_periodic_check(
    world: tuple[Worker, dict[str, str]], serving: Telemetry
) -> None:
    worker, _ = world
    _slow(serving, "slastd-ml", [EMBED], latency_seconds=3.0)
    try:
        out = _escalation(worker, "slastd", "embed")["output"]
    finally:
        _slow(serving, "slastd-ml", [EMBED], latency_seconds=0.2)
    # 5% on the fast alert, 2% on the slow one (which fires first when the slow long window is
    # not yet full of data: the check measures over what Prometheus has).
    assert out["status"] == "credited" and out["credit_percent"] == CREDIT[out["severity"]], out
    records = _audit(worker, "slastd")
    assert _sla_events(records) == ["sla.notified", "sla.credit", "sla.escalated"]
    # Started by the worker's periodic check, not by a request.
    (decided,) = [r for r in records if r["event"] == "decision" and r["detail"]["kind"] == "sla_breach"]
    assert decided["actor"] == "system:sla-check"
    assert decided["detail"]["payload"]["current_pools"] == ["eu-h100-shared"]


def test_spot_breach_is_notified_only_and_check_needs_an_admin(
    world: tuple[Worker, dict[str, str]], serving: Telemetry
) -> None:
    worker, tokens = world
    with worker.client(tokens["slaspot"]) as c:
        assert c.post("/v1/sla/check", json={}).status_code == 403
    _slow(serving, "slaspot-batch", [GEN], error_ratio=0.2)
    try:

        def check() -> dict[str, Any]:
            with worker.client() as c:
                r = c.post("/v1/sla/check", json={"tenant": "slaspot"})
            assert r.status_code == 202, r.text
            body: dict[str, Any] = r.json()
            return body

        def alerting() -> bool:
            # Two checks at once (and the periodic one): one escalation (_escalation holds it).
            with ThreadPoolExecutor(2) as pool:
                bodies = list(pool.map(lambda _: check(), range(2)))
            return any(s["deployment"] == "gen" for b in bodies for s in b["started"] + b["skipped"])

        wait_for("the availability alert of slaspot/gen", alerting, timeout=120)
        out = _escalation(worker, "slaspot", "gen")["output"]
    finally:
        _slow(serving, "slaspot-batch", [GEN], error_ratio=0.0)
    assert out["status"] == "notified" and out["objective"] == "availability", out
    assert _sla_events(_audit(worker, "slaspot")) == ["sla.notified", "sla.escalated"]


def test_tenants_see_only_their_own_sla_and_credits(world: tuple[Worker, dict[str, str]]) -> None:
    worker, tokens = world
    with worker.client(tokens["slastd"]) as c:
        own = c.get("/v1/sla")
        assert own.status_code == 200, own.text
        body = own.json()
        # Another tenant's SLA, asked for by name: refused.
        assert c.get("/v1/sla", params={"tenant": "slaent"}).status_code == 403
        assert c.get("/v1/sla", params={"tenant": "slastd"}).status_code == 200
    assert httpx.get(f"{worker.url}/v1/sla", timeout=10).status_code == 401  # no token
    with worker.client("not-a-token") as c:
        assert c.get("/v1/sla").status_code == 401
    assert {d["tenant"] for d in body["deployments"]} == {"slastd"}
    (embed,) = body["deployments"]
    assert embed["deployment"] == "embed" and embed["objective"]["latency_p99_ms"] == 500
    assert set(embed["burn_rates"]) == {"latency", "availability"} and "30s" in embed["burn_rates"]["latency"]
    assert embed["budget_left"]["latency"] is not None and embed["budget_left"]["latency"] < 1
    (credit,) = body["credits"]
    assert credit["deployment"] == "embed" and credit["credit_percent"] == CREDIT[credit["severity"]]
    assert {c["tenant"] for c in body["credits"]} == {"slastd"}
    with worker.client(tokens["slaent"]) as c:
        ent = c.get("/v1/sla").json()
    assert {d["tenant"] for d in ent["deployments"]} == {"slaent"} and ent["credits"] == []
    with worker.client() as c:
        everyone = c.get("/v1/sla").json()
    assert {"slaent", "slastd", "slaspot"} <= {d["tenant"] for d in everyone["deployments"]}
    # The worker's metrics: escalations by tier and outcome, no tenant name.
    text = httpx.get(f"{worker.url}/metrics", timeout=10).text
    assert 'gpupaas_sla_escalations_total{outcome="credited",tier="standard"} 1.0' in text
    assert f'gpupaas_sla_credit_percent_total{{tier="standard"}} {credit["credit_percent"]:.1f}' in text
    assert "slastd" not in text


def test_without_prometheus_the_view_says_how_to_configure_it(tmp_path: Path) -> None:
    worker = Worker(tmp_path, capacity_retry_schedule="").start()
    try:
        with worker.client() as c:
            r = c.get("/v1/sla")
        assert r.status_code == 409 and "--prometheus" in r.text, r.text
    finally:
        worker.stop()


def test_an_enterprise_move_that_fails_credits_the_tier_instead(
    world: tuple[Worker, dict[str, str]], serving: Telemetry, kube: ControlPlane
) -> None:
    worker, _ = world
    worker.kill9()
    # Every attempt of the move fails (as a cluster refusing the object would): the breach goes
    # on where the deployment runs, so the decision's fallback credit is recorded.
    worker.start(env={"PDP_LIFECYCLE_FAIL_AT": "sla:replace"})
    try:
        _slow(serving, "slaent-ml", [RANK], latency_seconds=2.0)
        done = _escalation(worker, "slaent", "rank")
    finally:
        _slow(serving, "slaent-ml", [RANK], latency_seconds=0.2)
        worker.kill9()
        worker.start()
    assert done["status"] == "SUCCESS", done
    out = done["output"]
    assert out["status"] == "credited", out
    assert out["credit_percent"] == ENTERPRISE_CREDIT[out["severity"]], out
    assert out["because"] == (
        "not moved onto pool us-h100-shared: the move failed 3 times, "
        "last: injected failure at step sla:replace"
    ), out
    events = [
        r["event"] for r in _audit(worker, "slaent")
        if r["event"].startswith("sla.") and r["detail"].get("deployment") == "rank"
    ]  # fmt: skip
    assert events == ["sla.notified", "sla.replace_failed", "sla.credit", "sla.escalated"], events
    # Still where it was: no pool requirement onto the target.
    assert {"key": "gpupaas.io/pool", "operator": "In", "values": ["us-h100-shared"]} not in (
        _deployment_affinity(kube, "slaent-ml", "rank")
    )
