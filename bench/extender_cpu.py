"""CPU time of the scheduler extender's filter on N nodes, in-process, against the real OPA.

`time.process_time` counts this process only: the extender's Python (decode, parse, group, build
the result, encode) and its HTTP client to OPA, not OPA's own evaluation (one per node shape) and
not whatever else the shared machine is running. Each mode is repeated and the median reported, so
before/after comparisons belong in the same run.

    .venv/bin/python -m bench.extender_cpu --nodes 5000 --repeat 30
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.inputs import extender_args
from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.substrate.kubernetes.enforcement.extender import SchedulerExtender

ROOT = Path(__file__).resolve().parents[1]


def _cluster(args: dict[str, Any]) -> Any:
    """The informer-backed cluster view (NodeNames mode), filled as its list would: every node,
    and a pod of another tenant on every tenth node."""
    from kubernetes import client as k8s

    from pdp.substrate.kubernetes.enforcement.cluster import ClusterState

    state = ClusterState(k8s.ApiClient())  # never started: no API server in this bench
    items = args["Nodes"]["items"]
    state._nodes.replace(items)
    pods = [
        {
            "metadata": {"uid": f"pod-{i}", "namespace": "globex-ml"},
            "spec": {"nodeName": items[i]["metadata"]["name"]},
            "status": {"phase": "Running"},
        }
        for i in range(0, len(items), 10)
    ]
    state._pods.replace(pods)
    return state


def _cpu_ms(call: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """Median and max CPU ms of this process per call, and the median wall ms (OPA's evaluation
    included, and whatever else the machine runs)."""
    samples = []
    walls = []
    for _ in range(repeat):
        t0, w0 = time.process_time(), time.perf_counter()
        call()
        samples.append((time.process_time() - t0) * 1000)
        walls.append((time.perf_counter() - w0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[-1], statistics.median(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument(
        "--real-labels",
        action="store_true",
        help="nodes labelled as real ones are, each with its own hostname, instance id... (bench.inputs)",
    )
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() once set up, as a server would")
    args = parser.parse_args()
    body = extender_args(args.nodes, real_labels=args.real_labels)
    doc = orjson.loads(body)
    names_doc = {
        "Pod": doc["Pod"],
        "Nodes": None,
        "NodeNames": [n["metadata"]["name"] for n in doc["Nodes"]["items"]],
    }
    names_body = orjson.dumps(names_doc)
    with tempfile.TemporaryDirectory(prefix="extender-cpu-") as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "examples", root / "examples")
        settings = EmbeddedSettings(
            tenants=root / "examples" / "tenants",
            fleet=root / "examples" / "fleet.yaml",
            policies=ROOT / "policies",
            bundles=root / "bundles",
            keys=root / "keys",
            state=root / "state",
            decision_log=root / "state" / "decisions.sqlite",
        )
        with EmbeddedPDP(settings) as stack:
            nodes_ext = SchedulerExtender(stack.point)
            names_ext = SchedulerExtender(stack.point, _cluster(doc))
            first = nodes_ext.filter(orjson.loads(body))
            assert first["Error"] == "", first["Error"]
            eligible = len(first["Nodes"]["items"])
            modes: dict[str, Callable[[], Any]] = {
                "Nodes: decode+filter+encode": lambda: orjson.dumps(nodes_ext.filter(orjson.loads(body))),
                "Nodes: filter only": lambda: nodes_ext.filter(doc),
                "NodeNames: decode+filter+encode": lambda: orjson.dumps(
                    names_ext.filter(orjson.loads(names_body))
                ),
            }
            if hasattr(nodes_ext, "filter_json"):  # the HTTP path, body to answer (a tree before it has none)
                modes["Nodes: filter_json (HTTP path)"] = lambda: nodes_ext.filter_json(body)
                modes["NodeNames: filter_json (HTTP path)"] = lambda: names_ext.filter_json(names_body)
            if args.freeze:
                gc.collect()
                gc.freeze()
            shown = "real labels" if args.real_labels else "bench labels"
            print(f"{args.nodes} nodes ({shown}), {eligible} eligible, {args.repeat} calls per mode (CPU ms)")
            print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            for name, call in modes.items():
                call()
                median, worst, wall = _cpu_ms(call, args.repeat)
                print(f"  {name:34} median {median:7.1f}  max {worst:7.1f}  wall median {wall:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
