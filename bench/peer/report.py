"""The fair run's JSON (`python -m bench.peer --out F`) as the Markdown table docs/performance.md
opens with: one line per repeat, protocol and server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.peer.fair import GATEKEEPER, row_of


def _cell(
    mine: list[dict[str, Any]],
    peer: list[dict[str, Any]] | None,
    load: str,
    body: str,
    field: str,
    digits: int,
) -> str:
    """A figure, with its ratio to Gatekeeper's at the same load and body unless it is Gatekeeper's."""
    value = row_of(mine, load=load, body=body)[field]
    ratio = "" if peer is None else f" ({value / row_of(peer, load=load, body=body)[field]:.2f}x)"
    return f"{value:,.{digits}f}{ratio}"


def table(doc: dict[str, Any]) -> str:
    rows, targets = doc["rows"], doc["targets"]
    header = [
        "repeat",
        "protocol asked (chosen)",
        "server",
        "capacity allowed /s (x GK)",
        "capacity denied /s (x GK)",
        "p99 at 500/s allowed ms (x GK)",
        "p99 at 500/s denied ms (x GK)",
        "2x overload: served /s (% of capacity), refused, reset",
        "steal % (max of its points)",
        "targets met",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    keys = sorted(
        {(r["repeat"], r["protocol"], r["server"]) for r in rows},
        key=lambda k: (k[0], k[1], k[2] != GATEKEEPER, k[2]),
    )
    for repeat, protocol, server in keys:
        mine = [r for r in rows if (r["repeat"], r["protocol"], r["server"]) == (repeat, protocol, server)]

        theirs = [
            r for r in rows if (r["repeat"], r["protocol"], r["server"]) == (repeat, protocol, GATEKEEPER)
        ]
        against = None if server == GATEKEEPER else theirs
        capacity = row_of(mine, load="saturation", body="allowed")["throughput"]
        over = row_of(mine, load="overload 2x", body="allowed")
        overload = (
            f"{over['throughput']:,.0f} ({100 * over['throughput'] / capacity:.0f}%), "
            f"{over['refused']:,}, {over['connection_errors']:,}"
        )
        steal = max(max(r["steal_attempts"]) for r in mine)
        judged = next(
            (t for t in targets if (t["repeat"], t["protocol"], t["config"]) == (repeat, protocol, server)),
            None,
        )
        met = "" if judged is None else f"{sum(v for v in judged.values() if isinstance(v, bool))}/6"
        cells = [
            str(repeat),
            f"{protocol} ({mine[0]['negotiated']})",
            server,
            _cell(mine, against, "saturation", "allowed", "throughput", 0),
            _cell(mine, against, "saturation", "denied", "throughput", 0),
            _cell(mine, against, "500/s", "allowed", "p99_ms", 1),
            _cell(mine, against, "500/s", "denied", "p99_ms", 1),
            overload,
            f"{steal:.1f}",
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text())))
