"""GPU sharing per pool, as the NVIDIA GPU operator realizes it (pure rendering).

The fleet says how each pool shares its GPUs (`sharing_strategy`: none, time-slicing or mps
with `sharing_replicas`, mig with `mig_devices`). The GPU operator makes it true on a node from
two configurations and two node labels, so this renders exactly those:

- the device plugin's configuration (k8s-device-plugin api/config/v1, followed at v0.18.0): one
  ConfigMap with one named config per pool; the GPU operator's config manager gives a node the
  config its `nvidia.com/device-plugin.config` label names (ClusterPolicy
  `spec.devicePlugin.config.name` = this ConfigMap);
- the MIG manager's configuration (mig-parted config v1, followed at v0.10.0): one ConfigMap
  whose `config.yaml` has `all-disabled` and one MIG layout per MIG pool; the MIG manager
  repartitions a node to the config its `nvidia.com/mig.config` label names (ClusterPolicy
  `spec.migManager.config.name` = this ConfigMap).

GPU feature discovery then publishes `nvidia.com/gpu.sharing-strategy` (from the device plugin
config's sharing section) and `nvidia.com/mig.strategy` (its `flags.migStrategy`): the labels
the policies read (policies/gpupaas/sharing). The platform applies those two as well, with the
values GFD derives from the config (tools/gpu-config-check shows the plugin's own code derives
them), so admission sees a node's sharing from the moment the platform configures it, not from
GFD's next pass. Pools are matched to nodes by the platform's `gpupaas.io/pool` label; pool names
are unique across the fleet (as that label already requires). AMD pools get nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pdp.substrate.kubernetes.objects import DEFAULT_SHARING_REPLICAS, Obj
from pdp.substrate.labels import MANAGED_BY, MANAGED_BY_LABEL, POOL_LABEL

NAMESPACE = "gpu-operator"
DEVICE_PLUGIN_CONFIGMAP = "gpupaas-device-plugin-config"
MIG_PARTED_CONFIGMAP = "gpupaas-mig-parted-config"
MIG_PARTED_KEY = "config.yaml"
MIG_DISABLED = "all-disabled"
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
SHARING_STRATEGY_LABEL = "nvidia.com/gpu.sharing-strategy"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
DEFAULT_REPLICAS = DEFAULT_SHARING_REPLICAS
# A100/H100-class GPUs have 7 compute slices; a profile "<g>g.<mem>gb" takes g of them.
MIG_COMPUTE_SLICES = 7
_PROFILE = re.compile(r"^([0-9]+)g\.[0-9]+gb$")
_MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


class SharingConfigError(ValueError):
    """A pool's sharing settings cannot be realized; the message names the pool and the field."""


@dataclass(frozen=True)
class PoolSharing:
    cluster: str
    pool: str
    strategy: str
    replicas: int = 0
    mig_devices: dict[str, int] = field(default_factory=dict)

    def device_plugin_config(self) -> dict[str, Any]:
        """The pool's named config for the device plugin (api/config/v1 Config)."""
        config: dict[str, Any] = {
            "version": "v1",
            # mixed: each MIG profile its own resource, nvidia.com/mig-<profile>, the names the
            # fleet's mig_resources and the policies use.
            "flags": {"migStrategy": "mixed" if self.strategy == "mig" else "none"},
        }
        if self.strategy in ("time-slicing", "mps"):
            # renameByDefault false: the resource stays nvidia.com/gpu (the class's resource,
            # which the workload requests) and GFD marks the product label `-SHARED`.
            section = "timeSlicing" if self.strategy == "time-slicing" else "mps"
            config["sharing"] = {
                section: {"resources": [{"name": "nvidia.com/gpu", "replicas": self.replicas}]}
            }
        return config

    def mig_config(self) -> list[dict[str, Any]]:
        """The pool's entry of mig-parted's mig-configs."""
        return [
            {"devices": "all", "mig-enabled": True, "mig-devices": dict(sorted(self.mig_devices.items()))}
        ]

    def node_labels(self) -> dict[str, str]:
        return {
            DEVICE_PLUGIN_CONFIG_LABEL: self.pool,
            MIG_CONFIG_LABEL: self.pool if self.strategy == "mig" else MIG_DISABLED,
            SHARING_STRATEGY_LABEL: self.strategy if self.strategy in ("time-slicing", "mps") else "none",
            MIG_STRATEGY_LABEL: "mixed" if self.strategy == "mig" else "none",
        }


