"""The load generators, both open-loop at a fixed rate on keep-alive connections, or closed-loop
at saturation: ghz for gRPC, vegeta for HTTP."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.harness import BIN, ROOT

PROTO = ROOT / "proto"
DECIDE = "gpupaas.pdp.v1.DecisionService.Decide"
DECIDE_BATCH = "gpupaas.pdp.v1.DecisionService.DecideBatch"
TIMEOUT_S = 10  # the webhook's own timeout in the AdmissionReview URL


def ghz(
    addr: str,
    call: str,
    data: Any,
    *,
    rps: int | None,
    duration: float,
    concurrency: int = 32,
    connections: int = 1,
) -> dict[str, Any]:
    """ghz over `connections` keep-alive connections (several, so that SO_REUSEPORT spreads them
    over the processes of a multi-process server)."""
    argv = [
        str(BIN / "ghz"),
        "--insecure",
        "--proto",
        str(PROTO / "gpupaas/pdp/v1/pdp.proto"),
        "--import-paths",
        str(PROTO),
        "--call",
        call,
        "-d",
        json.dumps(data),
        "-z",
        f"{duration}s",
        "-c",
        str(concurrency),
        "--connections",
        str(connections),
        "-O",
        "json",
        "--timeout",
        "5s",
    ]
    if rps:
        argv += ["--rps", str(rps)]
    out = json.loads(subprocess.run([*argv, addr], capture_output=True, text=True, check=True).stdout)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in out.get("latencyDistribution") or []}
    # ghz -z closes the connection at the deadline under requests still in flight; those are cut
    # off by the load generator, not failed by the server, and are reported apart.
    distribution = out.get("errorDistribution") or {}
    cut = sum(n for msg, n in distribution.items() if "closed network connection" in msg or "Canceled" in msg)
    errors = sum(distribution.values()) - cut
    return {
        "p50_ms": lat.get(50),
        "p95_ms": lat.get(95),
        "p99_ms": lat.get(99),
        "throughput": round(out["rps"], 1),
        "requests": out["count"],
        "errors": errors,
        "cut_at_end": cut,
    }


def vegeta(
    url: str,
    body: bytes,
    *,
    rate: int | None,
    duration: float,
    workers: int = 16,
    headers: dict[str, str] | None = None,
    unix_socket: str | None = None,
    http2: bool = True,
) -> dict[str, Any]:
    """`unix_socket`: connect there instead of the URL's host (vegeta's -unix-socket). `http2`:
    offer HTTP/2 by ALPN (vegeta's default, as kube-apiserver's webhook client does); False keeps
    every request on HTTP/1.1, a connection per request in flight.

    Latency over every request, plus the answers split by status: how many were answered (200),
    refused (any other status, with how fast), never answered in time (vegeta's 10 s timeout) and
    dropped without an HTTP answer (connection reset or refused)."""
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        header_lines = "".join(
            f"{k}: {v}\n" for k, v in {"Content-Type": "application/json", **(headers or {})}.items()
        )
        (Path(tmp) / "targets").write_text(f"POST {url}\n{header_lines}@{body_file}\n")
        attack = [
            str(BIN / "vegeta"),
            "attack",
            f"-targets={Path(tmp) / 'targets'}",
            f"-duration={duration}s",
            "-insecure",
            "-keepalive=true",
            f"-timeout={TIMEOUT_S}s",
            f"-http2={str(http2).lower()}",
        ]
        attack += [f"-rate={rate}/1s"] if rate else ["-rate=0", f"-max-workers={workers}"]
        attack += [f"-unix-socket={unix_socket}"] if unix_socket else []
        results = subprocess.run(attack, capture_output=True, check=True).stdout
        report = subprocess.run(
            [str(BIN / "vegeta"), "report", "-type=json"], input=results, capture_output=True, check=True
        ).stdout
        lines = subprocess.run(
            [str(BIN / "vegeta"), "encode", "-to", "json"], input=results, capture_output=True, check=True
        ).stdout
    doc = json.loads(report)
    lat = doc["latencies"]
    by_code: dict[int, list[float]] = {}
    timeouts = dropped = 0
    for line in lines.splitlines():
        hit = json.loads(line)
        code = int(hit["code"])
        if code == 0:  # no HTTP answer: the client gave up, or the connection was reset or refused
            # Go's message is 'Post "URL": why'; the URL itself says ?timeout=10s, so only `why`.
            why = hit["error"].rpartition('": ')[2].lower()
            timed_out = "deadline exceeded" in why or "timeout" in why
            timeouts += timed_out
            dropped += not timed_out
            continue
        by_code.setdefault(code, []).append(hit["latency"] / 1e6)
    answered = sorted(by_code.pop(200, []))
    refused = sorted(ms for codes in by_code.values() for ms in codes)
    return {
        "p50_ms": lat["50th"] / 1e6,
        "p95_ms": lat["95th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "throughput": round(doc["throughput"], 1),
        "requests": doc["requests"],
        "errors": doc["requests"] - len(answered),
        "answered": len(answered),
        "answered_max_ms": round(answered[-1], 1) if answered else None,
        "refused": len(refused),
        "refused_p99_ms": round(_quantile(refused, 0.99), 1) if refused else None,
        "timeouts": timeouts,
        "connection_errors": dropped,
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]
