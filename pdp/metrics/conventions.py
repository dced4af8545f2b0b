"""What every metric of the PDP shares: the component prefix of its name and, for latencies, the
histogram buckets."""

from __future__ import annotations

PREFIX = "gpupaas_pdp_"
# 0.1 ms to 10 s: a wasm decision takes well under a millisecond, an OPA one 1-20 ms, a placement
# over thousands of nodes or a loaded machine up to seconds, a timeout up to the caller's deadline.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
