"""`pdp check-plan`: GPU capacity changes of an OpenTofu plan decided as one change_capacity intent.

The plans come from a real `tofu` (built from the Go module proxy by scripts/build-tofu) over
`terraform_data` resources that carry the pools' attributes; the decisions from the real OPA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from pdp.substrate.terraform.plan import PlanError, capacity_changes, intent_from_plan
from tests.artifacts import cached_artifact
from tests.conftest import ROOT

ACME = {
    "gpupaas_pool": "acme-h100-dedicated",
    "gpupaas_cluster": "eu-west",
    "gpupaas_region": "eu-west-1",
    "gpupaas_gpu_class": "H100-80GB",
    "gpupaas_nodes": 2,
    "gpupaas_gpus_per_node": 8,
    "gpupaas_dedicated_tenant": "acme-eu",
}
SHARED = {
    "gpupaas_pool": "us-h100-shared",
    "gpupaas_cluster": "us-east",
    "gpupaas_region": "us-east-1",
    "gpupaas_gpu_class": "H100-80GB",
    "gpupaas_nodes": 8,
    "gpupaas_gpus_per_node": 8,
}


def _rc(
    address: str, actions: list[str], before: Any, after: Any, after_unknown: Any = None
) -> dict[str, Any]:
    return {
        "address": address,
        "type": address.split(".")[0],
        "change": {
            "actions": actions,
            "before": before,
            "after": after,
            "after_unknown": after_unknown or {},
        },
    }


def test_plan_changes_become_capacity_changes() -> None:
    plan = {
        "format_version": "1.2",
        "resource_changes": [
            _rc("terraform_data.acme", ["update"], {"input": ACME}, {"input": {**ACME, "gpupaas_nodes": 1}}),
            _rc("terraform_data.gone", ["delete"], {"input": SHARED}, None),
            _rc("terraform_data.moved", ["delete", "create"], {"input": SHARED}, {"input": SHARED}),
            _rc("terraform_data.same", ["no-op"], {"input": SHARED}, {"input": SHARED}),
            _rc("terraform_data.other", ["create"], None, {"input": {"name": "not a pool"}}),
            # Labels hold strings only: numbers are read from them.
            _rc(
                "google_container_node_pool.gke",
                ["create"],
                None,
                {"labels": {**SHARED, "gpupaas_nodes": "3"}},
            ),
        ],
    }
    changes = capacity_changes(plan)
    assert [(c["address"], c["action"]) for c in changes] == [
        ("terraform_data.acme", "update"),
        ("terraform_data.gone", "delete"),
        ("terraform_data.moved", "replace"),
        ("google_container_node_pool.gke", "create"),
    ]
    assert changes[0]["after"] == {
        "pool": "acme-h100-dedicated",
        "cluster": "eu-west",
        "region": "eu-west-1",
        "gpu_class": "H100-80GB",
        "nodes": 1,
        "gpus_per_node": 8,
        "dedicated_tenant": "acme-eu",
    }
    assert "after" not in changes[1] and "before" not in changes[3]
    assert changes[3]["after"]["nodes"] == 3
    intent = intent_from_plan(plan, actor="ci")
    assert intent["kind"] == "change_capacity" and intent["actor"] == "ci"


@pytest.mark.parametrize(
    ("resource_change", "problem"),
    [
        (
            _rc("terraform_data.a", ["create"], None, {"input": None}, {"input": True}),
            "terraform_data.a: after.input is unknown until apply",
        ),
        (
            _rc(
                "terraform_data.a",
                ["create"],
                None,
                {"input": {**ACME, "gpupaas_nodes": None}},
                {"input": {"gpupaas_nodes": True}},
            ),
            "terraform_data.a: after.input is unknown until apply",
        ),
        (
            _rc("terraform_data.a", ["create"], None, {"input": {**ACME, "gpupaas_nodes": "many"}}),
            "terraform_data.a: after.input.gpupaas_nodes is 'many', not a whole number",
        ),
        (
            _rc("terraform_data.a", ["create"], None, {"input": {"gpupaas_pool": "p"}}),
            "terraform_data.a: after.input lacks gpupaas_region, gpupaas_gpu_class",
        ),
        (
            _rc("terraform_data.a", ["create", "forget"], None, {"input": ACME}),
            "terraform_data.a: actions ['create', 'forget'] are not ones a plan check knows",
        ),
    ],
)
def test_plans_that_cannot_be_decided_name_the_resource(resource_change: Any, problem: str) -> None:
    with pytest.raises(PlanError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        capacity_changes({"format_version": "1.2", "resource_changes": [resource_change]})
    with pytest.raises(PlanError, match="not a `show -json` plan"):
        capacity_changes({"resource_changes": []})


# -- a real tofu -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tofu() -> Path:
    return cached_artifact("build-tofu")


def _hcl(pools: dict[str, dict[str, Any]]) -> str:
    blocks = []
    for name, attrs in pools.items():
        body = "\n".join(f"    {k} = {json.dumps(v)}" for k, v in attrs.items())
        blocks.append(f'resource "terraform_data" "{name}" {{\n  input = {{\n{body}\n  }}\n}}\n')
    return "\n".join(blocks)


class Workdir:
    def __init__(self, tofu: Path, path: Path) -> None:
        self.tofu = tofu
        self.path = path
        self.env = {
            **os.environ,
            "TF_IN_AUTOMATION": "1",
            "TF_CLI_CONFIG_FILE": "/dev/null",
            "CHECKPOINT_DISABLE": "1",
        }

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.tofu), *args], cwd=self.path, capture_output=True, text=True, env=self.env, timeout=300
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def plan(self, pools: dict[str, dict[str, Any]], extra: str = "") -> Path:
        (self.path / "main.tf").write_text(_hcl(pools) + extra)
        self.run("plan", "-input=false", "-out=plan.bin")
        target = self.path / "plan.json"
        target.write_text(self.run("show", "-json", "plan.bin"))
        return target


@pytest.fixture(scope="module")
def workdir(tofu: Path, tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    """The fleet's acme and us-shared pools applied to a local state: the plans change them."""
    w = Workdir(tofu, tmp_path_factory.mktemp("tofu"))
    (w.path / "main.tf").write_text(_hcl({"acme": ACME, "us_shared": SHARED}))
    w.run("init", "-input=false", "-backend=false")
    w.run("apply", "-input=false", "-auto-approve")
    return w


