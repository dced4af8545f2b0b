"""A GPU telemetry simulator for tests and demos: serves what a GPU cluster's exporters would.

`GET /metrics` answers in the DCGM exporter's names and labels (`DCGM_FI_DEV_GPU_UTIL`,
`DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_XID_ERRORS` with `gpu`, `UUID`, `pci_bus_id`, `device`,
`modelName`, `Hostname`, `DCGM_FI_DRIVER_VERSION`, and `pod`, `namespace`, `container` as
dcgm-exporter's Kubernetes pod mapping adds them to GPUs a pod holds), and with vLLM's names for the
model servers (`vllm:e2e_request_latency_seconds` histogram, `vllm:request_success_total` counter
by `finished_reason` (`stop`, `length`, `abort`, `error`), `vllm:num_requests_running`,
`vllm:num_requests_waiting`, labelled `model_name` and `engine`, plus the `namespace` and `pod`
Prometheus's Kubernetes service discovery would attach to the pod's target).

Tests change the simulated cluster while it runs:
  POST /control/gpu      {"node": N, "gpu": I, "utilization": %, "memory_used_mib": M, "xid": CODE}
  POST /control/serving  {"namespace": NS, "pod": P, "latency_seconds": S, "requests_per_second": R,
                          "error_ratio": E, ...}
  POST /control/reload   re-reads the scenario file (a bad file is refused; the old one stays)

    python -m pdp.telemetry.simulator --scenario FILE --listen 127.0.0.1:9400
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pdp.config.documents import ConfigErrors
from pdp.net.listen import ListenError, add_insecure_option, check_plaintext
from pdp.telemetry.scenario import Gpu, Scenario, Serving, load_scenario

log = logging.getLogger("pdp.telemetry.simulator")

# vLLM's REQUEST_LATENCY_BUCKETS (vllm/v1/metrics/loggers.py), so PromQL over the simulator reads
# like PromQL over a real server.
LATENCY_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
_GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
_POD_LABELS = ("container", "namespace", "pod")
_SERVING_LABELS = ("model_name", "engine", "namespace", "pod")
# vLLM's FinishReason values (vllm/v1/engine/__init__.py), the `finished_reason` label of
# vllm:request_success_total: every finished request is counted under one of them.
FINISHED_REASONS = ("stop", "length", "abort", "error")


class _Latency:
    """The cumulative request histogram of one model server, advanced with wall-clock time."""

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.pending = 0.0  # requests not yet counted: rate x elapsed time has fractions
        self.errors = 0
        self.pending_errors = 0.0

    def advance(self, serving: Serving, seconds: float) -> None:
        self.pending += serving.requests_per_second * seconds
        done = int(self.pending)
        self.pending -= done
        self.count += done
        self.sum += done * serving.latency_seconds
        self.pending_errors += done * serving.error_ratio
        failed = min(done, int(self.pending_errors))
        self.pending_errors -= failed
        self.errors += failed
        for i, bound in enumerate(LATENCY_BUCKETS):
            if serving.latency_seconds <= bound:
                self.buckets[i] += done


class SimulatedCluster(Collector):
    """The scenario's current state, collected as DCGM and vLLM series."""

    def __init__(self, scenario: Scenario) -> None:
        self.lock = threading.Lock()
        self.scenario = scenario
        self.latency: dict[tuple[str, str], _Latency] = {}
        self.clock = time.monotonic()

    def replace(self, scenario: Scenario) -> None:
        with self.lock:
            self._advance()
            self.scenario = scenario

    def _advance(self) -> None:
        now = time.monotonic()
        for key, serving in self.scenario.serving.items():
            self.latency.setdefault(key, _Latency()).advance(serving, now - self.clock)
        self.clock = now

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            self._advance()
            yield from self._dcgm(self.scenario)
            yield from self._vllm(self.scenario)

    def _dcgm(self, scenario: Scenario) -> Iterator[Metric]:
        util = GaugeMetricFamily(
            "DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels=_GPU_LABELS + _POD_LABELS
        )
        used = GaugeMetricFamily(
            "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels=_GPU_LABELS + _POD_LABELS
        )
        free = GaugeMetricFamily(
            "DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels=_GPU_LABELS + _POD_LABELS
        )
        xid = GaugeMetricFamily(
            "DCGM_FI_DEV_XID_ERRORS",
            "Value of the last XID error encountered.",
            labels=_GPU_LABELS + _POD_LABELS,
        )
        for gpu in scenario.gpus:
            labels = _gpu_labels(gpu, scenario.driver_version)
            util.add_metric(labels, gpu.utilization)
            used.add_metric(labels, gpu.memory_used_mib)
            free.add_metric(labels, gpu.memory_mib - gpu.memory_used_mib)
            xid.add_metric(labels, gpu.xid)
        yield from (util, used, free, xid)

    def _vllm(self, scenario: Scenario) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            labels=_SERVING_LABELS,
        )
        running = GaugeMetricFamily(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            labels=_SERVING_LABELS,
        )
        waiting = GaugeMetricFamily(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=_SERVING_LABELS
        )
        finished = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=(*_SERVING_LABELS, "finished_reason"),
        )
        for (namespace, pod), serving in sorted(scenario.serving.items()):
            labels = [serving.model_name, "0", namespace, pod]
            state = self.latency.setdefault((namespace, pod), _Latency())
            buckets = [(str(b), float(n)) for b, n in zip(LATENCY_BUCKETS, state.buckets, strict=True)]
            latency.add_metric(labels, [*buckets, ("+Inf", float(state.count))], state.sum)
            running.add_metric(labels, serving.running)
            waiting.add_metric(labels, serving.waiting)
            # The simulated server ends every request it does not fail with a stop token.
            counts = {"stop": state.count - state.errors, "error": state.errors}
            for reason in FINISHED_REASONS:
                finished.add_metric([*labels, reason], float(counts.get(reason, 0)))
        yield from (latency, finished, running, waiting)


