"""Verifying a chained log against its checkpoints and a trusted key. Pure.

Each record is checked twice: against the chain (its hash covers its content and the previous
hash; the sequence has no gap) and against every checkpoint that holds its hash. An edit without a
re-chain fails the first check at the edited record; an edit, deletion or insertion followed by a
re-chain (with any key) passes it but fails the second at the first record that differs. Records a
checkpoint covers but the log lacks were deleted from its end (truncated or wiped). Checkpoints
that do not verify with the trusted key (a new key written into the state folder) are reported and
not used; two that disagree mean someone holding the signing key checkpointed a rewritten chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.checkpoints import Checkpoint, CheckpointError, claimed, claimed_log, decode

# Problems listed one by one before the rest are only counted.
_LISTED = 50


@dataclass(frozen=True)
class Problem:
    seq: int  # 0: about the log as a whole
    message: str
    subject: str = "record"  # what one record is called in a report
    whole: str = "log"  # what the log is called

    def __str__(self) -> str:
        return f"{self.subject} {self.seq}: {self.message}" if self.seq else f"{self.whole}: {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chain_end: int = 0
    checkpoints: int = 0
    checkpointed: int = 0  # the last record a checkpoint covers
    checkpointed_hash: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_altered(self) -> int | None:
        """The earliest record a problem names (deleted, edited, or where a rewrite starts)."""
        return min((p.seq for p in self.problems if p.seq), default=None)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [str(p) for p in self.problems],
            "notes": self.notes,
            "first_altered": self.first_altered,
            "chain_end": self.chain_end,
            "checkpoints": self.checkpoints,
            # The furthest checkpointed head: the log is anchored there.
            "anchor": {"seq": self.checkpointed, "hash": self.checkpointed_hash}
            if self.checkpoints
            else None,
        }


class _Expected:
    """The checkpointed hashes of each record, walked in sequence order."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        self._queue = sorted(checkpoints, key=lambda c: c.first)
        self._next = 0
        self._active: list[Checkpoint] = []

    def at(self, seq: int) -> list[Checkpoint]:
        while self._next < len(self._queue) and self._queue[self._next].first - 1 <= seq:
            self._active.append(self._queue[self._next])
            self._next += 1
        self._active = [c for c in self._active if c.last >= seq]
        return self._active


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}-{last}"


def _gaps(checkpoints: list[Checkpoint], upto: int) -> list[tuple[int, int]]:
    """Record ranges within 1..upto that no checkpoint holds one by one."""
    gaps, reached = [], 0
    for cp in sorted(checkpoints, key=lambda c: c.first):
        if cp.first > reached + 1 and reached < upto:
            gaps.append((reached + 1, min(cp.first - 1, upto)))
        reached = max(reached, cp.last)
    return gaps


def _load(
    entries: Iterable[bytes],
    trusted: Ed25519PublicKey,
    log: str,
    report: Report,
    problem: Callable[[int, str], None],
    torn: bool,
) -> list[Checkpoint]:
    """The checkpoints of `log` that verify with the trusted key; the others reported."""
    checkpoints, foreign, unreadable = [], 0, 0
    for i, line in enumerate(entries, 1):
        named = claimed_log(line)
        if named is None:
            unreadable += 1  # a write a crash cut short, and the next one after it on its line
            continue
        if named != log:
            foreign += 1  # a sink shared with another log (signed with its own key)
            continue
        try:
            checkpoints.append(decode(line, trusted))
        except CheckpointError as exc:
            problem(0, f"checkpoint {i} in the sink ({claimed(line)}): {exc}; not used (re-keyed?)")
    if torn:
        report.notes.append("the sink's last write was cut short (a crash while checkpointing): not used")
    if foreign:
        report.notes.append(f"{foreign} checkpoint(s) of other logs in the sink: not used")
    if unreadable:
        report.notes.append(
            f"{unreadable} line(s) in the sink are not checkpoints (cut short by a crash?): not used"
        )
    report.checkpoints = len(checkpoints)
    return checkpoints


