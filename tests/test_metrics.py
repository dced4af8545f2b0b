"""Prometheus metrics: a real `pdp serve` (embedded OPA) takes traffic on every entry point it
serves (gRPC Decide and DecideBatch, HTTP, admission webhook, scheduler extender) and its
`/metrics` (the --metrics-listen listener, and the HTTP API's route) must count exactly that
traffic. The lifecycle worker's /metrics is tested in tests/lifecycle/test_metrics.py."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pdp import metrics
from pdp.api.client import PdpClient
from pdp.engine.opa_http import OpaHttpEngine
from pdp.metrics import DecisionMetrics, policy_codes
from pdp.metrics.decision_point import default_policies
from pdp.point import DecideOptions, DecisionPoint
from tests.conftest import EXAMPLES, ROOT, self_signed
from tests.e2e.controlplane import free_port
from tests.substrate.kubernetes.enforcement.conftest import body, labels, own_pool, pod, review

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def intent(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "intents" / name).read_text()))


@dataclass
class Serve:
    process: subprocess.Popen[str]
    grpc: str
    http: str
    webhook: str
    extender: str
    metrics: str
    cert: Path

    def scrape(self, url: str | None = None) -> Samples:
        r = httpx.get(url or self.metrics, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
        return parse(r.text)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, opa_binary: Path) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("metrics")
    cert, key = self_signed(root)
    ports = {name: free_port() for name in ("http", "webhook", "extender", "metrics")}
    argv = [
        sys.executable, "-m", "pdp.cli", "serve",
        "--tenants", str(EXAMPLES / "tenants"), "--fleet", str(EXAMPLES / "fleet.yaml"),
        "--bundles", str(root / "bundles"), "--keys", str(root / "keys"), "--state", str(root / "state"),
        "--listen", "127.0.0.1:0",
        "--http-listen", f"127.0.0.1:{ports['http']}",
        "--webhook-listen", f"127.0.0.1:{ports['webhook']}",
        "--webhook-cert", str(cert), "--webhook-key", str(key),
        "--extender-listen", f"127.0.0.1:{ports['extender']}",
        "--metrics-listen", f"127.0.0.1:{ports['metrics']}",
    ]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("pdp serving on"):
                break
        assert lines and lines[-1].startswith("pdp serving on"), "".join(lines)
        metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
        assert any(f"metrics on {metrics_url}" in line for line in lines), "".join(lines)
        yield Serve(
            process,
            grpc=lines[-1].split()[3],
            http=f"http://127.0.0.1:{ports['http']}",
            webhook=f"https://127.0.0.1:{ports['webhook']}",
            extender=f"http://127.0.0.1:{ports['extender']}",
            metrics=metrics_url,
            cert=cert,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def expected(decisions: list[dict[str, Any]], kinds: list[str]) -> tuple[Counter[Any], Counter[Any]]:
    """(kind, outcome) counts and (outcome, reason code) counts of the decisions answered."""
    outcomes = Counter((k, d["outcome"]) for k, d in zip(kinds, decisions, strict=True))
    reasons = Counter((d["outcome"], r["code"]) for d in decisions for r in d.get("reasons", []))
    return outcomes, reasons


def check_decisions(
    before: Samples, after: Samples, entry_point: str, decisions: list[dict[str, Any]], kinds: list[str]
) -> None:
    outcomes, reasons = expected(decisions, kinds)
    counted = {
        (dict(labels)["kind"], dict(labels)["outcome"]): v
        - value(before, "gpupaas_pdp_decisions_total", **dict(labels))
        for labels, v in series(after, "gpupaas_pdp_decisions_total").items()
        if dict(labels)["entry_point"] == entry_point
    }
    assert {k: v for k, v in counted.items() if v} == outcomes
    for (outcome, code), n in reasons.items():
        assert (
            delta(
                after,
                before,
                "gpupaas_pdp_decision_reasons_total",
                entry_point=entry_point,
                outcome=outcome,
                reason=code,
            )
            == n
        ), (entry_point, outcome, code)
    timed = sum(
        delta(
            after, before, "gpupaas_pdp_decision_duration_seconds_count", entry_point=entry_point, outcome=o
        )
        for o in ("ALLOW", "DENY", "NEEDS_APPROVAL")
    )
    assert timed == len(decisions)


def test_pdp_serve_counts_every_entry_points_traffic_exactly(serve: Serve) -> None:
    grpc_intents = [intent(n) for n in ("01-acme-eu-deploy-eu.json", "03-acme-eu-request-sharing.json")] * 2
    batch = [
        intent("02-acme-eu-deploy-us.json"),
        intent("04-globex-deploy-shared.json"),
        intent("07-acme-eu-offboard.json"),
    ]
    http_intents = [intent("05-acme-eu-scale-past-entitlement.json"), intent("08-globex-change-sla.json")]
    before = serve.scrape()

    with PdpClient(serve.grpc, timeout=10) as client:
        grpc_answers = [client.decide(i) for i in grpc_intents]
        batch_answers = client.decide_batch(batch)
    http_answers = [httpx.post(f"{serve.http}/v1/decide", json=i, timeout=10).json() for i in http_intents]

    pinned_to_us = pod(
        limits={"nvidia.com/gpu": "1"},
        node_selector={"topology.kubernetes.io/region": "us-east-1"},
        tolerations=own_pool("acme-eu"),
    )
    no_gpus = pod("web-0")
    with httpx.Client(
        base_url=serve.webhook, verify=ssl.create_default_context(cafile=str(serve.cert)), timeout=10
    ) as c:
        denied = c.post("/validate?timeout=10s", content=body(review(pinned_to_us, "acme-prod"))).json()
        allowed = c.post("/validate?timeout=10s", content=body(review(no_gpus, "acme-prod"))).json()
        garbage = c.post("/validate?timeout=10s", content=b"not an AdmissionReview")
    assert denied["response"]["allowed"] is False and allowed["response"]["allowed"] is True
    assert garbage.status_code == 400

    nodes = {
        "eu-acme-1": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
        "us-shared-1": labels("us-east-1", "shared-h100"),
    }
    acme = pod(
        "llama-1",
        namespace="acme-prod",
        uid="u-1",
        limits={"nvidia.com/gpu": "1"},
        tolerations=own_pool("acme-eu"),
    )
    args = {
        "Pod": acme,
        "Nodes": {"items": [{"metadata": {"name": n, "labels": lab}} for n, lab in nodes.items()]},
        "NodeNames": None,
    }
    filtered = httpx.post(f"{serve.extender}/filter", json=args, timeout=10).json()
    assert [n["metadata"]["name"] for n in filtered["Nodes"]["items"]] == ["eu-acme-1"], filtered
    bad = httpx.post(f"{serve.extender}/filter", json={"Pod": None, "NodeNames": ["a"]}, timeout=10).json()
    assert bad["Error"]

    after = serve.scrape()
    check_decisions(before, after, "grpc", grpc_answers, [i["kind"] for i in grpc_intents])
    check_decisions(before, after, "grpc_batch", batch_answers, [i["kind"] for i in batch])
    check_decisions(before, after, "http", http_answers, [i["kind"] for i in http_intents])
    # The webhook decided once (the pod asking for no GPUs needs no policy), the extender once.
    assert (
        delta(
            after,
            before,
            "gpupaas_pdp_decisions_total",
            entry_point="webhook",
            kind="admit_workload",
            outcome="DENY",
        )
        == 1
    )
    assert (
        delta(
            after,
            before,
            "gpupaas_pdp_decisions_total",
            entry_point="extender",
            kind="place_workload",
            outcome="ALLOW",
        )
        == 1
    )
    for outcome, n in (("allow", 1), ("deny", 1), ("error", 1)):
        assert delta(after, before, "gpupaas_pdp_webhook_requests_total", outcome=outcome) == n, outcome
        assert (
            delta(after, before, "gpupaas_pdp_webhook_request_duration_seconds_count", outcome=outcome) == n
        )
    for outcome, n in (("filtered", 1), ("error", 1), ("all_eligible", 0)):
        assert (
            delta(after, before, "gpupaas_pdp_extender_requests_total", verb="filter", outcome=outcome) == n
        )
    assert not series(after, "gpupaas_pdp_engine_errors_total") or all(
        v == 0 for v in series(after, "gpupaas_pdp_engine_errors_total").values()
    )

    # The active revision is the one the decisions name, and it is the only one exported.
    revisions = {d["bundle_revision"] for d in grpc_answers + batch_answers + http_answers}
    assert len(revisions) == 1
    info = series(after, "gpupaas_pdp_bundle_info")
    assert info == {(("revision", revisions.pop()),): 1.0}
    assert value(after, "gpupaas_pdp_bundle_age_seconds") >= 0
    assert value(after, "gpupaas_pdp_bundle_activation_timestamp_seconds") > 1.7e9
    assert value(after, "gpupaas_pdp_bundle_activation_failures_total") == 0

    # The HTTP decision API serves the same process's metrics.
    from_http = serve.scrape(f"{serve.http}/metrics")
    assert series(from_http, "gpupaas_pdp_decisions_total") == series(after, "gpupaas_pdp_decisions_total")


def test_metric_names_carry_the_prefix_and_a_unit_and_labels_are_closed(serve: Serve) -> None:
    samples = serve.scrape()
    ours = {name for name, _ in samples if name.startswith("gpupaas_pdp_")}
    assert ours
    units = ("_total", "_seconds", "_seconds_bucket", "_seconds_count", "_seconds_sum", "_info", "_created")
    assert all(n.endswith(units) for n in ours), sorted(n for n in ours if not n.endswith(units))
    buckets = {
        dict(labels)["le"] for (n, labels) in samples if n == "gpupaas_pdp_decision_duration_seconds_bucket"
    }
    assert {"0.0001", "10.0", "+Inf"} <= buckets
    allowed = {"entry_point", "kind", "outcome", "reason", "verb", "le", "revision", "state"}
    assert {k for (n, labels) in samples if n in ours for k, _ in labels} <= allowed


def test_a_reason_outside_the_catalogue_is_counted_as_other() -> None:
    codes = policy_codes(ROOT / "policies")
    assert {"RESIDENCY_VIOLATION", "SHARING_NOT_ALLOWED"} <= codes
    recorder = DecisionMetrics(catalogue=codes | metrics.ENGINE_CODES)
    assert recorder.reason_label("RESIDENCY_VIOLATION") == "RESIDENCY_VIOLATION"
    assert recorder.reason_label("tenant-acme-said-so") == "other"
    assert recorder.reason_label("ENGINE_TIMEOUT") == "ENGINE_TIMEOUT"


def test_the_process_catalogue_is_the_checkouts_policies() -> None:
    # Found from where the code sits: split into a package, the folder was looked for one level too
    # deep (pdp/policies), every policy code was counted as "other", and only a real worker's
    # QUOTA_APPROVAL_REQUIRED series (tests/lifecycle/test_metrics.py) showed it.
    assert default_policies() == ROOT / "policies"
    assert policy_codes(ROOT / "policies") | metrics.ENGINE_CODES == metrics.decisions.catalogue
    assert metrics.decisions.reason_label("QUOTA_APPROVAL_REQUIRED") == "QUOTA_APPROVAL_REQUIRED"


def test_an_unreachable_engine_counts_an_engine_error_by_kind() -> None:
    # A real HTTP engine aimed at a port nothing listens on: connection refused.
    point = DecisionPoint(OpaHttpEngine(f"127.0.0.1:{free_port()}"))
    before = parse(_latest())
    decision = point.decide(intent("01-acme-eu-deploy-eu.json"), DecideOptions(timeout=2, entry_point="cli"))
    after = parse(_latest())
    assert decision.outcome.value == "DENY" and decision.reason_codes == ["ENGINE_UNAVAILABLE"]
    assert delta(after, before, "gpupaas_pdp_engine_errors_total", entry_point="cli", kind="unavailable") == 1
    assert (
        delta(
            after,
            before,
            "gpupaas_pdp_decision_reasons_total",
            entry_point="cli",
            outcome="DENY",
            reason="ENGINE_UNAVAILABLE",
        )
        == 1
    )


def _latest() -> str:
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY).decode()


def test_the_metrics_listener_follows_the_tls_rule(tmp_path: Path) -> None:
    from pdp.cli import parser
    from pdp.net.listen import ListenError
    from pdp.net.metrics_http import check_metrics_options, start_metrics

    def args(*argv: str) -> Any:
        return parser().parse_args(["serve", *argv])

    with pytest.raises(
        ListenError, match=re.escape("--metrics-listen 0.0.0.0:9464 is not loopback: give --metrics-cert")
    ):
        check_metrics_options(args("--metrics-listen", "0.0.0.0:9464"))
    with pytest.raises(ListenError, match="give both --metrics-cert and --metrics-key"):
        check_metrics_options(args("--metrics-listen", "127.0.0.1:9464", "--metrics-cert", "c.pem"))
    check_metrics_options(args("--metrics-listen", "0.0.0.0:9464", "--insecure"))  # allowed, logged

    cert, key = self_signed(tmp_path)
    port = free_port()
    listener = start_metrics(
        args("--metrics-listen", f"127.0.0.1:{port}", "--metrics-cert", str(cert), "--metrics-key", str(key))
    )
    assert listener is not None and listener.url == f"https://127.0.0.1:{port}/metrics"
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # plaintext is not served
        r = httpx.get(listener.url, verify=ssl.create_default_context(cafile=str(cert)), timeout=5)
        assert r.status_code == 200 and "gpupaas_pdp_decisions_total" in r.text
    finally:
        listener.stop()