def _gpu_labels(gpu: Gpu, driver: str) -> list[str]:
    # dcgm-exporter labels a GPU no pod holds without the pod mapping's labels; Prometheus drops
    # empty labels, so empty strings here read the same in PromQL.
    return [
        str(gpu.index),
        gpu.uuid,
        f"00000000:{0x18 + gpu.index * 0x10:02X}:00.0",
        f"nvidia{gpu.index}",
        gpu.model,
        gpu.node,
        driver,
        gpu.container,
        gpu.namespace,
        gpu.pod,
    ]


class ControlError(ValueError):
    pass


def _field(
    body: dict[str, Any], name: str, kind: type, *, minimum: float = 0, maximum: float | None = None
) -> Any:
    value: Any = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        raise ControlError(f"{name}: expected {kind.__name__}, got {value!r}")
    if isinstance(value, (int, float)) and (value < minimum or (maximum is not None and value > maximum)):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ControlError(f"{name}: {value!r} must be {bound}")
    return value


def change_gpu(cluster: SimulatedCluster, body: dict[str, Any]) -> dict[str, Any]:
    node, index = _field(body, "node", str), _field(body, "gpu", int)
    if node is None or index is None:
        raise ControlError("node and gpu are required")
    unknown = set(body) - {"node", "gpu", "utilization", "memory_used_mib", "xid"}
    if unknown:
        raise ControlError(f"{sorted(unknown)[0]} is not a known field")
    with cluster.lock:
        try:
            gpu = cluster.scenario.gpu(node, index)
        except KeyError as exc:
            raise ControlError(str(exc.args[0])) from exc
        utilization = _field(body, "utilization", float, maximum=100)
        used = _field(body, "memory_used_mib", int, maximum=gpu.memory_mib)
        xid = _field(body, "xid", int, maximum=2**31)
        gpu.utilization = gpu.utilization if utilization is None else float(utilization)
        gpu.memory_used_mib = gpu.memory_used_mib if used is None else used
        gpu.xid = gpu.xid if xid is None else xid
        return {
            "node": node,
            "gpu": index,
            "utilization": gpu.utilization,
            "memory_used_mib": gpu.memory_used_mib,
            "xid": gpu.xid,
        }


def change_serving(cluster: SimulatedCluster, body: dict[str, Any]) -> dict[str, Any]:
    key = (_field(body, "namespace", str), _field(body, "pod", str))
    fields = {
        "requests_per_second": float,
        "latency_seconds": float,
        "running": int,
        "waiting": int,
        "error_ratio": float,
    }
    unknown = set(body) - {"namespace", "pod", *fields}
    if unknown:
        raise ControlError(f"{sorted(unknown)[0]} is not a known field")
    with cluster.lock:
        serving = cluster.scenario.serving.get(key)
        if serving is None:
            raise ControlError(f"no model server in pod {key[0]}/{key[1]}")
        cluster._advance()  # requests so far count at the old rate and latency
        for name, kind in fields.items():
            value = _field(body, name, kind, maximum=1 if name == "error_ratio" else None)
            if value is not None:
                setattr(serving, name, kind(value))
        return {"namespace": key[0], "pod": key[1], **{n: getattr(serving, n) for n in fields}}


def make_handler(
    cluster: SimulatedCluster, registry: CollectorRegistry, scenario_file: Path
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            else:
                self._json(404, {"error": f"no such path: {self.path}"})

        def do_POST(self) -> None:
            try:
                if self.path == "/control/reload":
                    cluster.replace(load_scenario(scenario_file))
                    self._json(200, {"reloaded": str(scenario_file)})
                    return
                body = self._body()
                if self.path == "/control/gpu":
                    self._json(200, change_gpu(cluster, body))
                elif self.path == "/control/serving":
                    self._json(200, change_serving(cluster, body))
                else:
                    self._json(404, {"error": f"no such path: {self.path}"})
            except ConfigErrors as exc:
                self._json(
                    400,
                    {
                        "error": "the scenario is refused; the previous one stays",
                        "problems": [str(e) for e in exc.errors],
                    },
                )
            except ControlError as exc:
                self._json(400, {"error": str(exc)})

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            if length > 65536:
                raise ControlError("request body is larger than 64 KiB")
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError as exc:
                raise ControlError(f"request body is not JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise ControlError("request body must be a JSON object")
            return body

        def _json(self, status: int, doc: Any) -> None:
            self._reply(status, json.dumps(doc).encode() + b"\n", "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


def serve(scenario_file: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A started simulator (serving in a daemon thread); stop it with .shutdown()."""
    cluster = SimulatedCluster(load_scenario(scenario_file))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(cluster)
    server = ThreadingHTTPServer((host, port), make_handler(cluster, registry, scenario_file))
    threading.Thread(target=server.serve_forever, name="telemetry-simulator", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pdp.telemetry.simulator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scenario", type=Path, required=True, help="scenario YAML (see docs/operations.md)")
    parser.add_argument("--listen", default="127.0.0.1:9400", help="HOST:PORT (default 127.0.0.1:9400)")
    add_insecure_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        host, port = check_plaintext(
            "--listen", args.listen, tls=None, insecure=args.insecure, carries="metrics and control requests"
        )
        server = serve(args.scenario, host, port)
    except (ConfigErrors, ListenError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"simulator: --listen {args.listen}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"simulator: serving {args.scenario} on http://{args.listen}/metrics", flush=True)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
