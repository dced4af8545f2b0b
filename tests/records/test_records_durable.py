"""--records-durable on the local log: a decision's append returns only once its record is
committed, and fails (never silently) when it cannot be committed in time; central records that
cannot be reached stop `pdp serve` with one line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from pdp.api.client import PdpClient
from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from pdp.records.log import DecisionLog, Integrity, RecordNotDurable
from pdp.records.read import read_records
from tests.api.test_workers import INTENT
from tests.commands.test_cli import config_args
from tests.conftest import embedded_settings
from tests.records.test_records import T0, _decision


def test_a_durable_append_returns_with_its_record_committed(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path, Integrity(durable=True))
    try:
        for n in range(20):
            log.append(_decision(n, "acme-eu", T0), "sha256:x")
            # Another connection, no flush: the record is on disk as the append returns.
            assert [r.decision_id for r in read_records(path)][-1] == f"d{n}"
    finally:
        log.close()


def test_a_durable_append_that_cannot_commit_fails_and_the_record_follows(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path, Integrity(durable=True, durable_timeout=0.5))
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the database cannot be written meanwhile
    try:
        with pytest.raises(RecordNotDurable, match="decision d1: its record was not committed"):
            log.append(_decision(1, "acme-eu", T0), "sha256:x")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    log.close()  # the record was kept queued: written once the database is writable again
    assert [r.decision_id for r in read_records(path)] == ["d1"]


def test_a_decision_whose_record_cannot_be_made_durable_is_an_error_not_an_answer(workspace: Path) -> None:
    """Over gRPC, against the real wasm engine: an ALLOW whose record could not be committed is
    not sent; the caller gets an error status."""
    settings = embedded_settings(
        workspace, engine="wasm", records=Integrity(durable=True, durable_timeout=0.5)
    )
    with EmbeddedPDP(settings) as stack:
        server = PdpServer(stack.point, listen="127.0.0.1:0").start()
        try:
            with PdpClient(server.address, timeout=20) as client:
                assert client.decide(INTENT)["outcome"] == "ALLOW"  # the log writable: answered
                blocker = sqlite3.connect(str(settings.decision_log), isolation_level=None)
                blocker.execute("BEGIN EXCLUSIVE")
                try:
                    with pytest.raises(grpc.RpcError) as refused:
                        client.decide(INTENT)
                    assert refused.value.code() != grpc.StatusCode.OK
                finally:
                    blocker.execute("ROLLBACK")
                    blocker.close()
        finally:
            server.stop()


def test_unreachable_central_records_stop_serve_with_one_line(workspace: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "serve", *config_args(workspace), "--engine", "wasm",
         "--listen", "127.0.0.1:0", "--records-url", "postgresql://pdp:secret-pw@127.0.0.1:1/records"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "error: --records-url: cannot connect to PostgreSQL" in out.stderr
    assert "Traceback" not in out.stderr and "secret-pw" not in out.stderr
