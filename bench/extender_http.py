"""Latency of the scheduler extender's `/filter` over HTTP at a fixed rate, against `pdp serve`
(real OPA sidecar), with the bench's ExtenderArgs: what kube-scheduler waits for per cycle.

A paced keep-alive client (one request every 1/rate s, sent on time unless the previous answer is
late, which then counts against the late answer's successor too) instead of vegeta, so it runs
without `scripts/bench`'s load generators. `--engine wasm` decides in-process instead of on the OPA
sidecar; `--tls` serves over HTTPS (a throwaway self-signed certificate), as a deployed extender.

`--node-names` measures the configuration the chart and manifests ship (`nodeCacheCapable: true`):
a real kube-apiserver (the e2e control plane, scripts/build-kube) holds the N nodes with their
labels, `pdp serve --kubeconfig` watches them, and each call names the candidates. Before timing,
the names' answer is checked to pass the very nodes the whole-`Nodes` body's answer passes, so the
view is complete and the verdicts are the same.

Before/after in one window: `--before DIR` (a `git archive` of the old commit) serves the same
body from that tree too, and the two trees take turns, `--rounds` times `--duration` seconds each
(the order flips every round; one server runs at a time, started afresh each round), so both see
the same load on a shared machine. Each round reports
p50/p99/max, the server's CPU per request (the `pdp serve` process, from /proc, OPA not counted)
and the load average; the summary pools each tree's requests.

    git archive main | tar -x -C /tmp/before
    .venv/bin/python -m bench.extender_http --before /tmp/before --rounds 3 --duration 60
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.inputs import extender_args

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    tree: Path
    proc: subprocess.Popen[bytes]
    port: int
    tls: bool
    samples: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/filter"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


@dataclass
class Pool:
    """One tree's requests over all rounds."""

    tree: Path
    samples: list[float] = field(default_factory=list)
    cpu_ms: float = 0.0


def _certificate(work: Path) -> tuple[Path, Path]:
    from pdp.net.certs import issue_server_cert, make_ca

    (work / "tls").mkdir()
    pair = issue_server_cert(make_ca(work / "tls"), work / "tls" / "extender", ["127.0.0.1"])
    return pair.cert, pair.key


def serve(
    tree: Path, work: Path, engine: str = "sidecar", tls: bool = False, kubeconfig: Path | None = None
) -> Server:
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "examples", work / "examples", dirs_exist_ok=True)
    port, grpc, opa = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "pdp.cli", "serve"]
    argv += [
        "--tenants",
        str(work / "examples" / "tenants"),
        "--fleet",
        str(work / "examples" / "fleet.yaml"),
    ]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / "bundles"), "--state", str(work / "state")]
    argv += ["--listen", f"127.0.0.1:{grpc}"]
    argv += ["--engine", "wasm"] if engine == "wasm" else ["--sidecar-addr", f"127.0.0.1:{opa}"]
    argv += ["--extender-listen", f"127.0.0.1:{port}"]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    if tls:
        cert, key = _certificate(work)
        argv += ["--extender-cert", str(cert), "--extender-key", str(key)]
    env = {**os.environ, "PDP_OPA_BIN": os.environ.get("PDP_OPA_BIN", str(ROOT / ".bin" / "opa"))}
    log = work / "pdp.log"
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tree, env=env)
    deadline = time.monotonic() + 120
    while b"pdp serving on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"pdp serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Server(tree, proc, port, tls)


@contextlib.contextmanager
def cluster_of(body: bytes, work: Path) -> Iterator[Path]:
    """A real kube-apiserver holding the body's nodes (labels and all); yields its kubeconfig."""
    from kubernetes import client, config

    from tests.e2e.controlplane import ControlPlane, kube_binaries

    (work / "kube").mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(kube_binaries(), work / "kube")
    try:
        plane.start()
        core = client.CoreV1Api(config.new_client_from_config(str(plane.kubeconfig)))
        nodes = orjson.loads(body)["Nodes"]["items"]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda node: core.create_node({"metadata": node["metadata"]}), nodes))
        print(f"# {len(nodes)} nodes created in {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield plane.kubeconfig
    finally:
        plane.stop()


def names_body(body: bytes) -> bytes:
    """The same call as kube-scheduler makes it with `nodeCacheCapable: true`: the candidates' names."""
    args = orjson.loads(body)
    names = [node["metadata"]["name"] for node in args["Nodes"]["items"]]
    return orjson.dumps({"Pod": args["Pod"], "Nodes": None, "NodeNames": names})


def post_filter(url: str, body: bytes) -> dict[str, Any]:
    """One `/filter` call and its answer (over HTTPS, any certificate: this bench's are throwaway)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        answer: dict[str, Any] = orjson.loads(response.read())
    return answer


def wait_for_view(url: str, nodes_body: bytes, timeout: float = 180) -> int:
    """Once the server's cluster view names every node: the names' answer passes exactly the nodes
    the whole body's answer passes (returns how many), or this raises."""
    passed = {node["metadata"]["name"] for node in post_filter(url, nodes_body)["Nodes"]["items"]}
    by_names = names_body(nodes_body)
    deadline = time.monotonic() + timeout
    while True:
        answer = post_filter(url, by_names)
        if not answer["Error"] and set(answer["NodeNames"] or ()) == passed:
            return len(passed)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the names' answer never matched the whole nodes' answer: {str(answer)[:300]}"
            )
        time.sleep(1)


