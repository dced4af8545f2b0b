"""The fleet as a Slurm cluster (pure): one partition per pool (each pool lives in one cluster, so
in one region), one node per pool node, GPUs as counted GRES typed by GPU class.

Partition and node names come from the pool names, which the fleet keeps unique; the partition
carries what the policies read about a pool (cluster, region, jurisdiction, GPU class, isolation,
dedicated tenant, sharing strategy) so job_submit.lua can turn a job into an intent and apply a
decision's constraints to the partitions it asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FleetNotRenderable(ValueError):
    """The fleet cannot be a Slurm cluster as it is; the message names the pool and the problem."""


@dataclass(frozen=True)
class Partition:
    name: str
    cluster: str
    region: str
    jurisdiction: str
    pool: str
    gpu_class: str
    gres_type: str
    isolation: str
    tenant: str | None
    sharing: str
    nodes: tuple[str, ...]
    gpus_per_node: int

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * len(self.nodes)


def gres_type(gpu_class: str) -> str:
    """The GRES type of a GPU class: `H100-80GB` -> `h100_80gb`. Slurm 22.05 silently ignores a
    gres.conf line whose type holds a hyphen, so only lower-case letters, digits and `_` remain."""
    return re.sub(r"[^a-z0-9]+", "_", gpu_class.lower()).strip("_")


def partitions(fleet: Mapping[str, Any]) -> list[Partition]:
    """Every pool of the fleet as a partition, sorted by name."""
    out: dict[str, Partition] = {}
    types: dict[str, str] = {}
    for cluster_name, cluster in sorted(fleet.get("clusters", {}).items()):
        for pool_name, pool in sorted(cluster.get("pools", {}).items()):
            if pool_name in out:
                raise FleetNotRenderable(
                    f"pool {pool_name!r} of cluster {cluster_name!r}: the name is also a pool of "
                    f"cluster {out[pool_name].cluster!r}, and a Slurm partition name must be unique"
                )
            gpu_class = str(pool["gpu_class"])
            gtype = gres_type(gpu_class)
            if types.setdefault(gtype, gpu_class) != gpu_class:
                raise FleetNotRenderable(
                    f"GPU classes {types[gtype]!r} and {gpu_class!r} both become GRES type {gtype!r}"
                )
            out[pool_name] = Partition(
                name=pool_name,
                cluster=cluster_name,
                region=str(cluster["region"]),
                jurisdiction=str(cluster["jurisdiction"]),
                pool=pool_name,
                gpu_class=gpu_class,
                gres_type=gtype,
                isolation=str(pool["isolation"]),
                tenant=pool.get("tenant"),
                sharing=str(pool.get("sharing_strategy", "none")),
                nodes=tuple(f"{pool_name}-{i}" for i in range(1, int(pool["nodes"]) + 1)),
                gpus_per_node=int(pool["gpus_per_node"]),
            )
    return [out[name] for name in sorted(out)]


def tres_names(fleet: Mapping[str, Any]) -> list[str]:
    """AccountingStorageTRES entries: the untyped GPU count and one per GPU type, so association
    limits can name a type (`GrpTRES=gres/gpu:h100_80gb=4`)."""
    types = sorted({p.gres_type for p in partitions(fleet)})
    return ["gres/gpu", *(f"gres/gpu:{t}" for t in types)]


@dataclass(frozen=True)
class NodeSettings:
    """How the nodes are reached and what they declare besides GPUs (site settings)."""

    cpus: int = 16
    memory_mb: int = 64000
    hostname: str | None = None  # NodeHostname of every node (several slurmd on one host)
    address: str | None = None  # NodeAddr of every node
    ports: Mapping[str, int] | None = None  # node name -> its slurmd port
    max_time: str = "UNLIMITED"


def slurm_conf_fleet(fleet: Mapping[str, Any], settings: NodeSettings | None = None) -> str:
    """The part of slurm.conf that follows from the fleet: GRES types, accounting TRES, nodes and
    partitions. Dedicated partitions admit only their tenant's account (AllowAccounts), a guard
    that holds even if a job escaped job_submit.lua; residency is realized per account by the
    partitions of its associations (accounts.py)."""
    s = settings or NodeSettings()
    lines = ["GresTypes=gpu", f"AccountingStorageTRES={','.join(tres_names(fleet))}"]
    for p in partitions(fleet):
        for node in p.nodes:
            parts = [f"NodeName={node}"]
            if s.hostname:
                parts.append(f"NodeHostname={s.hostname}")
            if s.address:
                parts.append(f"NodeAddr={s.address}")
            if s.ports is not None:
                parts.append(f"Port={s.ports[node]}")
            features = f"region_{p.region},cluster_{p.cluster},pool_{p.pool}"
            parts += [
                f"CPUs={s.cpus}",
                f"RealMemory={s.memory_mb}",
                f"Gres=gpu:{p.gres_type}:{p.gpus_per_node}",
                f"Features={features}",
                "State=UNKNOWN",
            ]
            lines.append(" ".join(parts))
    for p in partitions(fleet):
        parts = [f"PartitionName={p.name}", f"Nodes={','.join(p.nodes)}", f"MaxTime={s.max_time}", "State=UP"]
        if p.isolation == "dedicated" and p.tenant:
            parts.append(f"AllowAccounts={p.tenant}")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


DEFAULT_DEVICE_FILES = "/dev/nvidia[0-{last}]"


def gres_conf(fleet: Mapping[str, Any], device_files: str = DEFAULT_DEVICE_FILES) -> str:
    """The GPUs of every node. `device_files` is the File= pattern, with `{node}` and `{last}`
    (the last GPU index) filled in. Slurm 22.05 drops a GPU without a File= ("Removing file-less
    GPU ... from final GRES list") and the node then registers with no GPUs, so even counted GPUs
    name device files; the test tier makes them under its temporary folder."""
    lines = [
        f"NodeName={node} Name=gpu Type={p.gres_type} "
        f"File={device_files.format(node=node, last=p.gpus_per_node - 1)}"
        for p in partitions(fleet)
        for node in p.nodes
    ]
    return "\n".join(lines) + "\n"
