"""OPA's own evaluation timer on its server against `opa bench` of the same prepared query: which
part of the server's path, or of the way it is called, makes the server's figure larger.

    .venv/bin/python -m bench.policy_server [-n 400] [--rounds 2]

The example fleet's bundle (pdp.bundles.build) and two inputs of bench.policy_cost (an allowed
and a denied admit_workload). Per round, one hypothesis at a time, each on a fresh OPA process
started as bench.policy_cost starts it (`opa run --server --optimize-store-for-read-speed`,
GOGC=400) unless the row says otherwise, sequential requests to
`POST /v1/data/gpupaas/decision/result?metrics=true`; the figure is the median and minimum of
`timer_rego_query_eval_ns` (microseconds) and OPA's CPU per request:

- `opa bench`: the prepared query in a loop, no HTTP (bench.policy_bench's figure);
- `opa bench --e2e`: the same through an in-process OPA server, Go's HTTP client, one connection;
- new connection per request (urllib: bench.policy_cost's figure);
- one keep-alive connection (how the PDP's engine calls its sidecar: one connection per thread);
- keep-alive, GOGC=100; with the decision log plugin (console); with `strict-builtin-errors`;
  with `instrument`; with an input padded by 64 KiB the policy never reads;
- the sidecar as the PDP runs it (`pdp serve`: config file, signed bundle from the bundle service,
  status plugin), keep-alive.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import PY, ROOT, cpu_seconds
from bench.policy_cost import ENTRYPOINT, EXAMPLES, _wait_ready, build, example_intents
from pdp.opa.binary import find_opa
from pdp.opa.sidecar import SidecarSettings
from tests.ports import free_port

QUERY = "data.gpupaas.decision.result"
TIMER = "histogram_timer_rego_query_eval_ns_"
KINDS = ("admit_workload", "admit_workload (deny)")


def _opa_bench(bundle: Path, intent: dict[str, Any], work: Path, e2e: bool) -> dict[str, float]:
    path = work / "input.json"
    path.write_text(json.dumps(intent))
    argv = [str(find_opa()), "bench", "--bundle", str(bundle), "--input", str(path), "--benchmem"]
    argv += ["--optimize-store-for-read-speed", "--format", "json", QUERY]
    if e2e:
        argv.insert(2, "--e2e")
    proc = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)
    extra = json.loads(proc.stdout)["Extra"]
    return {"p50": extra[TIMER + "median"] / 1000, "min": extra[TIMER + "min"] / 1000, "cpu": 0.0}


class _KeepAlive:
    """One HTTP/1.1 connection for every request, as pdp/engine's OPA client keeps one per thread."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return json.loads(response.read())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.conn.close()


