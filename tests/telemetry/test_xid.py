"""The fault detector against a real Prometheus scraping the simulator: fatal XIDs (NVIDIA's "reset
the GPU" class) make a node fault naming the pods of the faulty GPUs; application XIDs do not."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest

from pdp.commands.lifecycle.incidents import detect_once
from pdp.telemetry.xid import FATAL_XIDS, node_faults
from tests.lifecycle.harness import Worker
from tests.ports import free_port
from tests.telemetry.conftest import Telemetry, wait_for


def _xid(telemetry: Telemetry, node: str, gpu: int, xid: int) -> None:
    answer = telemetry.control("gpu", {"node": node, "gpu": gpu, "xid": xid})
    assert answer.status_code == 200, answer.text


def test_fatal_xids_are_node_faults_with_the_pods_of_their_gpus(telemetry: Telemetry) -> None:
    assert node_faults(telemetry.client) == []
    _xid(telemetry, "eu-acme-1", 0, 79)  # fallen off the bus, under acme-prod's chat pod
    _xid(telemetry, "eu-acme-1", 3, 48)  # double-bit ECC, under acme-staging's eval pod
    _xid(telemetry, "us-spot-1", 1, 13)  # graphics engine exception: the application's, not the GPU's
    try:
        wait_for(
            "the three XIDs in Prometheus",
            lambda: len(telemetry.client.query("DCGM_FI_DEV_XID_ERRORS != 0")) == 3,
        )
        (fault,) = node_faults(telemetry.client)
        assert fault.node == "eu-acme-1"
        assert fault.xids == [48, 79] and fault.gpus == ["0", "3"]
        assert fault.pods == [
            {"namespace": "acme-prod", "pod": "chat-7d9c8b6f5-x2k4q"},
            {"namespace": "acme-staging", "pod": "eval-5f6d7c8b9-qw8rt"},
        ]
        assert fault.report()["cause"] == "xid 48,79"
        # An operator may count XID 13 as fatal too: then us-spot-1 is a fault as well.
        assert [f.node for f in node_faults(telemetry.client, {13, 79})] == ["eu-acme-1", "us-spot-1"]
    finally:
        for node, gpu in (("eu-acme-1", 0), ("eu-acme-1", 3), ("us-spot-1", 1)):
            _xid(telemetry, node, gpu, 0)
        wait_for("the XIDs to clear", lambda: not telemetry.client.query("DCGM_FI_DEV_XID_ERRORS != 0"))


def test_the_catalog_holds_the_xids_the_brief_names() -> None:
    assert {48, 79, 94, 95} <= set(FATAL_XIDS)
    assert 13 not in FATAL_XIDS and 31 not in FATAL_XIDS and 43 not in FATAL_XIDS


def test_an_unreachable_prometheus_is_an_error_not_no_faults(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    nothing = f"http://127.0.0.1:{free_port()}"
    with httpx.Client(base_url=nothing) as worker:  # never called: Prometheus fails first
        assert detect_once(worker, nothing, None, out=out) == 1
    assert out.getvalue() == ""
    assert "error:" in capsys.readouterr().err


def test_the_detector_opens_one_incident_per_faulty_node_on_the_worker(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    """XID 79 in Prometheus -> `incident detect` -> the worker's incident workflow (dry run: the
    cordon is recorded as an effect); detected again, it is already open; resolved, it closes."""
    worker = Worker(tmp_path).start()
    try:
        _xid(telemetry, "eu-acme-1", 0, 79)
        wait_for("the XID in Prometheus", lambda: bool(node_faults(telemetry.client)))
        with worker.client() as c:
            out = io.StringIO()
            assert detect_once(c, telemetry.prometheus_url, None, out=out) == 0
            assert out.getvalue().startswith("eu-acme-1: xid 79: opened incident-eu-acme-1-"), out.getvalue()
            again = io.StringIO()
            assert detect_once(c, telemetry.prometheus_url, None, out=again) == 0
            assert again.getvalue() == "eu-acme-1: xid 79: an incident is already open\n"
            (opened,) = c.get("/v1/incidents", params={"open_only": True}).json()
            assert opened["node"] == "eu-acme-1" and opened["fault"]["xids"] == [79]
            assert opened["fault"]["pods"] == [{"namespace": "acme-prod", "pod": "chat-7d9c8b6f5-x2k4q"}]
            incident = opened["incident"]
            deadline = time.monotonic() + 120
            while c.get(f"/v1/incidents/{incident}").json()["state"] != "awaiting_resolution":
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
            cordoned = [
                e
                for e in c.get("/v1/effects").json()["effects"]
                if e["kind"] == "Node" and e["name"] == "eu-acme-1"
            ]
            assert [e["op"] for e in cordoned] == ["would_apply"]
            assert c.post(f"/v1/incidents/{incident}/resolve", json={}).status_code == 202
        wf = worker.wait_workflow(incident)
        assert wf["status"] == "SUCCESS" and wf["output"]["state"] == "resolved", wf
    finally:
        worker.stop()
        _xid(telemetry, "eu-acme-1", 0, 0)
        wait_for("the XID to clear", lambda: not node_faults(telemetry.client))
