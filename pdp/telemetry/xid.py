"""GPU faults from DCGM telemetry: the nodes whose GPUs report an XID that takes the GPU out of
service, read from Prometheus.

dcgm-exporter's `DCGM_FI_DEV_XID_ERRORS` is, per GPU, the code of the last XID error (0: none),
labelled like every DCGM series (`Hostname`, `gpu`, `UUID`, and `namespace`/`pod` for a GPU a pod
holds). Not every XID is a fault of the GPU: many are the application's own (13, 31, 43: restart
the application). The codes below are those NVIDIA's XID catalog resolves by resetting the GPU or
draining the node (https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html,
https://docs.nvidia.com/health-validation/reference/checks/xid.html): the node must stop taking
work until an operator has reset or replaced the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdp.telemetry.prometheus import PrometheusClient, finite

XID_SERIES = "DCGM_FI_DEV_XID_ERRORS"

# XID -> what it means; all need a GPU reset (or more) before the GPU takes work again.
FATAL_XIDS: dict[int, str] = {
    46: "GPU stopped processing",
    48: "double-bit ECC error (DBE)",
    62: "internal micro-controller halt",
    64: "row remapping failure (ECC page retirement failed)",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
    154: "GPU recovery action changed (reset or reboot required)",
}


@dataclass
class NodeFault:
    node: str
    xids: list[int] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)
    pods: list[dict[str, str]] = field(default_factory=list)

    @property
    def cause(self) -> str:
        return "xid " + ",".join(str(x) for x in self.xids)

    def report(self) -> dict[str, Any]:
        """The body of POST /v1/incidents."""
        return {
            "node": self.node,
            "cause": self.cause,
            "xids": self.xids,
            "gpus": self.gpus,
            "pods": self.pods,
        }


def node_faults(client: PrometheusClient, fatal: set[int] | None = None) -> list[NodeFault]:
    """The nodes with at least one GPU whose last XID is fatal, by node name (`Hostname`)."""
    wanted = set(FATAL_XIDS) if fatal is None else set(fatal)
    faults: dict[str, NodeFault] = {}
    for sample in finite(client.query(f"{XID_SERIES} != 0")):
        xid = int(sample.value)
        node = sample.labels.get("Hostname", "")
        if xid not in wanted or not node:
            continue
        fault = faults.setdefault(node, NodeFault(node))
        if xid not in fault.xids:
            fault.xids.append(xid)
        gpu = sample.labels.get("gpu", "")
        if gpu and gpu not in fault.gpus:
            fault.gpus.append(gpu)
        namespace, pod = sample.labels.get("namespace", ""), sample.labels.get("pod", "")
        if namespace and pod and {"namespace": namespace, "pod": pod} not in fault.pods:
            fault.pods.append({"namespace": namespace, "pod": pod})
    for fault in faults.values():
        fault.xids.sort()
        fault.gpus.sort(key=lambda g: (len(g), g))
        fault.pods.sort(key=lambda p: (p["namespace"], p["pod"]))
    return [faults[n] for n in sorted(faults)]
