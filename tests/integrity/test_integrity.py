"""The shared record-integrity pieces on their own: sinks read backwards, a sink shared by two logs
with two keys, and the verifier on a chain built here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.checkpoints import Checkpointer
from pdp.integrity.sinks import Sink, open_sink
from pdp.integrity.verify import verify


class Chain:
    """A log held in memory (a ChainSource)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.marked = False

    def append(self, n: int) -> tuple[int, str, list[str]]:
        first = len(self.rows) + 1
        before = self.rows[-1][3] if self.rows else GENESIS
        prev, hashes = before, []
        for seq in range(first, first + n):
            body = f"record {seq}".encode()
            digest = link(seq, prev, body)
            self.rows.append((seq, body, prev, digest))
            hashes.append(digest)
            prev = digest
        return first, before, hashes

    def hash_at(self, seq: int) -> str | None:
        return GENESIS if seq == 0 else (self.rows[seq - 1][3] if seq <= len(self.rows) else None)

    def rows_after(self, seq: int) -> Iterator[Row]:
        return iter(self.rows[seq:])

    def was_checkpointed(self) -> bool:
        return self.marked

    def mark_checkpointed(self, sink: Sink) -> None:
        self.marked = True


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_two_logs_with_two_keys_share_a_sink(tmp_path: Path, kind: str) -> None:
    spec = f"file:{tmp_path / 'shared.jsonl'}" if kind == "file" else f"dir:{tmp_path / 'shared'}"
    logs = {name: (Chain(), Ed25519PrivateKey.generate()) for name in ("decisions", "audit")}
    writers = {name: Checkpointer(name, open_sink(spec), key) for name, (_, key) in logs.items()}
    for name, writer in writers.items():
        writer.start(logs[name][0])
    for i in range(300):  # interleaved, and past one read chunk of the file
        for name in ("decisions", "audit") if i % 3 else ("decisions",):
            writers[name].add(*logs[name][0].append(2))
    for name, (chain, key) in logs.items():
        again = Checkpointer(name, open_sink(spec), key)
        again.start(chain)  # finds its own latest checkpoint, the other log's do not disturb it
        assert not again.frozen and again.checkpointed == len(chain.rows), again.frozen
        report = verify(open_sink(spec).entries(), chain.rows, key.public_key(), log=name)
        assert report.ok and report.checkpointed == len(chain.rows), report.as_json()
        assert report.notes == [
            f"{300 if name == 'audit' else 200} checkpoint(s) of other logs in the sink: not used"
        ]


def test_an_append_file_reads_back_across_chunks_and_a_torn_tail(tmp_path: Path) -> None:
    sink = open_sink(f"file:{tmp_path / 'cps.jsonl'}")
    lines = [(b'{"n":%d,"pad":"' % i) + b"x" * (i % 700) + b'"}' for i in range(400)]
    for i, line in enumerate(lines):
        sink.put(str(i), line)
    with (tmp_path / "cps.jsonl").open("ab") as fh:
        fh.write(b'{"cut sh')
    assert list(sink.entries()) == lines
    assert list(sink.backwards()) == lines[::-1]
    assert sink.torn()


def test_a_gap_never_checkpointed_bounds_the_first_altered_record(tmp_path: Path) -> None:
    """A writer that died between commit and checkpoint while another went on: the records it
    committed are covered only by the next checkpoint's link, and the report says so."""
    chain, key = Chain(), Ed25519PrivateKey.generate()
    sink = open_sink(f"file:{tmp_path / 'cps.jsonl'}")
    writer = Checkpointer("decisions", sink, key)
    writer.start(chain)
    writer.add(*chain.append(5))
    chain.append(4)  # records 6-9: committed by a writer that died before checkpointing them
    writer.add(*chain.append(3))
    seq, _, prev, _ = chain.rows[6]  # record 7 edited, then everything re-chained
    chain.rows[6] = (seq, b"forged", prev, link(seq, prev, b"forged"))
    for i in range(7, len(chain.rows)):
        s, body, _, _ = chain.rows[i]
        chain.rows[i] = (s, body, chain.rows[i - 1][3], link(s, chain.rows[i - 1][3], body))
    report = verify(sink.entries(), chain.rows, key.public_key(), log="decisions")
    assert report.first_altered == 6, report.as_json()
    assert str(report.problems[0]).startswith("record 6: the first altered record is one of records 6-9")
