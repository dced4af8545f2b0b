"""Central decision records on a real PostgreSQL: one chain per writer in one table, queried across
writers, append-only, verified per writer against the checkpoints in a sink outside the state
folder. Runs when PDP_TEST_POSTGRES_URL names a role that may create databases (CI starts one)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from pdp.decision import Outcome
from pdp.integrity.sinks import open_sink
from pdp.records import DecisionLog, Integrity, read_records, verify_central
from pdp.records_postgres import dsn

from .test_records import ROOT, T0, _decision

URL = os.environ.get("PDP_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(
    not URL, reason="PDP_TEST_POSTGRES_URL is not set (postgresql://user:pw@host/db of a role with CREATEDB)"
)


@pytest.fixture()
def database() -> Iterator[str]:
    name = f"records_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn(URL), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(dsn(URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Replicas:
    """PDP processes' decision logs on one database, each with its own state folder, sharing one
    signing key and one sink held outside their state folders."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp = url, tmp
        self.sink = f"file:{tmp / 'audit-host' / 'decisions.jsonl'}"
        self.key = tmp / "secret" / "records-signing-key.pem"

    def open(self, replica: str, writer: str = "pdp", **changes: object) -> DecisionLog:
        settings: dict[str, object] = {
            "url": self.url, "writer": writer, "checkpoints": self.sink, "signing_key": self.key,
            "checkpoint_seconds": 0.0, **changes,
        }  # fmt: skip
        return DecisionLog(self.tmp / replica / "decisions.sqlite", Integrity(**settings))  # type: ignore[arg-type]

    def verify(self) -> dict[str, object]:
        from pdp.integrity import signing

        key = signing.load_key(self.key).public_key()
        return {w: r for w, r in verify_central(self.url, open_sink(self.sink), key).items()}

    def cli_verify(self) -> subprocess.CompletedProcess[str]:
        trusted = self.tmp / "audit-host" / "trusted.pem"
        if not trusted.exists():
            out = subprocess.run(
                [sys.executable, "-m", "pdp.cli", "records", "public-key", "--signing-key", str(self.key)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            trusted.write_text(out.stdout)
        return subprocess.run(
            [sys.executable, "-m", "pdp.cli", "records", "verify", "--state", str(self.tmp / "a"),
             "--records-url", self.url, "--checkpoints", self.sink, "--trusted-key", str(trusted)],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip


def _tamper(url: str, sql: str) -> None:
    """What the table's owner can do: switch the append-only triggers off around an edit."""
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        conn.execute("ALTER TABLE pdp_decision_records DISABLE TRIGGER USER")
        conn.execute(sql)
        conn.execute("ALTER TABLE pdp_decision_records ENABLE TRIGGER USER")


def test_two_writers_one_table_queried_across_writers_and_verified(database: str, tmp_path: Path) -> None:
    replicas = Replicas(database, tmp_path)
    a, b = replicas.open("a"), replicas.open("b")
    assert (a.writer, b.writer) == ("pdp", "pdp-2")  # the name in use: the next free one
    for n in range(10):
        log = a if n % 2 == 0 else b
        log.append(_decision(n, "acme-eu" if n < 6 else "globex", T0 + timedelta(minutes=n)), f"sha256:{n}")
    b.flush()  # another replica's records show once committed (within ~20 ms by its writer thread)
    seen_by_a = a.query(tenant="acme-eu")  # across writers, from either replica
    a.close()
    b.close()
    assert [r.decision_id for r in seen_by_a] == [f"d{n}" for n in range(6)]
    assert [r.writer for r in seen_by_a] == ["pdp", "pdp-2"] * 3
    window = read_records(database, since=T0 + timedelta(minutes=7), until=T0 + timedelta(minutes=9))
    assert [r.decision_id for r in window] == ["d7", "d8"]
    assert [r.decision_id for r in read_records(database, writer="pdp-2", tenant="globex")] == ["d7", "d9"]

    reports = replicas.verify()
    assert sorted(reports) == ["pdp", "pdp-2"] and all(r.ok for r in reports.values())  # type: ignore[attr-defined]
    out = replicas.cli_verify()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: 2 of 2 writers verify" in out.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "records", "--database-url", database, "--tenant", "globex"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [line.count('"writer"') for line in cli.stdout.splitlines()] == [1] * 4


def test_a_writer_restarted_continues_its_chain(database: str, tmp_path: Path) -> None:
    replicas = Replicas(database, tmp_path)
    first = replicas.open("a")
    for n in range(3):
        first.append(_decision(n, "acme-eu", T0), "sha256:x")
    first.close()
    again = replicas.open("a")
    assert again.writer == "pdp"  # the name is free again: the same chain goes on
    again.append(_decision(3, "acme-eu", T0), "sha256:x")
    again.close()
    with psycopg.connect(dsn(database)) as conn:
        seqs = conn.execute(
            "SELECT seq FROM pdp_decision_records WHERE writer = 'pdp' ORDER BY seq"
        ).fetchall()
    assert [s[0] for s in seqs] == [1, 2, 3, 4]
    assert replicas.verify()["pdp"].ok  # type: ignore[attr-defined]


def test_records_are_append_only(database: str, tmp_path: Path) -> None:
    log = Replicas(database, tmp_path).open("a")
    log.append(_decision(1, "acme-eu", T0), "sha256:x")
    log.close()
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        for sql in (
            "UPDATE pdp_decision_records SET outcome = 'DENY'",
            "DELETE FROM pdp_decision_records",
            "TRUNCATE pdp_decision_records",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM pdp_decision_records").fetchone() == (1,)


def test_an_edit_or_a_wipe_of_one_writer_is_named_and_the_others_still_verify(
    database: str, tmp_path: Path
) -> None:
    replicas = Replicas(database, tmp_path)
    a, b, c = replicas.open("a"), replicas.open("b"), replicas.open("c")
    for n in range(12):
        [a, b, c][n % 3].append(_decision(n, "acme-eu", T0 + timedelta(seconds=n), Outcome.DENY), "sha256:x")
    for log in (a, b, c):
        log.close()
    _tamper(database, "UPDATE pdp_decision_records SET outcome = 'ALLOW' WHERE writer = 'pdp-2' AND seq = 3")
    _tamper(database, "DELETE FROM pdp_decision_records WHERE writer = 'pdp-3'")
    reports = replicas.verify()
    assert reports["pdp"].ok  # type: ignore[attr-defined]
    assert [str(p) for p in reports["pdp-2"].problems] == [  # type: ignore[attr-defined]
        "decision record 3: content does not match its hash (edited?)"
    ]
    wiped = [str(p) for p in reports["pdp-3"].problems]  # type: ignore[attr-defined]
    assert len(wiped) == 1 and wiped[0].startswith(
        "decision record 1: missing: checkpoints cover records up to 4"
    )
    out = replicas.cli_verify()
    assert out.returncode == 1
    assert "FAIL: 1 of 3 writers verify; failing: pdp-2, pdp-3" in out.stdout, out.stdout


def test_a_bad_records_url_or_writer_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--records-url 'db\.example/records': expected postgresql://"):
        DecisionLog(tmp_path / "d.sqlite", Integrity(url="mysql://u:secret@db.example/records"))
    with pytest.raises(ValueError, match="--records-writer 'a b'"):
        DecisionLog(tmp_path / "d.sqlite", Integrity(url=URL, writer="a b"))
