"""Central decision records on a real PostgreSQL: one chain per writer in one table, queried across
writers, append-only, verified per writer against the checkpoints in a sink outside the state
folder. Runs when PDP_TEST_POSTGRES_URL names a role that may create databases (CI starts one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.translate import decision_from_proto, intent_to_proto
from pdp.decision import Outcome
from pdp.integrity.sinks import open_sink
from pdp.records.log import DecisionLog, Integrity
from pdp.records.postgres import dsn
from pdp.records.read import read_records, verify_central
from tests.api.test_workers import INTENT, start
from tests.postgres import URL, requires_postgres
from tests.records.test_records import ROOT, T0, _decision

pytestmark = requires_postgres


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


def test_two_writers_one_table_queried_across_writers_and_verified(pg_url: str, tmp_path: Path) -> None:
    replicas = Replicas(pg_url, tmp_path)
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
    window = read_records(pg_url, since=T0 + timedelta(minutes=7), until=T0 + timedelta(minutes=9))
    assert [r.decision_id for r in window] == ["d7", "d8"]
    assert [r.decision_id for r in read_records(pg_url, writer="pdp-2", tenant="globex")] == [
        "d7",
        "d9",
    ]

    reports = replicas.verify()
    assert sorted(reports) == ["pdp", "pdp-2"] and all(r.ok for r in reports.values())  # type: ignore[attr-defined]
    out = replicas.cli_verify()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: 2 of 2 writers verify" in out.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "records", "--database-url", pg_url, "--tenant", "globex"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [line.count('"writer"') for line in cli.stdout.splitlines()] == [1] * 4


def test_a_writer_restarted_continues_its_chain(pg_url: str, tmp_path: Path) -> None:
    replicas = Replicas(pg_url, tmp_path)
    first = replicas.open("a")
    for n in range(3):
        first.append(_decision(n, "acme-eu", T0), "sha256:x")
    first.close()
    again = replicas.open("a")
    assert again.writer == "pdp"  # the name is free again: the same chain goes on
    again.append(_decision(3, "acme-eu", T0), "sha256:x")
    again.close()
    with psycopg.connect(dsn(pg_url)) as conn:
        seqs = conn.execute(
            "SELECT seq FROM pdp_decision_records WHERE writer = 'pdp' ORDER BY seq"
        ).fetchall()
    assert [s[0] for s in seqs] == [1, 2, 3, 4]
    assert replicas.verify()["pdp"].ok  # type: ignore[attr-defined]


def test_records_are_append_only(pg_url: str, tmp_path: Path) -> None:
    log = Replicas(pg_url, tmp_path).open("a")
    log.append(_decision(1, "acme-eu", T0), "sha256:x")
    log.close()
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        for sql in (
            "UPDATE pdp_decision_records SET outcome = 'DENY'",
            "DELETE FROM pdp_decision_records",
            "TRUNCATE pdp_decision_records",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM pdp_decision_records").fetchone() == (1,)


def test_an_edit_or_a_wipe_of_one_writer_is_named_and_the_others_still_verify(
    pg_url: str, tmp_path: Path
) -> None:
    replicas = Replicas(pg_url, tmp_path)
    a, b, c = replicas.open("a"), replicas.open("b"), replicas.open("c")
    for n in range(12):
        [a, b, c][n % 3].append(_decision(n, "acme-eu", T0 + timedelta(seconds=n), Outcome.DENY), "sha256:x")
    for log in (a, b, c):
        log.close()
    _tamper(
        pg_url,
        "UPDATE pdp_decision_records SET outcome = 'ALLOW' WHERE writer = 'pdp-2' AND seq = 3",
    )
    _tamper(pg_url, "DELETE FROM pdp_decision_records WHERE writer = 'pdp-3'")
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


def _load(addr: str, acked: list[str], stop: threading.Event) -> None:
    """Decisions on fresh connections (the kernel spreads connections over the processes);
    `acked` gets the id of each decision answered."""
    request = pb.DecideRequest(intent=intent_to_proto(INTENT))
    while not stop.is_set():
        # A channel of its own (gRPC shares connections between channels to one address by default).
        channel = grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        try:
            for _ in range(10):
                acked.append(decision_from_proto(stub.Decide(request, timeout=5).decision)["decision_id"])
        except grpc.RpcError:
            continue  # the process serving this connection was killed: not acknowledged
        finally:
            channel.close()


def test_no_acknowledged_decision_lost_when_a_pdp_process_is_killed_mid_batch(
    pg_url: str, workspace: Path
) -> None:
    """`serve --workers 2 --records-durable`: a decision is answered only once its record is
    committed. A worker is killed (-9) under load from four clients; every answered decision is
    in the central records afterwards, and every writer's chain verifies."""
    replicas = Replicas(pg_url, workspace)
    running = start(
        workspace, "--engine", "wasm", "--workers", "2", "--records-url", pg_url, "--records-durable",
        "--records-checkpoints", replicas.sink, "--records-signing-key", str(replicas.key),
    )  # fmt: skip
    acked: list[str] = []
    stop = threading.Event()
    clients = [threading.Thread(target=_load, args=(running.addr, acked, stop)) for _ in range(4)]
    try:
        for t in clients:
            t.start()
        deadline = time.monotonic() + 120

        def writers() -> set[str]:
            return {r.writer for r in read_records(pg_url, limit=1_000_000)}

        # Until the worker (slower to start: it compiles the wasm bundle) answers too.
        while (len(acked) < 200 or len(writers()) < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        before_kill = len(acked)
        os.kill(running.workers[0], signal.SIGKILL)
        while len(acked) < before_kill + 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        # The worker restarted by serve takes the killed one's free writer name and checkpoints
        # what it committed after its last checkpoint (the crash window): then every chain verifies.
        while not all(r.ok for r in replicas.verify().values()) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.5)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=30)
        running.proc.terminate()
        running.proc.wait(timeout=30)
    assert before_kill >= 200 and len(acked) >= before_kill + 200, (before_kill, len(acked))
    recorded = {r.decision_id: r.writer for r in read_records(pg_url, limit=1_000_000)}
    lost = [d for d in acked if d not in recorded]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged decisions have no record"
    assert len(set(recorded.values())) >= 2  # both processes wrote
    out = replicas.cli_verify()
    assert out.returncode == 0, out.stdout + out.stderr