class _NewConnection:
    """urllib: a new connection per request (bench.policy_cost's client)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def _measure(
    pid: int, client: _KeepAlive | _NewConnection, intent: dict[str, Any], n: int, params: str, pad: bool
) -> dict[str, float]:
    doc: dict[str, Any] = {"input": intent}
    if pad:
        doc["input"] = {**intent, "padding": ["x" * 64] * 1024}
    body = json.dumps(doc).encode()
    path = f"/v1/data/{ENTRYPOINT}?metrics=true{params}"
    for _ in range(20):
        client.post(path, body)
    cpu0 = cpu_seconds(pid)
    samples = sorted(client.post(path, body)["metrics"]["timer_rego_query_eval_ns"] / 1000 for _ in range(n))
    cpu = (cpu_seconds(pid) - cpu0) * 1e6 / n
    return {"p50": statistics.median(samples), "min": samples[0], "cpu": cpu}


def _bare_opa(bundle: Path, gogc: int, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [str(find_opa()), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
    argv += ["--optimize-store-for-read-speed", "--bundle", str(bundle), *extra]
    env = {**os.environ, "GOGC": str(gogc)}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc, port


def _pdp_sidecar(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`pdp serve` with its OPA sidecar on a TCP port: the sidecar's own configuration."""
    port = free_port()
    argv = [PY, "-m", "pdp.cli", "serve", "--sidecar-addr", f"127.0.0.1:{port}"]
    argv += ["--tenants", str(EXAMPLES / "tenants"), "--fleet", str(EXAMPLES / "fleet.yaml")]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / "sidecar-bundles")]
    argv += ["--state", str(work / "sidecar-state"), "--listen", f"127.0.0.1:{free_port()}"]
    env = {"PDP_OPA_BIN": str(find_opa()), **os.environ, "PYTHONPATH": str(ROOT)}
    log = (work / "pdp.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    _wait_ready(f"http://127.0.0.1:{port}", proc, timeout=180)  # the sidecar's health, its bundle loaded
    return proc, port


def _opa_pid_of(proc: subprocess.Popen[bytes]) -> int:
    from bench.harness import children

    kids = children(proc.pid)
    return kids[0] if kids else proc.pid


Row = Callable[[dict[str, Any]], dict[str, float]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-n", type=int, default=400, help="requests measured per row and input")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-sidecar", action="store_true", help="skip the `pdp serve` row")
    args = parser.parse_args()
    intents = {k: v for k, v in example_intents().items() if k in KINDS}
    gogc = SidecarSettings.gogc
    with tempfile.TemporaryDirectory(prefix="policy-server-") as tmp:
        work = Path(tmp)
        bundle, _ = build(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml", work / "bundles", False)

        def server_row(
            client_kind: type[_KeepAlive] | type[_NewConnection],
            gogc_: int = gogc,
            extra: list[str] | None = None,
            params: str = "",
            pad: bool = False,
        ) -> dict[str, dict[str, float]]:
            proc, port = _bare_opa(bundle, gogc_, extra or [])
            client = client_kind(port)
            try:
                return {k: _measure(proc.pid, client, i, args.n, params, pad) for k, i in intents.items()}
            finally:
                client.close()
                proc.terminate()
                proc.wait(timeout=10)

        def sidecar_row() -> dict[str, dict[str, float]]:
            proc, port = _pdp_sidecar(work)
            client = _KeepAlive(port)
            try:
                pid = _opa_pid_of(proc)
                return {k: _measure(pid, client, i, args.n, "", False) for k, i in intents.items()}
            finally:
                client.close()
                proc.terminate()
                proc.wait(timeout=30)

        rows: list[tuple[str, Callable[[], dict[str, dict[str, float]]]]] = [
            (
                "opa bench (no HTTP)",
                lambda: {k: _opa_bench(bundle, i, work, False) for k, i in intents.items()},
            ),
            (
                "opa bench --e2e (Go client)",
                lambda: {k: _opa_bench(bundle, i, work, True) for k, i in intents.items()},
            ),
            ("server, new connection per request", lambda: server_row(_NewConnection)),
            ("server, keep-alive", lambda: server_row(_KeepAlive)),
            ("keep-alive, GOGC=100", lambda: server_row(_KeepAlive, gogc_=100)),
            (
                "keep-alive, decision logs (console)",
                lambda: server_row(_KeepAlive, extra=["--set", "decision_logs.console=true"]),
            ),
            (
                "keep-alive, strict-builtin-errors",
                lambda: server_row(_KeepAlive, params="&strict-builtin-errors"),
            ),
            ("keep-alive, instrument", lambda: server_row(_KeepAlive, params="&instrument")),
            ("keep-alive, input + 64 KiB unread", lambda: server_row(_KeepAlive, pad=True)),
        ]
        if not args.no_sidecar:
            rows.append(("PDP's sidecar (pdp serve), keep-alive", sidecar_row))
        for round_ in range(1, args.rounds + 1):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"== round {round_}, load average {load}", flush=True)
            for name, run in rows:
                figures = run()
                cells = "  ".join(
                    f"{k.replace('admit_workload', 'admit')}: p50 {f['p50']:5.0f} min {f['min']:4.0f}"
                    + (f" cpu {f['cpu']:5.0f}" if f["cpu"] else "")
                    for k, f in figures.items()
                )
                print(f"{name:40} {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
