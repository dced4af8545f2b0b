"""A replay report as a table (for people) or JSON (for CI and tools)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TextIO

from pdp.replay.compare import KINDS, Change, Report


def _codes(change: Change) -> str:
    added = sorted(set(change.candidate.reasons) - set(change.recorded.reasons))
    removed = sorted(set(change.recorded.reasons) - set(change.candidate.reasons))
    return " ".join([f"+{c}" for c in added] + [f"-{c}" for c in removed])


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def write_table(report: Report, out: TextIO, *, listed: int = 20) -> None:
    skipped = sum(report.skipped.values())
    out.write(
        f"candidate: {report.candidate} (revision {report.candidate_revision or '-'})\n"
        f"records: {report.selected} selected, {report.replayed} replayed, {skipped} skipped"
        + (f" ({', '.join(f'{k} {n}' for k, n in sorted(report.skipped.items()))})" if skipped else "")
        + (f" in {report.seconds:.1f} s" if report.seconds else "")
        + "\n"
    )
    out.write(
        f"changed: {report.changed}"
        + (": " + ", ".join(f"{kind} {report.counts[kind]}" for kind in KINDS) if report.changed else "")
        + "\n"
    )
    if not report.changed:
        return
    out.write("\n")
    rows = [["TENANT", "KIND", "REASON", *(k.upper() for k in KINDS)]]
    for (tenant, kind, reason), counts in sorted(report.groups.items()):
        rows.append([tenant, kind, reason, *(str(counts[k]) for k in KINDS)])
    _table(rows, out)
    shown = report.changes[:listed]
    out.write(f"\nchanged decisions ({len(shown)} of {report.changed} listed; --json for all):\n")
    rows = [["DECISION", "DECIDED AT", "TENANT", "KIND", "OUTCOME", "REASONS", "CONSTRAINTS"]]
    for change in shown:
        outcome = (
            f"{change.recorded.outcome} -> {change.candidate.outcome}"
            if change.recorded.outcome != change.candidate.outcome
            else change.candidate.outcome
        )
        rows.append(
            [
                change.decision_id,
                change.decided_at[:19],
                change.tenant,
                change.kind,
                outcome,
                _codes(change) or "-",
                "changed" if "constraints" in change.changes else "-",
            ]
        )
    _table(rows, out)


def write_json(report: Report, out: TextIO) -> None:
    json.dump(report.as_json(), out, indent=2, sort_keys=False)
    out.write("\n")


def parse_fail_on(value: str) -> list[str]:
    """`allow-to-deny,deny-to-allow,...` (or `any`): the change kinds that fail the command."""
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    if kinds == ["any"]:
        return list(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(
            f"--fail-on: unknown change kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)}, any)"
        )
    return kinds


def read_changes(lines: Iterable[str]) -> list[Change]:
    """Change entries written one JSON object per line (the shadow log)."""
    changes = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            changes.append(Change.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {n}: not a change entry: {exc}") from exc
    return changes
