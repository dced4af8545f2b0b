"""The simulator's scenario: which GPUs of which nodes tenant pods hold, and how busy they are.

A scenario is a YAML document (schema: pdp/schemas/telemetry-scenario.schema.json). Problems are
reported together, each naming the file, the field and what is wrong, like the tenant documents.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pdp.config.documents import ConfigError, ConfigErrors
from pdp.schemas import validator
from pdp.schemas.errors import problems

DEFAULT_MEMORY_MIB = 81559  # an H100 80GB's framebuffer as DCGM reports it
DEFAULT_DRIVER = "550.127.08"
# UUIDs are derived from the node name and GPU index, so one scenario always yields the same series.
_UUID_NAMESPACE = uuid.UUID("5b0c7a44-3f6e-4f0e-9d0a-6a1f0f2c9e11")


@dataclass
class Serving:
    """A model server (vLLM) in the pod: its request rate, latency and queue."""

    model_name: str
    requests_per_second: float = 0.0
    latency_seconds: float = 0.5
    running: int = 0
    waiting: int = 0
    error_ratio: float = 0.0  # the share of requests that finish with an error


@dataclass
class Gpu:
    node: str
    index: int
    model: str
    memory_mib: int
    namespace: str = ""
    pod: str = ""
    container: str = ""
    utilization: float = 0.0
    memory_used_mib: int = 0
    xid: int = 0  # DCGM_FI_DEV_XID_ERRORS: the last XID error's code, 0 for none

    @property
    def uuid(self) -> str:
        return f"GPU-{uuid.uuid5(_UUID_NAMESPACE, f'{self.node}/{self.index}')}"


@dataclass
class Scenario:
    name: str
    driver_version: str
    gpus: list[Gpu] = field(default_factory=list)
    serving: dict[tuple[str, str], Serving] = field(default_factory=dict)  # (namespace, pod)

    def gpu(self, node: str, index: int) -> Gpu:
        for gpu in self.gpus:
            if gpu.node == node and gpu.index == index:
                return gpu
        raise KeyError(f"no GPU {index} on node {node!r} in scenario {self.name!r}")

    def pod_gpus(self, namespace: str, pod: str) -> list[Gpu]:
        return [g for g in self.gpus if g.namespace == namespace and g.pod == pod]


def _schema_errors(file: str, document: Any) -> list[ConfigError]:
    found = problems(validator("telemetry-scenario").iter_errors(document))
    return [ConfigError(file, path, problem) for path, problem in found]


def parse_scenario(document: Any, file: str = "<scenario>") -> Scenario:
    """A validated scenario; raises ConfigErrors naming file, field and problem."""
    errors = _schema_errors(file, document)
    if errors:
        raise ConfigErrors(errors)
    body = document["scenario"]
    scenario = Scenario(
        name=body.get("name", file), driver_version=body.get("driver_version", DEFAULT_DRIVER)
    )
    seen_nodes: set[str] = set()
    for n, node in enumerate(body["nodes"]):
        where = f"scenario.nodes[{n}]"
        if node["name"] in seen_nodes:
            errors.append(ConfigError(file, f"{where}.name", f"node {node['name']!r} is listed twice"))
            continue
        seen_nodes.add(node["name"])
        gpus = [
            Gpu(node["name"], i, node["model"], node.get("memory_mib", DEFAULT_MEMORY_MIB))
            for i in range(node["gpus"])
        ]
        for a, alloc in enumerate(node.get("allocations", ())):
            errors += _allocate(file, f"{where}.allocations[{a}]", gpus, alloc, scenario)
        scenario.gpus += gpus
    if errors:
        raise ConfigErrors(errors)
    return scenario


def _allocate(
    file: str, where: str, gpus: list[Gpu], alloc: dict[str, Any], scenario: Scenario
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for i in alloc["gpus"]:
        if i >= len(gpus):
            errors.append(
                ConfigError(file, f"{where}.gpus", f"GPU {i} does not exist: the node has {len(gpus)}")
            )
        elif gpus[i].pod:
            errors.append(
                ConfigError(
                    file, f"{where}.gpus", f"GPU {i} is already held by {gpus[i].namespace}/{gpus[i].pod}"
                )
            )
    used = alloc.get("memory_used_mib", 0)
    if not errors and used > gpus[alloc["gpus"][0]].memory_mib:
        errors.append(
            ConfigError(
                file, f"{where}.memory_used_mib", f"{used} exceeds the GPU's {gpus[0].memory_mib} MiB"
            )
        )
    key = (alloc["namespace"], alloc["pod"])
    if key in scenario.serving or any(g.pod and (g.namespace, g.pod) == key for g in scenario.gpus):
        errors.append(ConfigError(file, f"{where}.pod", f"pod {key[0]}/{key[1]} is allocated twice"))
    if errors:
        return errors
    for i in alloc["gpus"]:
        gpu = gpus[i]
        gpu.namespace, gpu.pod = alloc["namespace"], alloc["pod"]
        gpu.container = alloc.get("container", "main")
        gpu.utilization = float(alloc.get("utilization", 0))
        gpu.memory_used_mib = used
    if "serving" in alloc:
        scenario.serving[key] = Serving(**alloc["serving"])
    return []


def load_scenario(path: Path) -> Scenario:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigErrors([ConfigError(str(path), "(document)", f"cannot be read: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(str(path), "(document)", f"is not valid YAML: {exc}")]) from exc
    return parse_scenario(document, str(path))
