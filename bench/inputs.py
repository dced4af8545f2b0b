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


def extender_args(nodes: int, *, real_labels: bool = False) -> bytes:
    """ExtenderArgs with N whole nodes of four label shapes (two regions, a dedicated pool).

    `real_labels`: each node also carries the labels a real cloud node has, several its own
    (`real_node_labels`), as kube-scheduler sends them (Go writes map keys sorted); the
    policy's verdicts are the same."""
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
        if real_labels:
            labels = dict(sorted({**labels, **real_node_labels(i, labels)}.items()))
        items.append({"metadata": {"name": f"node-{i}", "labels": labels}})
    return json.dumps({"Pod": pod, "Nodes": {"items": items}}).encode()


def real_node_labels(i: int, labels: dict[str, str]) -> dict[str, str]:
    """What the kubelet, the cloud provider, node-feature-discovery and NVIDIA's GPU feature
    discovery label node i with on top of the platform's labels: its hostname, instance id and
    feature-discovery timestamp are its own; zone, node group, kernel and driver versions vary."""
    region = labels["topology.kubernetes.io/region"]
    zone = f"{region}{'abc'[i % 3]}"
    return {
        "kubernetes.io/hostname": f"node-{i}",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/instance-type": "p5.48xlarge",
        "node.kubernetes.io/instance-type": "p5.48xlarge",
        "failure-domain.beta.kubernetes.io/region": region,
        "failure-domain.beta.kubernetes.io/zone": zone,
        "topology.kubernetes.io/zone": zone,
        "topology.k8s.aws/zone-id": f"{region[:2]}{region[-1]}-az{i % 3 + 1}",
        "eks.amazonaws.com/nodegroup": f"{labels['gpupaas.io/pool']}-{i % 7}",
        "eks.amazonaws.com/capacityType": "ON_DEMAND",
        "alpha.eksctl.io/instance-id": f"i-{0x0A1B2C3D4E5F6000 + i * 7919:016x}",
        "k8s.io/cloud-provider-aws": "0c1d3e5a7f2b4c6d8e0f1a2b3c4d5e6f",
        "feature.node.kubernetes.io/cpu-model.vendor_id": "Intel",
        "feature.node.kubernetes.io/cpu-model.family": "6",
        "feature.node.kubernetes.io/kernel-version.full": f"6.1.{102 + i % 3}-111.182.amzn2023.x86_64",
        "feature.node.kubernetes.io/pci-10de.present": "true",
        "feature.node.kubernetes.io/system-os_release.ID": "amzn",
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "90",
        "nvidia.com/cuda.driver.rev": f"{7 + i % 2:02d}",
        "nvidia.com/cuda.runtime.major": "12",
        "nvidia.com/cuda.runtime.minor": "4",
        "nvidia.com/gfd.timestamp": str(1764700000 + i * 37),
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/gpu.machine": "p5.48xlarge",
        "nvidia.com/gpu.memory": "81559",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/mig.strategy": "none",
    }


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
