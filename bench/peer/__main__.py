"""The webhook against Gatekeeper, fairly (issue 32), on its own:

    .venv/bin/python -m bench.peer [--repeats 3] [--duration 5] [--configs sidecar wasm wasm-2p] [--out F]

Starts Gatekeeper v3.23.1 out of cluster against the e2e control plane (bench/gatekeeper.py:
tenant namespaces, template and Constraint in place, measured only once it denies by policy) and
each webhook configuration of the project; then, in every repeat and over HTTP/2 and HTTP/1.1 in
turn, sends both bodies to every server (the run stops if a verdict differs or is an error) and
measures each server at every load of `fair.LOADS`. Needs `scripts/build-gatekeeper`,
`scripts/build-kube` and `scripts/bench`'s vegeta. Prints each point and the targets per repeat;
JSON with every row (CPU, steal, the protocol each server negotiated) with --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import BIN, ROOT, Sampler, descendants
from bench.peer import fair
from bench.peer.alpn import negotiated
from bench.peer.verdicts import agree, bench_bodies

CONFIGS = {
    # name: (engine, webhook processes)
    "sidecar": ("opa", 1),
    "wasm": ("wasm", 1),
    "wasm-2p": ("wasm", 2),
}


@contextlib.contextmanager
def servers(work: Path, configs: list[str]) -> Iterator[dict[str, tuple[str, Any]]]:
    """name -> (URL, a function giving the pids to account) for Gatekeeper and each config."""
    from bench.gatekeeper import running_peer
    from bench.webhook import start
    from pdp.net.certs import issue_server_cert, make_ca
    from tests.ports import free_port

    examples = work / "examples"
    tls = issue_server_cert(make_ca(work / "pki"), work / "pki" / "serving", ["127.0.0.1"])
    with contextlib.ExitStack() as stack:
        peer = stack.enter_context(
            running_peer(work / "gatekeeper", examples / "tenants", examples / "fleet.yaml")
        )
        found: dict[str, tuple[str, Any]] = {fair.GATEKEEPER: (peer.url, lambda: {"gatekeeper": peer.pid})}
        for name in configs:
            engine, processes = CONFIGS[name]
            port = free_port()
            server = start(name, ROOT, work, port, processes, tls.cert, tls.key, engine=engine)
            stack.callback(server.stop)

            def pids(server: Any = server) -> dict[str, int]:
                out = {server.name: server.proc.pid}
                out.update(
                    {f"{server.name}-{i}": p for i, p in enumerate(descendants(server.proc.pid), start=2)}
                )
                return out

            found[name] = (f"https://127.0.0.1:{port}/validate?timeout=10s", pids)
        yield found


def measure_server(
    url: str, pids: Any, payloads: dict[str, bytes], http2: bool, duration: float
) -> Iterator[dict[str, Any]]:
    """One server at every load of `fair.LOADS`, each point measured again under high steal."""
    from bench.load import vegeta

    capacity: dict[str, float] = {}
    for load in fair.LOADS:
        rate = load.rate if load.rate != 0 else max(int(2 * capacity[load.body]), 200)

        def point(body: bytes = payloads[load.body], rate: int | None = rate) -> dict[str, Any]:
            with Sampler(pids()) as sampler:
                stats = vegeta(url, body, rate=rate, duration=duration, http2=http2)
            return {**stats, "cpu_pct": sampler.cpu, "steal_pct": sampler.steal_pct}

        row = fair.measure_point(point)
        if load.rate is None:
            capacity[load.body] = row["throughput"]
        yield {**row, "load": load.name, "body": load.body, "offered": rate}


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['load']:11} {row['body']:7} p50 {row['p50_ms']:8.2f} p99 {row['p99_ms']:8.2f} ms "
        f"{row['throughput']:8.1f}/s errors {row['errors']} (refused {row['refused']}, "
        f"reset {row['connection_errors']}, timeouts {row['timeouts']}) steal {row['steal_attempts']}%"
    )


def run(work: Path, configs: list[str], repeats: int, duration: float) -> dict[str, Any]:
    shutil.copytree(ROOT / "examples", work / "examples")
    payloads, expected = bench_bodies()
    rows: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    protocols: dict[str, str] = {}
    with servers(work, configs) as found:
        urls = {name: url for name, (url, _) in found.items()}
        protocols = {name: negotiated(url) for name, url in urls.items()}
        print(f"offered h2 and http/1.1, each server chose: {protocols}", flush=True)
        for repeat in range(1, repeats + 1):
            for protocol in fair.PROTOCOLS:
                said = agree(urls, payloads, expected)  # raises, naming server and body, on any disagreement
                verdicts.append(
                    {
                        "repeat": repeat,
                        "protocol": protocol,
                        **{
                            body: {name: v.allowed for name, v in by_server.items()}
                            for body, by_server in said.items()
                        },
                    }
                )
                for name in fair.order(list(found), repeat):
                    url, pids = found[name]
                    chosen = protocols[name] if protocol == "h2" else "http/1.1"
                    for row in measure_server(url, pids, payloads, protocol == "h2", duration):
                        row.update(server=name, protocol=protocol, negotiated=chosen, repeat=repeat)
                        rows.append(row)
                        print(f"  r{repeat} {protocol:8} {name:10} {_line(row)}", flush=True)
    targets = [
        {
            "repeat": r,
            "protocol": p,
            "config": c,
            **fair.judge(rows, r, p, c),
            "ratios": fair.ratios(rows, r, p, c),
        }
        for r in range(1, repeats + 1)
        for p in fair.PROTOCOLS
        for c in configs
    ]
    return {"protocols": protocols, "verdicts": verdicts, "rows": rows, "targets": targets}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (BIN / "vegeta").exists():
        raise SystemExit(f"{BIN / 'vegeta'} missing: run scripts/bench once (it builds vegeta)")
    work = Path(tempfile.mkdtemp(prefix="pdp-bench-peer-"))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench peer: {work}; {started}; load average {os.getloadavg()}", flush=True)
    doc = run(work, args.configs, args.repeats, args.duration)
    doc["machine"] = {"cpus": os.cpu_count(), "started": started, "loadavg_after": os.getloadavg()}
    for t in doc["targets"]:
        checks = {k: v for k, v in t.items() if isinstance(v, bool)}
        met = sum(checks.values())
        print(
            f"r{t['repeat']} {t['protocol']:8} {t['config']:8} {met}/{len(checks)} met; ratios {t['ratios']}"
        )
        for name, ok in checks.items():
            if not ok:
                print(f"    missed: {name}")
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
