"""The harness's table: every row with its ratios to its floor (the same machine's cheapest way
to serve the call) and to its peer (Gatekeeper for the webhook), both measured in the same run."""

from __future__ import annotations

from typing import Any

from bench.harness import Results

FLOORS = ("a bare OPA", "f no-op", "f2 no-op", "g Gatekeeper")


def summarize(results: Results) -> None:
    """Print the table. Floor ratios: p50, then the floor's throughput divided by the row's (the
    floor at the same offered load, else at saturation). Peer ratios: the row's throughput
    divided by the peer's at the same load, then p99 divided by the peer's."""
    marks: dict[tuple[str, str], dict[str, Any]] = {}
    for row in results.rows:
        if row["path"].startswith(FLOORS):
            marks[(row["path"].split()[0], row["load"])] = row
    print(
        f"\n{'path':40} {'load':11} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'thru/s':>8} {'err':>5}  vs floor: p50, floor thru / thru | vs peer: thru, p99"
    )
    for row in results.rows:
        notes = []
        row["ratio_p50"] = row["ratio_throughput"] = None
        name = row.get("floor", "")
        floor = marks.get((name, row["load"])) or marks.get((name, "saturation"))
        if floor and name:
            row["ratio_p50"] = round(row["p50_ms"] / floor["p50_ms"], 2)
            note = f"{row['ratio_p50']:.2f}x {name}"
            if row["load"] == "saturation" and row["throughput"]:
                row["ratio_throughput"] = round(floor["throughput"] / row["throughput"], 2)
                note += f", {row['ratio_throughput']:.2f}x"
            notes.append(note)
        peer = marks.get((row.get("peer", ""), row["load"]))
        if peer and peer["throughput"] and peer["p99_ms"]:
            row["vs_peer_throughput"] = round(row["throughput"] / peer["throughput"], 2)
            row["vs_peer_p99"] = round(row["p99_ms"] / peer["p99_ms"], 2)
            notes.append(f"{row['vs_peer_throughput']:.2f}x, {row['vs_peer_p99']:.2f}x {row['peer']}")
        print(
            f"{row['path']:40} {row['load']:11} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} "
            f"{row['p99_ms']:8.2f} {row['throughput']:8.0f} {row['errors']:5}  {' | '.join(notes)}"
        )
    for judged in results.extra.get("webhook_targets", []):
        print(f"\n{judged['path']} against issue 16's targets:")
        for target, met in judged.items():
            if target != "path":
                print(f"  {'met   ' if met else 'missed'} {target}")