def verify(
    entries: Iterable[bytes],
    rows: Iterable[Row],
    trusted: Ed25519PublicKey,
    *,
    log: str,
    subject: str = "record",
    whole: str = "log",
    torn: bool = False,
) -> Report:
    """The log (`rows`, in sequence order) against the checkpoints of `log` in a sink's `entries`.
    The entries are read completely before the first row: the log only grows and checkpoints follow
    commits, so no checkpoint read first can name a record the rows do not reach yet."""
    report = Report()

    def problem(seq: int, message: str) -> None:
        report.problems.append(Problem(seq, message, subject, whole))

    checkpoints = _load(entries, trusted, log, report, problem, torn)
    expected = _Expected(checkpoints)

    prev_seq, prev_hash = 0, GENESIS
    matched = 0  # the last record whose hash a checkpoint confirmed
    diverged: list[int] = []  # records whose hash differs from the checkpoints
    conflicting = False
    for seq, payload, stored_prev, digest in rows:
        if seq <= prev_seq:
            problem(seq, f"out of order: after record {prev_seq} (inserted or reordered?)")
        elif seq != prev_seq + 1:
            gone = _span(prev_seq + 1, seq - 1)
            problem(prev_seq + 1, f"missing: {gone} deleted (the sequence jumps from {prev_seq} to {seq})")
        elif stored_prev != prev_hash:
            problem(seq, "does not link to the record before it (deleted, inserted or reordered?)")
        if link(seq, stored_prev, payload) != digest:
            problem(seq, "content does not match its hash (edited?)")
        held = {cp.hash_at(seq): cp for cp in expected.at(seq)}
        if len(held) > 1 and not conflicting:
            conflicting = True
            a, b = list(held.values())[:2]
            problem(
                seq,
                f"two checkpoints disagree on it ({a.span} at {a.at}; {b.span} at {b.at}): a rewritten "
                "chain was checkpointed with the signing key",
            )
        if held and digest in held:
            matched = seq
        elif held:
            if not diverged:
                cp = held[next(iter(held))]
                if matched >= seq - 1:
                    problem(
                        seq,
                        f"differs from its checkpointed hash ({cp.span} at {cp.at}): altered, or the "
                        "log was rewritten and re-chained from here",
                    )
                else:
                    problem(
                        matched + 1,
                        f"the first altered record is one of {_span(matched + 1, seq)}: record {seq} "
                        f"differs from its checkpointed hash ({cp.span} at {cp.at}) and the records "
                        "before it were never checkpointed one by one",
                    )
            diverged.append(seq)
        prev_seq, prev_hash = max(prev_seq, seq), digest
    report.chain_end = prev_seq

    if len(diverged) > 1:
        report.notes.append(
            f"{len(diverged) - 1} later record(s) differ from their checkpointed hashes too (up to record "
            f"{diverged[-1]}): they chain from the first"
        )
    if checkpoints:
        furthest = max(checkpoints, key=lambda c: c.last)
        report.checkpointed, report.checkpointed_hash = furthest.last, furthest.head
        end = report.chain_end
        if furthest.last > end:
            problem(
                end + 1,
                f"missing: checkpoints cover records up to {furthest.last} but the {whole} ends at record "
                f"{end}: {_span(end + 1, furthest.last)} deleted from its end (truncated or wiped)",
            )
        elif end > furthest.last:
            report.notes.append(
                f"{end - furthest.last} record(s) after the last checkpoint (record {furthest.last}): "
                "committed since, or before a crash; checked against the chain only"
            )
        for first, last in _gaps(checkpoints, min(end, furthest.last)):
            report.notes.append(
                f"not checkpointed one by one: {_span(first, last)} (a writer stopped between commit and "
                "checkpoint); an alteration there is named with the next checkpointed record"
            )
    elif report.chain_end:
        problem(
            0,
            f"no checkpoints of the {whole} ({log!r}) in the sink: its {report.chain_end} records cannot be "
            "checked against anything outside the state folder",
        )
    report.problems.sort(key=lambda p: p.seq)
    if len(report.problems) > _LISTED:
        report.notes.append(f"{len(report.problems) - _LISTED} more problem(s) not listed")
        del report.problems[_LISTED:]
    return report


def verify_records(
    entries: Iterable[bytes],
    rows: Iterable[Row],
    trusted: Ed25519PublicKey,
    *,
    log: str,
    subject: str = "record",
    whole: str = "log",
    consecutive: bool = False,
) -> Report:
    """Records that need not be the whole chain (one tenant's, in an export): each record's own
    hash, the link between records whose seqs follow each other, and each checkpointed hash. With
    `consecutive` the records must run 1..n without a gap (a whole trail, checked without its end)."""
    report = Report()

    def problem(seq: int, message: str) -> None:
        report.problems.append(Problem(seq, message, subject, whole))

    expected = _Expected(_load(entries, trusted, log, report, problem, False))
    prev_seq, prev_hash = 0, GENESIS
    for seq, payload, stored_prev, digest in rows:
        if consecutive and seq != prev_seq + 1:
            problem(prev_seq + 1, f"missing: the sequence jumps from {prev_seq} to {seq}")
        elif seq == prev_seq + 1 and stored_prev != prev_hash:
            problem(seq, "does not link to the record before it (deleted, inserted or reordered?)")
        if link(seq, stored_prev, payload) != digest:
            problem(seq, "content does not match its hash (edited?)")
        held = {cp.hash_at(seq): cp for cp in expected.at(seq)}
        if held and digest not in held:
            cp = next(iter(held.values()))
            problem(seq, f"differs from its checkpointed hash ({cp.span} at {cp.at}): altered or replaced")
        prev_seq, prev_hash = seq, digest
    report.chain_end = prev_seq
    report.problems.sort(key=lambda p: p.seq)
    return report
