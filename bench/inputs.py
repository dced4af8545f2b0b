"""What the harness sends: the example intent, an AdmissionReview, ExtenderArgs over N nodes, and a
synthetic 1,000-tenant / 10,000-node configuration."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bench.harness import ROOT

INTENT = json.loads((ROOT / "examples" / "intents" / "01-acme-eu-deploy-eu.json").read_text())


def admission_review() -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama-0", "namespace": "acme-prod"},
        "spec": {
            "containers": [{"name": "m", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "tolerations": [
                {
                    "key": "gpupaas.io/dedicated",
                    "operator": "Equal",
                    "value": "acme-eu",
                    "effect": "NoSchedule",
                }
            ],
        },
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "acme-prod",
            "name": "llama-0",
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": pod,
        },
    }
    return json.dumps(review).encode()


def extender_args(nodes: int) -> bytes:
    pod = {
        "metadata": {"name": "p", "namespace": "acme-prod", "uid": "u1"},
        "spec": {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    items = []
    for i in range(nodes):
        eu = i % 2 == 0
        labels = {
            "topology.kubernetes.io/region": "eu-west-1" if eu else "us-east-1",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.sharing-strategy": "none",
            "gpupaas.io/pool": "acme-h100-dedicated" if i % 4 == 0 else "eu-h100-shared",
        }
        if i % 4 == 0:
            labels["gpupaas.io/dedicated-tenant"] = "acme-eu"
        items.append({"metadata": {"name": f"node-{i}", "labels": labels}})
    return json.dumps({"Pod": pod, "Nodes": {"items": items}}).encode()


def synthetic_config(
    directory: Path, tenants: int = 1000, clusters: int = 50, pools: int = 25, nodes: int = 8
) -> None:
    """1,000 tenants and a fleet of clusters x pools x nodes (10,000 nodes by default)."""
    fleet = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())
    classes = fleet["fleet"]["gpu_classes"]
    fleet["fleet"]["clusters"] = {
        f"c{c}": {
            "region": f"{'eu' if c % 2 else 'us'}-r{c}",
            "jurisdiction": "EU" if c % 2 else "US",
            "pools": {
                f"c{c}-p{p}": {
                    "gpu_class": ["H100-80GB", "A100-40GB", "MI300X"][p % 3],
                    "isolation": "shared",
                    "sharing_strategy": "none",
                    "nodes": nodes,
                    "gpus_per_node": 8,
                }
                for p in range(pools)
            },
        }
        for c in range(clusters)
    }
    fleet["fleet"]["gpu_classes"] = classes
    (directory / "tenants").mkdir(parents=True)
    (directory / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    for t in range(tenants):
        doc = {
            "tenant": {
                "name": f"t{t}",
                "tier": ["enterprise", "standard", "spot"][t % 3],
                "isolation": "shared",
                "data_residency": ["eu-only", "us-only", "any"][t % 3],
                "allow_preemption": t % 3 == 2,
                "allow_gpu_sharing": t % 2 == 0,
                "namespaces": [f"t{t}-a", f"t{t}-b"],
                "entitlements": {"H100-80GB": 8, "A100-40GB": 4},
            }
        }
        (directory / "tenants" / f"t{t}.yaml").write_text(yaml.safe_dump(doc))
