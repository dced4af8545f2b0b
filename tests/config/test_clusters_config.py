"""The clusters-access document (pdp/config/clusters.py): every problem named with its file and
field; and the choice of a deployment's cluster (pdp/lifecycle/clusters.py, pure parts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.config import ConfigErrors
from pdp.config.clusters import load_clusters
from pdp.lifecycle.clusters import free_gpus, rank

FLEET: dict[str, Any] = {
    "clusters": {
        "eu-west": {
            "region": "eu-west-1",
            "pools": {
                "eu-shared": {"gpu_class": "H100", "isolation": "shared", "nodes": 2, "gpus_per_node": 8},
                "eu-acme": {
                    "gpu_class": "H100",
                    "isolation": "dedicated",
                    "tenant": "acme",
                    "nodes": 1,
                    "gpus_per_node": 8,
                },
            },
        },
        "us-east": {
            "region": "us-east-1",
            "pools": {
                "us-shared": {"gpu_class": "H100", "isolation": "shared", "nodes": 1, "gpus_per_node": 8}
            },
        },
    }
}

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "u", "user": {}}],
    "contexts": [{"name": "admin@eu", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "admin@eu",
}


def _load(tmp_path: Path, clusters: Any) -> dict[str, Any]:
    (tmp_path / "eu.kubeconfig").write_text(yaml.safe_dump(KUBECONFIG))
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"clusters": clusters}))
    return dict(load_clusters(path, FLEET))


def _problems(tmp_path: Path, clusters: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as refused:
        _load(tmp_path, clusters)
    file = str(tmp_path / "clusters.yaml")
    return sorted(str(e).removeprefix(f"{file}: ") for e in refused.value.errors)


def test_kubeconfig_with_context_and_in_cluster_are_read(tmp_path: Path) -> None:
    found = _load(
        tmp_path,
        {"eu-west": {"kubeconfig": "eu.kubeconfig", "context": "admin@eu"}, "us-east": {"in_cluster": True}},
    )
    assert found["eu-west"].kubeconfig == tmp_path / "eu.kubeconfig"  # relative to the document
    assert found["eu-west"].context == "admin@eu"
    assert found["us-east"].in_cluster and found["us-east"].context is None


def test_unknown_and_missing_clusters_are_named(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"eu-west": {"in_cluster": True}, "mars": {"in_cluster": True}}) == [
        "clusters.mars: is not a cluster of the fleet (it has: eu-west, us-east)",
        "clusters.us-east: is missing: every cluster of the fleet needs its access",
    ]


@pytest.mark.parametrize(
    ("access", "problem"),
    [
        (
            {"kubeconfig": "eu.kubeconfig", "in_cluster": True},
            "clusters.eu-west: names both kubeconfig and in_cluster",
        ),
        ({"context": "admin@eu"}, "clusters.eu-west: names neither kubeconfig nor in_cluster"),
        (
            {"in_cluster": True, "context": "x"},
            "clusters.eu-west.context: applies to a kubeconfig, not to in_cluster",
        ),
        ({"kubeconfig": "absent.kubeconfig"}, "clusters.eu-west.kubeconfig: "),
        (
            {"kubeconfig": "eu.kubeconfig", "context": "admin@us"},
            "clusters.eu-west.context: 'admin@us' is not a context",
        ),
        ({"in_cluster": False}, "clusters.eu-west.in_cluster: "),
        ({"kubeconfig": "eu.kubeconfig", "token": "x"}, "clusters.eu-west.token: is not a known field"),
    ],
)
def test_bad_access_is_refused_naming_the_field(tmp_path: Path, access: dict[str, Any], problem: str) -> None:
    problems = _problems(tmp_path, {"eu-west": access, "us-east": {"in_cluster": True}})
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_free_gpus_count_shared_pools_and_the_tenants_own_less_what_is_placed() -> None:
    placed = [("eu-west", 6), ("us-east", 8), ("us-east", 2)]
    assert free_gpus(FLEET, "acme", "H100", placed) == {"eu-west": 18, "us-east": 0}
    assert free_gpus(FLEET, "globex", "H100", placed) == {"eu-west": 10, "us-east": 0}
    assert free_gpus(FLEET, "globex", "A100", []) == {"eu-west": 0, "us-east": 0}


def test_rank_prefers_the_policy_order_among_clusters_where_it_fits() -> None:
    assert rank(["eu-west", "us-east"], {"eu-west": 6, "us-east": 8}, 4) == ["eu-west", "us-east"]
    assert rank(["eu-west", "us-east"], {"eu-west": 2, "us-east": 8}, 4) == ["us-east", "eu-west"]
    # Fits nowhere: the most free first (the scheduler queues it there).
    assert rank(["eu-west", "us-east"], {"eu-west": 2, "us-east": 3}, 4) == ["us-east", "eu-west"]


def test_the_example_names_every_cluster_of_the_example_fleet(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    fleet = yaml.safe_load((root / "fleet.yaml").read_text())["fleet"]
    (tmp_path / "fleet.kubeconfig").write_text(
        yaml.safe_dump(
            {**KUBECONFIG, "contexts": [{"name": f"admin@{c}", "context": {}} for c in fleet["clusters"]]}
        )
    )
    (tmp_path / "clusters.yaml").write_text((root / "clusters.yaml").read_text())
    found = load_clusters(tmp_path / "clusters.yaml", fleet)
    assert set(found) == set(fleet["clusters"])
