"""The GPU substrate in a real kube-apiserver (tests/e2e/controlplane.py).

GPU sharing: the ConfigMaps the GPU operator reads exist there as NVIDIA's parsers accept them,
every pool node carries the labels that select its config, and the labels the policies read
match the fleet, so the real PDP refuses a tenant without sharing the node that time-slices, as
it did not before. Model servers: every runtime's Deployment is accepted as rendered."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from pdp.embedded import EmbeddedPDP
from pdp.substrate.gpu_operator import sharing
from pdp.substrate.gpu_operator.adapter import FIELD_MANAGER, SharingRealizer
from pdp.substrate.kubernetes import workload
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.labels import POOL_LABEL
from tests.conftest import embedded_settings
from tests.e2e.controlplane import ControlPlane
from tests.gpu_config_check import check
from tests.lifecycle.harness import EXAMPLES, create_gpu_node

# node -> (pool, region)
NODES = {
    "gs-acme-1": ("acme-h100-dedicated", "eu-west-1"),
    "gs-ts-1": ("eu-a100-timeslice", "eu-west-1"),
    "gs-mig-1": ("us-a100-mig", "us-east-1"),
    "gs-amd-1": ("eu-mi300x-shared", "eu-central-1"),
}


def pool_of(fleet: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c["pools"][name] for c in fleet["clusters"].values() if name in c["pools"])


def read(core: client.CoreV1Api) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, str]]]:
    dp = core.read_namespaced_config_map(sharing.DEVICE_PLUGIN_CONFIGMAP, sharing.NAMESPACE).data
    mig = core.read_namespaced_config_map(sharing.MIG_PARTED_CONFIGMAP, sharing.NAMESPACE).data
    labels = {n: dict(core.read_node(n).metadata.labels) for n in NODES}
    return dp, mig, labels


def place(stack: EmbeddedPDP, nodes: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """acme-eu's (no GPU sharing) pod placed over the nodes as the API server has them: the
    reason codes of each rejected node."""
    decision = stack.point.decide(
        {
            "kind": "place_workload",
            "place_workload": {
                "namespace": "acme-prod",
                "name": "llm-0",
                "kind": "Pod",
                "resources": {"nvidia.com/gpu": 1},
                "tolerations": [
                    {
                        "key": "gpupaas.io/dedicated",
                        "operator": "Equal",
                        "value": "acme-eu",
                        "effect": "NoSchedule",
                    }
                ],
                "priority_class_name": "gpupaas-enterprise",
                "nodes": [{"name": n, "labels": labels, "tenants": []} for n, labels in nodes.items()],
            },
        }
    ).to_dict()
    rejected = decision["constraints"].get("rejected_nodes") or []
    return {r["node"]: [x["code"] for x in r["reasons"]] for r in rejected}


def test_sharing_config_and_labels_follow_the_fleet(kube: ControlPlane, tmp_path: Path) -> None:
    for name, (pool, region) in NODES.items():
        create_gpu_node(kube.kubeconfig, name, pool, region)
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    api = config.new_client_from_config(str(kube.kubeconfig))
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    realizer = SharingRealizer(adapter)
    try:
        core = client.CoreV1Api(api)
        with EmbeddedPDP(embedded_settings(tmp_path)) as stack:
            before = {n: dict(core.read_node(n).metadata.labels) for n in NODES}
            # No sharing label yet: the time-slicing node is not refused for sharing.
            assert "SHARING_NOT_ALLOWED" not in place(stack, before).get("gs-ts-1", [])

            applied = realizer.realize(fleet)
            assert "ConfigMap/gpu-operator/gpupaas-device-plugin-config" in applied
            dp, mig, labels = read(core)
            # What the API server holds is what NVIDIA's parsers accept, with the fleet's sharing.
            parsed = check(dp, mig[sharing.MIG_PARTED_KEY])
            for name, (pool, _) in NODES.items():
                strategy = pool_of(fleet, pool).get("sharing_strategy", "none")
                if name == "gs-amd-1":
                    ours = set(sharing.PoolSharing("", "", "none").node_labels())
                    assert pool not in dp and not ours & set(labels[name])
                    continue
                assert labels[name][POOL_LABEL] == pool  # the lifecycle's label stays
                assert labels[name][sharing.DEVICE_PLUGIN_CONFIG_LABEL] == pool
                got = parsed["device_plugin"][pool]
                assert "error" not in got, got
                assert labels[name][sharing.SHARING_STRATEGY_LABEL] == got["sharing_strategy"]
                assert labels[name][sharing.MIG_STRATEGY_LABEL] == got["mig_strategy"]
                if strategy == "mig":
                    assert labels[name][sharing.MIG_CONFIG_LABEL] == pool
                    assert got["mig_strategy"] == "mixed" and pool in parsed["mig_parted"]["configs"]
                else:
                    assert labels[name][sharing.MIG_CONFIG_LABEL] == sharing.MIG_DISABLED
                    assert got["sharing_strategy"] == strategy
            # The policies read those labels: acme-eu (no sharing) is refused the time-slicing
            # and the MIG node for sharing, not the node that does not share.
            rejected = place(stack, labels)
            assert "SHARING_NOT_ALLOWED" in rejected["gs-ts-1"]
            assert "SHARING_NOT_ALLOWED" in rejected["gs-mig-1"]
            assert "SHARING_NOT_ALLOWED" not in rejected.get("gs-acme-1", [])

            # The same fleet again: nothing is applied, nothing changes on the server.
            version = core.read_node("gs-ts-1").metadata.resource_version
            assert realizer.realize(fleet) == []
            assert core.read_node("gs-ts-1").metadata.resource_version == version
            node = adapter.get({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gs-ts-1"}})
            assert node is not None
            assert FIELD_MANAGER in {m["manager"] for m in node["metadata"]["managedFields"]}

            # The fleet changes: the time-slicing pool now shares each GPU 8 ways, the dedicated
            # pool turns to MIG; both are re-applied and still parse.
            pool_of(fleet, "eu-a100-timeslice")["sharing_replicas"] = 8
            pool_of(fleet, "acme-h100-dedicated").update(sharing_strategy="mig", mig_devices={"3g.40gb": 2})
            # Only what changed is sent: the two ConfigMaps and the node of the pool turned MIG.
            assert realizer.realize(fleet) == [
                "ConfigMap/gpu-operator/gpupaas-device-plugin-config",
                "ConfigMap/gpu-operator/gpupaas-mig-parted-config",
                "Node//gs-acme-1",
            ]
            dp, mig, labels = read(core)
            parsed = check(dp, mig[sharing.MIG_PARTED_KEY])
            assert parsed["device_plugin"]["eu-a100-timeslice"]["replicas"] == 8
            assert parsed["mig_parted"]["configs"]["acme-h100-dedicated"][0]["mig_devices"] == {"3g.40gb": 2}
            assert labels["gs-acme-1"][sharing.MIG_CONFIG_LABEL] == "acme-h100-dedicated"
            assert labels["gs-acme-1"][sharing.MIG_STRATEGY_LABEL] == "mixed"
    finally:
        adapter.close()
        api.close()


def test_every_runtimes_deployment_is_accepted_by_the_api_server(kube: ControlPlane) -> None:
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    place = workload.placement(
        {"eligible_clusters": ["eu-west", "eu-central"], "priority_class_name": "gpupaas-standard"},
        fleet,
        "none",
    )
    base = {"gpus_per_replica": 2, "replicas": 1, "batch_size": 16}
    specs = [
        {**base, "deployment": "vllm-h100", "gpu_class": "H100-80GB", "model": "meta-llama/Llama-3.1-8B"},
        {**base, "deployment": "vllm-mi300x", "gpu_class": "MI300X"},
        {**base, "deployment": "tgi-a100", "gpu_class": "A100-40GB", "runtime": "tgi"},
        {**base, "deployment": "tgi-mi300x", "gpu_class": "MI300X", "runtime": "tgi"},
        {
            **base,
            "deployment": "triton-h100",
            "gpu_class": "H100-80GB",
            "runtime": "triton",
            "model": "s3://m/r",
        },
    ]
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    try:
        adapter.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "runtimes"}})
        for spec in specs:
            obj = workload.render("globex", "runtimes", spec, place, fleet)
            adapter.apply(obj)  # the API server validates the whole pod template
            stored = adapter.get(obj)
            assert stored is not None, spec["deployment"]
            [want] = obj["spec"]["template"]["spec"]["containers"]
            [got] = stored["spec"]["template"]["spec"]["containers"]
            for field in ("image", "command", "args", "ports", "resources", "volumeMounts"):
                assert got[field] == want[field], (spec["deployment"], field)
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert got[probe]["httpGet"]["path"] == want[probe]["httpGet"]["path"]
        # A batch size change re-applied: the stored server flags follow it.
        changed = workload.render("globex", "runtimes", {**specs[0], "batch_size": 48}, place, fleet)
        adapter.apply(changed)
        stored = adapter.get(changed)
        assert stored is not None
        args = stored["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--max-num-seqs") + 1] == "48"
    finally:
        adapter.close()
