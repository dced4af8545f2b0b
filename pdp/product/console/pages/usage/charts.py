"""The usage page's charts: GPUs entitled against GPUs held over time per tenant and GPU class, and
the deployments waiting for capacity (queue depth) per tenant and class.

- Entitled: `gpupaas_pdp_tenant_entitled_gpus{tenant, gpu_class}`, which the worker serves at
  `/metrics/tenants` to a metrics token (pdp/metrics/tenants.py's TenantCollector), read from the
  tenant records when scraped: a quota change is a step in the line.
- Held: dcgm-exporter's `DCGM_FI_DEV_GPU_UTIL`, one series per GPU that a pod holds (its
  `namespace` label), counted per tenant (its policy's namespaces) and GPU class (the GPU's
  `modelName` against the class's node label: GPU Feature Discovery writes the product name with
  "-" for " ", so "NVIDIA-H100-80GB-HBM3" is modelName "NVIDIA H100 80GB HBM3"). A GPU no class
  matches counts under "other: <modelName>", never dropped.
- Queued: `gpupaas_pdp_tenant_queued_deployments{tenant, gpu_class}`, the lifecycle queue.
- Pending in Kueue: Kueue's own `kueue_pending_workloads{cluster_queue, status}` (status `active`:
  waiting its turn; `inadmissible`: it cannot fit the queue's quota now) of each tenant's
  ClusterQueue (`gpupaas-<tenant>`, pdp/substrate/kueue/objects.py), the Jobs its spot and batch
  work submitted to Kueue, which the PDP's admission check decides once Kueue reserves quota.

The builders are pure and check every name they put in a query (tenant, namespace, class, node
label), so a request's parameters never reach Prometheus; a tenant's query selects its own
tenant label and namespaces only."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException

from pdp.metrics import PREFIX
from pdp.substrate.kueue.objects import cluster_queue_name

ENTITLED = PREFIX + "tenant_entitled_gpus"
QUEUED = PREFIX + "tenant_queued_deployments"
KUEUE_PENDING = "kueue_pending_workloads"
GPU = "DCGM_FI_DEV_GPU_UTIL"  # any per-GPU DCGM field would do: one series per GPU
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a tenant or a namespace
_CLASS = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,62}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")  # a Kubernetes label value


def _checked(kind: str, name: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(name):
        # 404 like any other page naming no tenant it may see; the page never names what it refuses
        raise HTTPException(404, f"no {kind} {name!r}")
    return name


def model_regex(node_label_value: str) -> str:
    """The RE2 `modelName` values a class's node label value stands for: each "-" matches a "-" or
    a " ", each "." a "." (escaped twice: once for the regex, once for the PromQL string)."""
    _checked("node label value", node_label_value, _LABEL_VALUE)
    return "".join("[- ]" if c == "-" else "\\\\." if c == "." else c for c in node_label_value)


def with_gpu_class(expr: str, gpu_classes: Mapping[str, Any]) -> str:
    """`expr` (DCGM series) with a `gpu_class` label: the fleet's class whose node label its
    modelName matches, else "other: <modelName>"."""
    out = f'label_replace({expr}, "gpu_class", "other: $1", "modelName", "(.*)")'
    for name, spec in sorted(gpu_classes.items()):
        value = str(((spec or {}).get("node_label") or {}).get("value", ""))
        if not value:
            continue
        gpu_class, regex = _checked("GPU class", name, _CLASS), model_regex(value)
        out = f'label_replace({out}, "gpu_class", "{gpu_class}", "modelName", "{regex}")'
    return out


def tenant_selector(tenant: str | None) -> str:
    return "" if tenant is None else f'{{tenant="{_checked("tenant", tenant, _NAME)}"}}'


def held_promql(owners: Mapping[str, Sequence[str]], gpu_classes: Mapping[str, Any]) -> str:
    """GPUs held per tenant and class: each tenant's namespaces' GPUs (`owners`: tenant ->
    namespaces), a tenant label put on them; "" when no tenant has a namespace."""
    parts = []
    for tenant, namespaces in sorted(owners.items()):
        _checked("tenant", tenant, _NAME)
        names = sorted({_checked("namespace", n, _NAME) for n in namespaces})
        if names:
            selector = f'{GPU}{{namespace=~"{"|".join(names)}"}}'
            parts.append(f'label_replace({selector}, "tenant", "{tenant}", "", "")')
    if not parts:
        return ""
    return f"count by (tenant, gpu_class) ({with_gpu_class(' or '.join(parts), gpu_classes)})"


def entitled_promql(tenant: str | None) -> str:
    return f"max by (tenant, gpu_class) ({ENTITLED}{tenant_selector(tenant)})"


def entitled_and_held_promql(
    tenant: str | None, owners: Mapping[str, Sequence[str]], gpu_classes: Mapping[str, Any]
) -> str:
    """Both lines per tenant and class, told apart by a `measure` label (entitled, held). An
    entitled class without a GPU held is 0 held while dcgm-exporter reports any GPU at all (not
    while it reports none: a silent exporter is no usage of 0)."""
    entitled = entitled_promql(tenant)
    none_held = f"(({entitled} * 0) and on () count({GPU}))"
    held = held_promql(owners, gpu_classes)
    held = f"({held} or {none_held})" if held else none_held
    return (
        f'label_replace({entitled}, "measure", "entitled", "", "")\n'
        f'or\nlabel_replace({held}, "measure", "held", "", "")'
    )


def queued_promql(tenant: str | None) -> str:
    """Deployments waiting for capacity per tenant and class (of `tenant`'s only when given)."""
    return f"max by (tenant, gpu_class) ({QUEUED}{tenant_selector(tenant)})"


def kueue_pending_promql(tenants: Sequence[str]) -> str:
    """Workloads pending in Kueue per tenant and status, of the ClusterQueues of `tenants`; "" for
    none. The tenant label is taken from the queue's name, which the PDP gave it."""
    queues = sorted(cluster_queue_name(_checked("tenant", t, _NAME)) for t in tenants)
    if not queues:
        return ""
    pending = f'{KUEUE_PENDING}{{cluster_queue=~"{"|".join(queues)}"}}'
    prefix = cluster_queue_name("")
    return (
        f'sum by (tenant, status) (label_replace({pending}, "tenant", "$1", "cluster_queue", "{prefix}(.+)"))'
    )