_KILLED_WRITER = """
import sys
from pathlib import Path
from datetime import UTC, datetime
from pdp.decision import Decision, Outcome
from pdp.records.log import DecisionLog, Integrity
url, state, sink, key = sys.argv[1:5]
log = DecisionLog(Path(state) / "decisions.sqlite", Integrity(
    url=url, writer="gone", checkpoints=sink, signing_key=Path(key), checkpoint_seconds=3600.0,
    durable=True))
n = 0
while True:  # until killed
    n += 1
    log.append(Decision(outcome=Outcome.ALLOW, reasons=(), bundle_revision="r", decision_id=f"k{n}",
        decided_at=datetime.now(UTC), evaluation_ms=0.1, kind="deploy_model", tenant="acme-eu"), "sha256:x")
    print(f"k{n}", flush=True)  # acknowledged: its record is committed
"""


def test_a_writer_killed_before_its_checkpoint_is_checkpointed_by_the_next_pdp(
    pg_url: str, tmp_path: Path
) -> None:
    """Durable mode: every decision the killed process acknowledged is recorded; the records it
    committed but never checkpointed (its crash window) are checkpointed by the next PDP process
    to start, under the killed writer's name, so its chain verifies like the others."""
    replicas = Replicas(pg_url, tmp_path)
    replicas.open("a").close()  # the key and the schema
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, pg_url, str(tmp_path / "gone"), replicas.sink,
         str(replicas.key)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    acked = [proc.stdout.readline().strip() for _ in range(300)]
    proc.kill()
    proc.wait(timeout=10)
    acked += [line.strip() for line in proc.stdout]  # acknowledged just before the kill
    recorded = {r.decision_id for r in read_records(pg_url, writer="gone", limit=1_000_000)}
    assert set(acked) <= recorded and len(acked) >= 300
    before = replicas.verify()["gone"]
    assert not before.ok and "no checkpoints" in str(before.problems[0])  # type: ignore[attr-defined]

    replicas.open("b", writer="other").close()  # any PDP starting: the orphaned chain is checkpointed
    after = replicas.verify()["gone"]
    assert after.ok and after.checkpointed == len(recorded), after.as_json()  # type: ignore[attr-defined]