@pytest.fixture(scope="module")
def server(stack: EmbeddedPDP) -> Iterator[str]:
    running = PdpServer(stack.point, listen="127.0.0.1:0").start()
    yield running.address
    running.stop()


def check_plan(plan: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "check-plan", str(plan), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_moving_a_dedicated_pool_abroad_exits_1_with_residency_violation(
    workdir: Workdir, server: str
) -> None:
    plan = workdir.plan(
        {"acme": {**ACME, "gpupaas_cluster": "us-east", "gpupaas_region": "us-east-1"}, "us_shared": SHARED}
    )
    out = check_plan(plan, "--server", server)
    assert out.returncode == 1, out.stderr
    decision = json.loads(out.stdout)
    assert [r["code"] for r in decision["reasons"]] == ["RESIDENCY_VIOLATION"]
    assert "terraform_data.acme places pool" in decision["reasons"][0]["message"]


def test_shrinking_a_tenants_dedicated_pool_below_entitlement_exits_3(workdir: Workdir, server: str) -> None:
    plan = workdir.plan({"us_shared": SHARED})  # the acme pool destroyed
    out = check_plan(plan, "--server", server)
    assert out.returncode == 3, out.stdout + out.stderr
    assert [r["code"] for r in json.loads(out.stdout)["reasons"]] == ["DEDICATED_CAPACITY_BELOW_ENTITLEMENT"]


def test_growing_shared_capacity_exits_0_and_unchanged_plans_too(workdir: Workdir, server: str) -> None:
    grown = workdir.plan({"acme": ACME, "us_shared": {**SHARED, "gpupaas_nodes": 10}})
    out = check_plan(grown, "--server", server)
    assert out.returncode == 0 and json.loads(out.stdout)["outcome"] == "ALLOW", out.stdout
    unchanged = workdir.plan({"acme": ACME, "us_shared": SHARED})
    assert json.loads(unchanged.read_text())["resource_changes"][0]["change"]["actions"] == ["no-op"]
    assert check_plan(unchanged, "--server", server).returncode == 0


def test_a_plan_hiding_capacity_until_apply_exits_2(workdir: Workdir, server: str) -> None:
    # The node count depends on a resource the same plan creates: unknown until apply.
    hidden = {**ACME, "gpupaas_pool": "acme-extra", "gpupaas_nodes": "${length(terraform_data.seed.id)}"}
    seed = 'resource "terraform_data" "seed" {}\n'
    plan = workdir.plan({"acme": ACME, "us_shared": SHARED, "hidden": hidden}, extra=seed)
    out = check_plan(plan, "--server", server)
    assert out.returncode == 2 and "terraform_data.hidden: after.input is unknown until apply" in out.stderr
    not_json = workdir.path / "not.json"
    not_json.write_text("{")
    assert check_plan(not_json, "--server", server).returncode == 2


def test_check_plan_embedded(workdir: Workdir, workspace: Path, opa_binary: Path) -> None:
    plan = workdir.plan({"us_shared": SHARED})
    ex = workspace / "examples"
    out = check_plan(
        plan,
        *("--tenants", str(ex / "tenants"), "--fleet", str(ex / "fleet.yaml")),
        *("--bundles", str(workspace / "bundles"), "--keys", str(workspace / "keys")),
        *("--state", str(workspace / "state")),
    )
    assert out.returncode == 3, out.stderr
