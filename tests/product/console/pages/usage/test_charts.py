"""The usage page's PromQL builders on their own: a tenant's query selects its own tenant label and
namespaces and nothing else, a GPU is classed by its modelName against the fleet's node labels, and
any name that is not one (tenant, namespace, class, node label) is refused rather than put in a
query. (Against a real Prometheus: tests/product/console/test_usage_charts.py.)"""

from __future__ import annotations

import re

import pytest
from fastapi import HTTPException

from pdp.product.console.pages.usage.charts import (
    entitled_and_held_promql,
    held_promql,
    kueue_pending_promql,
    model_regex,
    queued_promql,
    with_gpu_class,
)
from pdp.product.console.pages.usage.views import owners_of
from pdp.substrate.kueue.objects import cluster_queue_name

CLASSES = {
    "H100-80GB": {"node_label": {"key": "nvidia.com/gpu.product", "value": "NVIDIA-H100-80GB-HBM3"}},
    "A100-40GB": {"node_label": {"key": "nvidia.com/gpu.product", "value": "NVIDIA-A100-SXM4-40GB"}},
}


def _unquoted(regex: str) -> str:
    """`regex` as Prometheus reads it from a PromQL string (backslashes unescaped once)."""
    return regex.replace("\\\\", "\\")


@pytest.mark.parametrize(
    ("label", "model"),
    [
        ("NVIDIA-H100-80GB-HBM3", "NVIDIA H100 80GB HBM3"),
        ("NVIDIA-A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"),
        ("NVIDIA-L40S", "NVIDIA L40S"),
        ("Tesla-T4.x", "Tesla T4.x"),
    ],
)
def test_a_node_label_value_matches_the_model_name_gpu_feature_discovery_made_it_from(
    label: str, model: str
) -> None:
    assert re.fullmatch(_unquoted(model_regex(label)), model)


def test_a_dot_is_a_dot_and_no_other_model_matches() -> None:
    regex = _unquoted(model_regex("Tesla-T4.x"))
    assert not re.fullmatch(regex, "Tesla T4yx") and not re.fullmatch(regex, "NVIDIA Tesla T4.x")
    assert not re.fullmatch(_unquoted(model_regex("NVIDIA-H100-80GB-HBM3")), "NVIDIA H100 80GB HBM3e")


def test_every_gpu_gets_a_class_the_unknown_ones_named_by_model() -> None:
    got = with_gpu_class("X", CLASSES)
    assert got == (
        'label_replace(label_replace(label_replace(X, "gpu_class", "other: $1", "modelName", "(.*)"), '
        '"gpu_class", "A100-40GB", "modelName", "NVIDIA[- ]A100[- ]SXM4[- ]40GB"), '
        '"gpu_class", "H100-80GB", "modelName", "NVIDIA[- ]H100[- ]80GB[- ]HBM3")'
    )
    # A class without a node label (none in a valid fleet) classes nothing.
    assert (
        with_gpu_class("X", {"B200": {}}) == 'label_replace(X, "gpu_class", "other: $1", "modelName", "(.*)")'
    )


def test_held_gpus_are_counted_per_tenant_from_its_own_namespaces() -> None:
    got = held_promql({"acme": ["acme-prod", "acme-dev"], "globex": ["globex-ml"], "bare": []}, CLASSES)
    assert got.startswith("count by (tenant, gpu_class) (")
    assert (
        'label_replace(DCGM_FI_DEV_GPU_UTIL{namespace=~"acme-dev|acme-prod"}, "tenant", "acme", "", "")'
        in got
    )
    assert 'label_replace(DCGM_FI_DEV_GPU_UTIL{namespace=~"globex-ml"}, "tenant", "globex", "", "")' in got
    assert '"bare"' not in got
    assert held_promql({"bare": []}, CLASSES) == ""


def test_a_tenants_query_names_its_own_tenant_and_namespaces_only() -> None:
    got = entitled_and_held_promql("acme", {"acme": ["acme-prod"]}, CLASSES)
    assert set(re.findall(r'tenant="([^"]*)"', got)) == {"acme"}
    assert set(re.findall(r'"tenant", "([^"]*)"', got)) == {"acme"}
    assert set(re.findall(r'namespace=~"([^"]*)"', got)) == {"acme-prod"}
    # Every DCGM series it reads is narrowed to those namespaces, but the "any GPU reported at all"
    # guard, which is a count without labels.
    assert len(re.findall(r"DCGM_FI_DEV_GPU_UTIL\{", got)) == 1
    assert "count(DCGM_FI_DEV_GPU_UTIL)" in got
    assert (
        queued_promql("acme")
        == 'max by (tenant, gpu_class) (gpupaas_pdp_tenant_queued_deployments{tenant="acme"})'
    )


def test_the_admins_query_reads_every_tenant() -> None:
    got = entitled_and_held_promql(None, {"acme": ["acme-prod"], "globex": ["globex-ml"]}, CLASSES)
    assert "max by (tenant, gpu_class) (gpupaas_pdp_tenant_entitled_gpus)" in got
    assert queued_promql(None) == "max by (tenant, gpu_class) (gpupaas_pdp_tenant_queued_deployments)"
    # A tenant without namespaces still has its entitlement, and 0 held.
    bare = entitled_and_held_promql(None, {}, CLASSES)
    assert (
        "label_replace(((max by (tenant, gpu_class) (gpupaas_pdp_tenant_entitled_gpus) * 0) and on ()" in bare
    )


@pytest.mark.parametrize("name", ['acme"} or up{x="', "Acme", "a" * 64, "-acme", "", "acme.*"])
def test_a_tenant_or_namespace_that_is_no_name_is_refused(name: str) -> None:
    for build in (
        lambda: queued_promql(name),
        lambda: entitled_and_held_promql(name, {}, CLASSES),
        lambda: held_promql({name: ["ns"]}, CLASSES),
        lambda: held_promql({"acme": [name]}, CLASSES),
    ):
        with pytest.raises(HTTPException) as refused:
            build()
        assert refused.value.status_code == 404


@pytest.mark.parametrize(
    "classes",
    [
        {'H100"} or up{x="': {"node_label": {"value": "NVIDIA-H100"}}},
        {"H100": {"node_label": {"value": 'NVIDIA"), up, ("'}}},
        {"H100": {"node_label": {"value": "NVIDIA H100"}}},
    ],
)
def test_a_class_or_node_label_that_is_no_name_is_refused(classes: dict[str, object]) -> None:
    with pytest.raises(HTTPException):
        with_gpu_class("X", classes)


def test_owners_are_the_active_tenants_namespaces() -> None:
    records = [
        {"name": "acme", "state": "active", "policy": {"namespaces": ["acme-prod"]}},
        {"name": "gone", "state": "offboarded", "policy": {"namespaces": ["gone-ml"]}},
        {"name": "bare", "state": "active", "policy": {}},
    ]
    assert owners_of(records) == {"acme": ["acme-prod"], "bare": []}


def test_kueue_pending_counts_the_tenants_own_cluster_queues_named_back_to_their_tenant() -> None:
    got = kueue_pending_promql(["globex", "acme"])
    assert got == (
        'sum by (tenant, status) (label_replace(kueue_pending_workloads{cluster_queue=~"gpupaas-acme|'
        'gpupaas-globex"}, "tenant", "$1", "cluster_queue", "gpupaas-(.+)"))'
    )
    assert cluster_queue_name("acme") == "gpupaas-acme"  # the name the query selects
    assert kueue_pending_promql([]) == ""
    with pytest.raises(HTTPException):
        kueue_pending_promql(["acme", 'x"}) or vector(1'])