def _default_mig_devices(where: str, gpu_class: str, cls: Mapping[str, Any]) -> dict[str, int]:
    profiles = [str(r).removeprefix(_MIG_RESOURCE_PREFIX) for r in cls.get("mig_resources") or []]
    sized = [(int(m.group(1)), p) for p in profiles if (m := _PROFILE.fullmatch(p))]
    if not sized:
        raise SharingConfigError(
            f"{where}: mig_devices is not given and GPU class {gpu_class!r} lists no mig_resources "
            "to take a MIG layout from"
        )
    slices, profile = min(sized)
    return {profile: MIG_COMPUTE_SLICES // slices}


def _mig_devices(
    where: str, pool: Mapping[str, Any], gpu_class: str, cls: Mapping[str, Any]
) -> dict[str, int]:
    given = pool.get("mig_devices")
    if not given:
        return _default_mig_devices(where, gpu_class, cls)
    allowed = {str(r).removeprefix(_MIG_RESOURCE_PREFIX) for r in cls.get("mig_resources") or []}
    devices: dict[str, int] = {}
    used = 0
    for profile, count in sorted(dict(given).items()):
        m = _PROFILE.fullmatch(str(profile))
        if m is None or isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SharingConfigError(
                f"{where}: mig_devices {profile!r}: {count!r} must be a profile <g>g.<mem>gb "
                "with a count >= 1"
            )
        if str(profile) not in allowed:
            raise SharingConfigError(
                f"{where}: mig_devices profile {profile!r} is not one of GPU class {gpu_class!r}'s "
                f"mig_resources [{', '.join(sorted(allowed))}]"
            )
        used += int(m.group(1)) * count
        devices[str(profile)] = count
    if used > MIG_COMPUTE_SLICES:
        raise SharingConfigError(
            f"{where}: mig_devices {devices} take {used} compute slices of a GPU's {MIG_COMPUTE_SLICES}"
        )
    return devices


def pools(fleet: Mapping[str, Any]) -> list[PoolSharing]:
    """The NVIDIA pools of the fleet and how each shares its GPUs; SharingConfigError names the
    pool and the field that cannot be realized."""
    classes = fleet.get("gpu_classes") or {}
    out: list[PoolSharing] = []
    seen: dict[str, str] = {}
    for cname, cluster in sorted((fleet.get("clusters") or {}).items()):
        for pname, pool in sorted((cluster.get("pools") or {}).items()):
            where = f"fleet pool {pname!r} of cluster {cname!r}"
            gpu_class = str(pool.get("gpu_class", ""))
            cls = classes.get(gpu_class) or {}
            if cls.get("vendor") != "nvidia":
                continue
            if pname in seen:
                raise SharingConfigError(
                    f"{where}: pool name also used in cluster {seen[pname]!r}; the pool label and the "
                    "GPU operator's config names need it unique across the fleet"
                )
            seen[pname] = cname
            strategy = str(pool.get("sharing_strategy", "none"))
            if strategy in ("time-slicing", "mps"):
                replicas = pool.get("sharing_replicas", DEFAULT_REPLICAS)
                if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 2:
                    raise SharingConfigError(
                        f"{where}: sharing_replicas {replicas!r} must be an integer >= 2 (the device "
                        "plugin refuses fewer replicas)"
                    )
                out.append(PoolSharing(cname, pname, strategy, replicas=replicas))
            elif strategy == "mig":
                out.append(
                    PoolSharing(cname, pname, strategy, mig_devices=_mig_devices(where, pool, gpu_class, cls))
                )
            elif strategy == "none":
                out.append(PoolSharing(cname, pname, strategy))
            else:
                raise SharingConfigError(
                    f"{where}: sharing_strategy {strategy!r} is not none, time-slicing, mps or mig"
                )
    return out


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}


def device_plugin_configmap(shares: Iterable[PoolSharing], namespace: str = NAMESPACE) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(DEVICE_PLUGIN_CONFIGMAP, namespace),
        "data": {s.pool: yaml.safe_dump(s.device_plugin_config(), sort_keys=False) for s in shares},
    }


def mig_parted_config(shares: Iterable[PoolSharing]) -> dict[str, Any]:
    configs: dict[str, Any] = {MIG_DISABLED: [{"devices": "all", "mig-enabled": False}]}
    configs.update({s.pool: s.mig_config() for s in shares if s.strategy == "mig"})
    return {"version": "v1", "mig-configs": configs}


def mig_parted_configmap(shares: Iterable[PoolSharing], namespace: str = NAMESPACE) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(MIG_PARTED_CONFIGMAP, namespace),
        "data": {MIG_PARTED_KEY: yaml.safe_dump(mig_parted_config(shares), sort_keys=False)},
    }


def node_objects(shares: Iterable[PoolSharing], nodes: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """The Node objects (labels only) of every node whose `gpupaas.io/pool` is an NVIDIA pool."""
    by_pool = {s.pool: s for s in shares}
    out: list[Obj] = []
    for node in sorted(nodes, key=lambda n: str(n["name"])):
        share = by_pool.get(str((node.get("labels") or {}).get(POOL_LABEL, "")))
        if share is not None:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": str(node["name"]), "labels": share.node_labels()},
                }
            )
    return out


def render(
    fleet: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]], namespace: str = NAMESPACE
) -> list[Obj]:
    """Everything the GPU operator needs, in apply order: its namespace, the two ConfigMaps (before
    any node names a config in them), the nodes' labels."""
    shares = pools(fleet)
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        device_plugin_configmap(shares, namespace),
        mig_parted_configmap(shares, namespace),
        *node_objects(shares, nodes),
    ]
