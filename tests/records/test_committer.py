"""A server's local decision log committed by a child process (pdp/records/committer.py): every
record written once, chained and checkpointed as before, through concurrent appends, a child
killed between commits and a child that died after committing but before answering."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from pdp.api.client import PdpClient
from pdp.integrity import signing
from pdp.integrity.chain import GENESIS, link
from pdp.integrity.sinks import open_sink
from pdp.records.committer import CommitFailed, ProcessCommittedStore
from pdp.records.log import SIGNING_KEY, DecisionLog, Integrity
from pdp.records.model import payload
from pdp.records.read import read_records, verify_log
from tests.api.test_workers import INTENT, alive, children_of, start
from tests.records.test_records import T0, _decision


def _open(state: Path, sink: str) -> DecisionLog:
    return DecisionLog(
        state / "decisions.sqlite", Integrity(checkpoints=sink, checkpoint_seconds=0.0, commit_process=True)
    )


def _verify(state: Path, sink: str) -> list[str]:
    trusted = signing.load_key(state / SIGNING_KEY).public_key()
    report = verify_log(state / "decisions.sqlite", open_sink(sink), trusted)
    return [str(p) for p in report.problems]


def test_concurrent_appends_are_committed_by_the_child_once_each_and_verify(tmp_path: Path) -> None:
    state, sink = tmp_path / "state", f"file:{tmp_path / 'audit' / 'decisions.jsonl'}"
    log = _open(state, sink)
    store = log._store
    assert isinstance(store, ProcessCommittedStore)
    child = store.child_pid
    assert child is not None and child != os.getpid()

    def append(worker: int) -> None:
        for i in range(100):
            n = worker * 1000 + i
            log.append(_decision(n, f"tenant-{n % 3}", T0 + timedelta(milliseconds=n)), f"sha256:{n}")

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()

    ids = [r.decision_id for r in read_records(state / "decisions.sqlite")]
    assert sorted(ids) == sorted(f"d{w * 1000 + i}" for w in range(4) for i in range(100))
    assert _verify(state, sink) == []  # chained, and every commit checkpointed
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the committer outlived its log"


def test_a_killed_committer_is_started_again_and_nothing_is_lost(tmp_path: Path) -> None:
    state, sink = tmp_path / "state", f"file:{tmp_path / 'audit' / 'decisions.jsonl'}"
    log = _open(state, sink)
    store = log._store
    assert isinstance(store, ProcessCommittedStore)
    for n in range(10):
        log.append(_decision(n, "acme-eu", T0), f"sha256:{n}")
    log.flush()
    first_child = store.child_pid
    assert first_child is not None
    os.kill(first_child, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while store._child is not None and store._child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for n in range(10, 20):
        log.append(_decision(n, "acme-eu", T0), f"sha256:{n}")
    log.flush()
    assert store.child_pid not in (None, first_child)
    log.close()
    assert [r.decision_id for r in read_records(state / "decisions.sqlite")] == [f"d{n}" for n in range(20)]
    assert _verify(state, sink) == []


# A committer that commits its first batch and dies before answering, once (a marker file says it
# has): what a crash, an OOM kill or a power cut between COMMIT and the answer leaves.
_DIES_AFTER_COMMIT = """
import os, sys
from pathlib import Path
from pdp.records import committer

marker = Path(sys.argv[1])


class DiesBeforeTheFirstAnswer:
    def __init__(self, out):
        self.out, self.answered = out, 0

    def write(self, data):
        if self.answered == 1 and not marker.exists():  # the one answer so far opened the log
            marker.write_text("died")
            os._exit(9)
        return self.out.write(data)

    def flush(self):
        self.answered += 1
        self.out.flush()


committer.serve(sys.stdin.buffer, DiesBeforeTheFirstAnswer(sys.stdout.buffer))
"""


def _rows(first: int, count: int) -> list[tuple[object, ...]]:
    at = T0.isoformat(timespec="microseconds")
    return [
        (f"d{n}", at, "acme-eu", "deploy_model", "ALLOW", "[]", "rev1", f"sha256:{n}", 0.5, None, None)
        for n in range(first, first + count)
    ]


def test_a_batch_committed_before_its_answer_was_lost_is_written_once(tmp_path: Path) -> None:
    script = tmp_path / "dies_after_commit.py"
    script.write_text(_DIES_AFTER_COMMIT)
    path = tmp_path / "decisions.sqlite"
    store = ProcessCommittedStore(path, command=[sys.executable, str(script), str(tmp_path / "died")])
    try:
        with pytest.raises(CommitFailed, match="committer process ended"):
            store.commit(_rows(0, 5), [])
        # The log keeps the unanswered batch and sends it again with what came since.
        first, before, hashes = store.commit(_rows(0, 8), [])
    finally:
        store.close()
    db = sqlite3.connect(path)
    stored = db.execute("SELECT seq, decision_id, prev_hash, hash FROM decisions ORDER BY seq").fetchall()
    db.close()
    assert [r[1] for r in stored] == [f"d{n}" for n in range(8)]  # d0-d4 once, then d5-d7
    # The answer covers what this commit wrote (the checkpoints' input), continuing the chain.
    assert (first, before) == (6, stored[4][3])
    assert hashes == [r[3] for r in stored[5:]]
    prev = GENESIS
    for (seq, _, stored_prev, digest), row in zip(stored, _rows(0, 8), strict=True):
        assert stored_prev == prev and digest == link(seq, prev, payload(row))
        prev = digest


def test_a_committer_that_cannot_open_the_log_fails_the_log_at_once(tmp_path: Path) -> None:
    """A path the child cannot open (a folder where the file should be) is an error when the log
    is opened, naming the log, not at the first decision."""
    path = tmp_path / "decisions.sqlite"
    script = tmp_path / "other_path.py"
    script.write_text(
        "import sys, pickle\nfrom pdp.records import committer\n"
        "pickle.load(sys.stdin.buffer)\n"
        f"committer.serve(__import__('io').BytesIO(pickle.dumps({str(tmp_path)!r})), sys.stdout.buffer)\n"
    )
    with pytest.raises(CommitFailed, match="did not open it"):
        ProcessCommittedStore(path, command=[sys.executable, str(script)])


def _committers_of(parent: int) -> list[int]:
    return [pid for pid, command in children_of(parent) if b"pdp.records.committer" in command]


def test_pdp_serve_commits_its_log_by_a_child_that_ends_with_it(workspace: Path) -> None:
    """`pdp serve` (a server, unlike `pdp decide`) opens its log with a committer; the decisions
    it answers are in the file, chained, once it has stopped, and the committer stopped with it."""
    served = start(workspace, "--engine", "wasm")
    try:
        (committer,) = _committers_of(served.proc.pid)
        with PdpClient(served.addr, timeout=20) as client:
            outcomes = [client.decide(INTENT)["outcome"] for _ in range(5)]
    finally:
        served.proc.terminate()
        served.proc.wait(timeout=30)
    assert outcomes == ["ALLOW"] * 5
    records = read_records(workspace / "state" / "decisions.sqlite")
    assert [r.outcome for r in records][-5:] == ["ALLOW"] * 5
    deadline = time.monotonic() + 10
    while alive(committer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(committer), "the committer outlived pdp serve"
