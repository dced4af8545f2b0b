"""Incidents from Kubernetes node conditions: the detector reads the nodes from a real kube-apiserver
(their status patched as a kubelet or node-problem-detector would) and opens one incident per
faulty node on a lifecycle worker (dry-run adapter): Ready False/Unknown only past its grace, a
GPU problem condition at once, a node with both an XID and a condition once, an open incident not
opened again."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, config

from pdp.commands.lifecycle.incidents import detect_once
from pdp.substrate.kubernetes.conditions import condition_faults, merged_reports
from pdp.telemetry.xid import NodeFault
from tests.e2e.controlplane import ControlPlane
from tests.lifecycle.harness import Worker, create_gpu_node

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _node(name: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": list(conditions)}}


def _cond(kind: str, status: str, ago: float, reason: str = "") -> dict[str, Any]:
    since = (NOW - timedelta(seconds=ago)).isoformat().replace("+00:00", "Z")
    return {"type": kind, "status": status, "lastTransitionTime": since, "reason": reason}


def test_ready_past_its_grace_and_problem_conditions_are_faults() -> None:
    nodes = [
        _node("a", _cond("Ready", "False", 301, "KubeletNotReady")),
        _node("b", _cond("Ready", "Unknown", 299)),  # within the grace
        _node("c", _cond("Ready", "True", 1000), _cond("GPUXIDErrors", "True", 1)),
        _node(
            "d",
            _cond("Ready", "True", 1000),
            _cond("GPUMissing", "False", 1),
            _cond("DiskPressure", "True", 900),
        ),
        _node("e", {"type": "Ready", "status": "Unknown"}),  # no transition time: not yet
    ]
    faults = condition_faults(nodes, NOW, ready_grace=300)
    assert [(f.node, f.cause) for f in faults] == [
        ("a", "node condition Ready=False"),
        ("c", "node condition GPUXIDErrors=True"),
    ]
    assert faults[0].conditions[0]["reason"] == "KubeletNotReady"
    # An operator's own condition types replace the default GPU ones.
    assert [f.node for f in condition_faults(nodes, NOW, 300, ["DiskPressure"])] == ["a", "d"]
    assert [f.node for f in condition_faults(nodes, NOW, 0)] == ["a", "b", "c"]


def test_a_node_with_an_xid_and_a_condition_is_one_report() -> None:
    xid = NodeFault("a", xids=[79], gpus=["0"], pods=[{"namespace": "n", "pod": "p"}])
    faults = condition_faults(
        [_node("a", _cond("GPUXIDErrors", "True", 5)), _node("z", _cond("GPUMissing", "True", 5))], NOW
    )
    reports = merged_reports([xid], faults)
    assert reports == [
        {"node": "a", "cause": "xid 79; node condition GPUXIDErrors=True", "xids": [79], "gpus": ["0"],
         "pods": [{"namespace": "n", "pod": "p"}]},
        {"node": "z", "cause": "node condition GPUMissing=True"},
    ]  # fmt: skip


def _patch_conditions(kube: ControlPlane, node: str, conditions: list[dict[str, Any]]) -> None:
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        client.CoreV1Api(api).patch_node_status(node, {"status": {"conditions": conditions}})
    finally:
        api.close()


def _status(kind: str, status: str, ago: float, reason: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    stamp = (now - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": kind, "status": status, "reason": reason, "message": reason,
        "lastTransitionTime": stamp, "lastHeartbeatTime": stamp,
    }  # fmt: skip


def _detect(worker: Worker, kube: ControlPlane, **options: Any) -> tuple[int, str]:
    out = io.StringIO()
    with worker.client() as c:
        code = detect_once(c, None, None, out=out, kubeconfig=str(kube.kubeconfig), **options)
    return code, out.getvalue()


@pytest.mark.timeout(600)
def test_detector_opens_incidents_from_node_conditions_on_the_api_server(
    worker: Worker, kube: ControlPlane
) -> None:
    for name in ("eu-shared-3", "eu-shared-4"):
        create_gpu_node(kube.kubeconfig, name, "eu-h100-shared", "eu-west-1")
    # eu-shared-3 not ready for 10 minutes; eu-shared-4 for 5 s (within the 300 s grace).
    _patch_conditions(kube, "eu-shared-3", [_status("Ready", "False", 600, "KubeletNotReady")])
    _patch_conditions(kube, "eu-shared-4", [_status("Ready", "Unknown", 5, "NodeStatusUnknown")])

    code, out = _detect(worker, kube)
    assert code == 0, out
    assert "eu-shared-3: node condition Ready=False: opened incident-eu-shared-3-" in out
    assert "eu-shared-4" not in out
    with worker.client() as c:
        [opened] = c.get("/v1/incidents").json()
    assert opened["node"] == "eu-shared-3"

    # node-problem-detector's GPU check reports eu-shared-4's XIDs: a fault at once. eu-shared-3's
    # incident is open: said so, not opened again.
    _patch_conditions(
        kube,
        "eu-shared-4",
        [_status("Ready", "Unknown", 5, "NodeStatusUnknown"), _status("GPUXIDErrors", "True", 1, "XID79")],
    )
    code, out = _detect(worker, kube)
    assert code == 0, out
    assert "eu-shared-3: node condition Ready=False: an incident is already open" in out
    assert "eu-shared-4: node condition GPUXIDErrors=True: opened incident-eu-shared-4-" in out
    with worker.client() as c:
        assert sorted(i["node"] for i in c.get("/v1/incidents").json()) == ["eu-shared-3", "eu-shared-4"]

    # An API server that does not answer is an error, never "no faulty node".
    gone = kube.kubeconfig.parent / "gone.kubeconfig"
    text = kube.kubeconfig.read_text()
    server = next(line.split("server:", 1)[1].strip() for line in text.splitlines() if "server:" in line)
    gone.write_text(text.replace(server, "https://127.0.0.1:1"))
    out_buf = io.StringIO()
    with worker.client() as c:
        assert detect_once(c, None, None, out=out_buf, kubeconfig=str(gone)) == 1


def test_detect_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    from pdp.cli import main

    assert main(["lifecycle", "incident", "detect", "--token", "x"]) == 2
    assert "give --prometheus, --kubeconfig or both" in capsys.readouterr().err