def test_a_writer_whose_session_is_cut_reconnects_under_its_name_without_duplicates(
    pg_url: str, tmp_path: Path
) -> None:
    """The database ends the writer's session (a failover, an admin): the next write reconnects
    under the same writer name and the chain goes on; a batch whose commit may have happened
    before the cut is not stored twice."""
    replicas = Replicas(pg_url, tmp_path)
    log = replicas.open("a")
    log.append(_decision(1, "acme-eu", T0), "sha256:x")
    log.flush()
    with psycopg.connect(dsn(pg_url), autocommit=True) as admin:
        cut = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert cut and all(r[0] for r in cut)
    log.append(_decision(2, "acme-eu", T0), "sha256:x")
    # On the cut session the batch stays queued, its outcome taken as unknown (or the writer
    # thread met the cut first and the batch went in on a new session).
    with contextlib.suppress(psycopg.OperationalError):
        log.flush()
    with log._lock:  # a commit that happened but whose answer was lost: d3 stored, d3 still queued
        store = log._store
        store.commit([("d3", *_row_tail())], [])  # type: ignore[attr-defined]
        store._uncertain = True  # type: ignore[attr-defined]
        log.append(_decision(3, "acme-eu", T0), "sha256:x")
    log.close()
    assert log.writer == "pdp"
    ids = [r.decision_id for r in read_records(pg_url)]
    assert sorted(ids) == ["d1", "d2", "d3"]
    assert replicas.verify()["pdp"].ok  # type: ignore[attr-defined]


def _row_tail() -> tuple[object, ...]:
    """The stored columns after decision_id of _decision(3, 'acme-eu', T0), asked in process (no
    principal)."""
    from pdp.records.model import timestamp

    return (timestamp(T0), "acme-eu", "deploy_model", "ALLOW", "[]", "rev1", "sha256:x", 0.5, "{}", None)


def test_central_records_keep_intents_with_retention_and_verify_them(pg_url: str, tmp_path: Path) -> None:
    """Kept intents in PostgreSQL: stored beside each writer's records, a too-large one by its
    size only, retention drops the oldest beyond the count, an edited one is named by verify."""
    from pdp.decision import canonical_intent, digest_of
    from pdp.records.intents import IntentRetention

    replicas = Replicas(pg_url, tmp_path)
    retention = IntentRetention(max_bytes=300, max_count=0)  # the count is applied below, once
    a, b = replicas.open("a", intents=retention), replicas.open("b", intents=retention)
    for n in range(6):
        intent = {"kind": "deploy_model", "tenant": "acme-eu", "n": n, "pad": "x" * (400 if n == 5 else 0)}
        text = canonical_intent(intent)
        decision = _decision(n, "acme-eu", datetime.now(UTC))
        writer = a if n % 2 else b
        writer.append(decision, digest_of(text), text)
        writer.flush()  # commit order is what "newest" means to the count limit
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        kept = dict(
            conn.execute("SELECT decision_id, intent IS NOT NULL FROM pdp_decision_intents").fetchall()
        )
    assert kept == {f"d{n}": n != 5 for n in range(6)}
    # The newest three stay, whichever writer wrote them.
    assert a._store.prune_intents(IntentRetention(max_count=3)) == 3
    a.close()
    b.close()
    with psycopg.connect(dsn(pg_url), autocommit=True) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT decision_id FROM pdp_decision_intents")) == [
            "d3",
            "d4",
            "d5",
        ]
        conn.execute(
            "UPDATE pdp_decision_intents SET intent = replace(intent, 'acme-eu', 'globex') "
            "WHERE decision_id = 'd4'"
        )
    reports = replicas.verify()
    assert [str(p) for p in reports["pdp"].problems + reports["pdp-2"].problems] == [  # type: ignore[attr-defined]
        "decision record 3: its kept intent (decision d4) does not match the record's input_digest (edited?)"
    ]
    assert len(read_records(pg_url)) == 6  # records are never dropped by retention