def _connection(server: Server) -> http.client.HTTPConnection:
    if server.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # a throwaway certificate; the handshake is what counts
        return http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context)
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def paced(server: Server, body: bytes, rate: float, duration: float) -> list[float]:
    conn = _connection(server)
    headers = {"Content-Type": "application/json"}
    samples = []
    answers = []
    start = time.monotonic()
    for i in range(int(rate * duration)):
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        conn.request("POST", "/filter", body, headers)
        response = conn.getresponse()
        answer = response.read()
        # Latency from when the request was due: a late predecessor delays it too (open loop).
        samples.append((time.monotonic() - due) * 1000)
        answers.append((response.status, answer))
    conn.close()
    for status, answer in answers[:1] + answers[-1:]:  # checked outside the timed loop
        if status != 200 or orjson.loads(answer)["Error"]:
            raise RuntimeError(f"filter failed: {status} {answer[:300]!r}")
    return samples


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def measure(server: Server, body: bytes, rate: float, duration: float) -> dict[str, Any]:
    paced(server, body, rate, min(duration, 2.0))  # warm-up: connection, caches, the other tree's leftovers
    load = os.getloadavg()[0]
    cpu = server.cpu_seconds()
    samples = paced(server, body, rate, duration)
    cpu_ms = (server.cpu_seconds() - cpu) * 1000 / len(samples)
    server.samples += samples
    server.cpu_ms += cpu_ms * len(samples)
    return {
        "tree": str(server.tree),
        "load_1m": round(load, 1),
        "requests": len(samples),
        **percentiles(samples),
        "cpu_ms_per_request": round(cpu_ms, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument(
        "--real-labels",
        action="store_true",
        help="nodes labelled as real ones are, each with its own hostname, instance id... (bench.inputs)",
    )
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per tree per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose pdp serves")
    parser.add_argument("--before", type=Path, help="another checkout, measured in turns with --tree")
    parser.add_argument("--engine", choices=["sidecar", "wasm"], default="sidecar")
    parser.add_argument("--tls", action="store_true", help="serve the extender over HTTPS")
    parser.add_argument(
        "--node-names",
        action="store_true",
        help="as shipped (nodeCacheCapable: true): the nodes in a real kube-apiserver, the calls name them",
    )
    args = parser.parse_args()
    nodes_body = extender_args(args.nodes, real_labels=args.real_labels)
    body = names_body(nodes_body) if args.node_names else nodes_body
    trees = [args.tree] + ([args.before] if args.before else [])
    pooled = {tree: Pool(tree) for tree in trees}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="extender-http-"))
        kubeconfig = stack.enter_context(cluster_of(nodes_body, Path(tmp))) if args.node_names else None
        for r in range(args.rounds):
            for tree in trees if r % 2 == 0 else trees[::-1]:
                # One server at a time: an idle peer's background work would land on the one
                # being measured (the tree before this branch burned ~50 ms of CPU a second idle).
                work = Path(tmp) / f"{r}-{trees.index(tree)}"
                server = serve(tree, work, args.engine, args.tls, kubeconfig)
                try:
                    if kubeconfig is not None:
                        print(
                            f"# view complete: {wait_for_view(server.url, nodes_body)} nodes pass",
                            file=sys.stderr,
                        )
                    row = measure(server, body, args.rate, args.duration)
                finally:
                    server.proc.terminate()
                    server.proc.wait(timeout=15)
                pooled[tree].samples += server.samples
                pooled[tree].cpu_ms += server.cpu_ms
                print(orjson.dumps({"round": r + 1, **row}).decode(), flush=True)
    for server in pooled.values():
        summary = {
            "summary": str(server.tree),
            "engine": args.engine,
            "tls": args.tls,
            "rate": args.rate,
            "nodes": args.nodes,
            "real_labels": args.real_labels,
            "node_names": args.node_names,
            "requests": len(server.samples),
            **percentiles(server.samples),
            "cpu_ms_per_request": round(server.cpu_ms / len(server.samples), 1),
            "load_average": [round(x, 1) for x in os.getloadavg()],
        }
        print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
