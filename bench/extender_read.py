"""CPU of reading one ExtenderArgs Nodes body (`extender.wire.read_args`), in-process, without OPA:
keyed on whole labels (each node's labels text copied and hashed, as main read every body) against
keyed on the label keys the policy reads (a msgspec struct of those keys), and the second,
skipping pass that splits out the nodes sent back. Median of `--repeat`, `time.process_time`.

    .venv/bin/python -m bench.extender_read --real-labels --repeat 20
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.inputs import extender_args
from pdp.substrate.kubernetes.enforcement.extender import wire
from pdp.substrate.kubernetes.enforcement.shapes import ShapeCache

# What the example policy reports reading (constraints.node_label_keys: lib.node_label_keys and the
# example fleet's GPU class key).
READ = frozenset(
    {
        "topology.kubernetes.io/region",
        "gpupaas.io/dedicated-tenant",
        "nvidia.com/gpu.product",
        "nvidia.com/gpu.sharing-strategy",
        "nvidia.com/mig.strategy",
    }
)


def cpu_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm: the keys of the fleet's labels are remembered, as in a server
    times = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--real-labels", action="store_true")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    body = extender_args(args.nodes, real_labels=args.real_labels)
    gc.collect()
    gc.freeze()
    shapes = ShapeCache()
    print(f"  {len(body) / 1e6:.1f} MB body, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = {
        "read_args, whole labels (text keys)": lambda: wire.read_args(body, None, shapes),
        "read_args, the read keys": lambda: wire.read_args(body, None, shapes, READ),
        "second pass (nodes sent back)": lambda: wire._node_texts(body),
    }
    for name, call in rows.items():
        print(f"  {name:38s} median {cpu_ms(call, args.repeat):6.1f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
