"""The pure rendering of the Slurm substrate: fleet -> partitions, nodes and GRES; tenant policy ->
QOS, account and associations; the hook's settings. No Slurm needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from pdp.substrate.slurm import accounts, fleet, lua
from tests.conftest import EXAMPLES, ROOT

EXAMPLE_FLEET = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]


def tenant(name: str) -> dict[str, object]:
    return yaml.safe_load((EXAMPLES / "tenants" / f"{name}.yaml").read_text())["tenant"]  # type: ignore[no-any-return]


def test_gres_types_have_no_hyphen() -> None:
    assert fleet.gres_type("H100-80GB") == "h100_80gb"
    assert fleet.gres_type("MI300X") == "mi300x"
    assert fleet.gres_type("A100 40GB (SXM4)") == "a100_40gb_sxm4"


def test_every_pool_is_a_partition_with_its_nodes() -> None:
    parts = {p.name: p for p in fleet.partitions(EXAMPLE_FLEET)}
    assert len(parts) == 7
    dedicated = parts["acme-h100-dedicated"]
    assert (dedicated.cluster, dedicated.region, dedicated.jurisdiction) == ("eu-west", "eu-west-1", "EU")
    assert dedicated.tenant == "acme-eu" and dedicated.gpus == 16
    assert dedicated.nodes == ("acme-h100-dedicated-1", "acme-h100-dedicated-2")
    conf = fleet.slurm_conf_fleet(EXAMPLE_FLEET)
    assert "PartitionName=acme-h100-dedicated Nodes=acme-h100-dedicated-1,acme-h100-dedicated-2" in conf
    assert "AllowAccounts=acme-eu" in conf and conf.count("AllowAccounts=") == 1
    assert "AccountingStorageTRES=gres/gpu,gres/gpu:a100_40gb,gres/gpu:h100_80gb,gres/gpu:mi300x" in conf
    assert conf.count("NodeName=") == 24
    gres = fleet.gres_conf(EXAMPLE_FLEET)
    assert "NodeName=us-a100-spot-4 Name=gpu Type=a100_40gb File=/dev/nvidia[0-7]" in gres


def test_a_fleet_slurm_cannot_hold_is_refused_naming_the_pool() -> None:
    clash = json.loads(json.dumps(EXAMPLE_FLEET))
    pools = clash["clusters"]
    pools["us-east"]["pools"]["eu-h100-shared"] = pools["eu-west"]["pools"]["eu-h100-shared"]
    with pytest.raises(fleet.FleetNotRenderable, match="pool 'eu-h100-shared' of cluster 'us-east'"):
        fleet.partitions(clash)
    types = json.loads(json.dumps(EXAMPLE_FLEET))
    types["gpu_classes"]["h100 80gb"] = types["gpu_classes"]["H100-80GB"]
    types["clusters"]["us-east"]["pools"]["x"] = {**types["clusters"]["us-east"]["pools"]["us-h100-shared"]}
    types["clusters"]["us-east"]["pools"]["x"]["gpu_class"] = "h100 80gb"
    with pytest.raises(fleet.FleetNotRenderable, match="both become GRES type 'h100_80gb'"):
        fleet.partitions(types)


def test_tier_ranks_are_the_policys(opa_binary: Path) -> None:
    out = subprocess.run(
        [str(opa_binary), "eval", "-f", "json", "-d", str(ROOT / "policies"), "data.gpupaas.lib.tiers"],
        capture_output=True,
        text=True,
        check=True,
    )
    tiers = json.loads(out.stdout)["result"][0]["expressions"][0]["value"]
    assert {name: t["rank"] for name, t in tiers.items()} == accounts.TIER_RANK


def test_qos_preempt_exactly_what_the_preemption_policy_allows() -> None:
    qos = {q["metadata"]["name"]: q["spec"] for q in accounts.qos_objects()}
    assert qos["gpupaas-enterprise"]["preempt"] == [
        "gpupaas-spot-preemptible",
        "gpupaas-standard-preemptible",
    ]
    assert qos["gpupaas-standard"]["preempt"] == ["gpupaas-spot-preemptible"]
    assert qos["gpupaas-spot-preemptible"]["preempt"] == []
    listed = {victim for spec in qos.values() for victim in spec["preempt"]}
    # A tenant that forbids preemption gets a QOS no Preempt list names: never preempted.
    assert not listed & {"gpupaas-enterprise", "gpupaas-standard", "gpupaas-spot"}
    assert qos["gpupaas-spot-preemptible"]["preempt_mode"] == "requeue"
    # Created lowest rank first: a Preempt list only names QOS that exist already.
    names = [q["metadata"]["name"] for q in accounts.qos_objects()]
    assert names.index("gpupaas-spot-preemptible") < names.index("gpupaas-enterprise")
    assert accounts.tenant_qos(tenant("initech-spot")) == "gpupaas-spot-preemptible"
    assert accounts.tenant_qos(tenant("acme-eu")) == "gpupaas-enterprise"


def test_tenant_objects_follow_residency_isolation_entitlements_and_sharing() -> None:
    acme = accounts.render(tenant("acme-eu"), EXAMPLE_FLEET, ["alice"])
    assert [o["kind"] for o in acme["namespaces"]] == ["SlurmAccount"]
    spec = acme["kueue"][0]["spec"]
    assert spec == {
        "account": "acme-eu",
        "qos": "gpupaas-enterprise",
        "grp_tres": {"gres/gpu": 4, "gres/gpu:h100_80gb": 4},
        "partitions": ["acme-h100-dedicated"],
        "users": ["alice"],
    }
    globex = accounts.render(tenant("globex"), EXAMPLE_FLEET, ["bob", "bob"])["kueue"][0]["spec"]
    # Shared pools of the entitled classes anywhere (residency any), time-sliced and MIG included.
    assert globex["partitions"] == [
        "eu-a100-timeslice",
        "eu-h100-shared",
        "us-a100-mig",
        "us-a100-spot",
        "us-h100-shared",
    ]
    assert globex["users"] == ["bob"] and globex["grp_tres"]["gres/gpu"] == 12
    spot = accounts.render(tenant("initech-spot"), EXAMPLE_FLEET, [])["kueue"][0]["spec"]
    assert spot["partitions"] == ["us-a100-mig", "us-a100-spot"]  # us-only, A100 only
    no_sharing = {**tenant("globex"), "allow_gpu_sharing": False}
    parts = accounts.render(no_sharing, EXAMPLE_FLEET, [])["kueue"][0]["spec"]["partitions"]
    assert parts == ["eu-h100-shared", "us-h100-shared"]


def test_hook_settings_render_a_lua_table_and_refuse_bad_values(tmp_path: Path) -> None:
    sock = Path("/run/gpupaas-pdp/http.sock")
    text = lua.render_settings(EXAMPLE_FLEET, lua.HookSettings(pdp_socket=sock))
    assert text.startswith("-- Rendered by pdp/substrate/slurm/lua.py")
    assert 'socket = "/run/gpupaas-pdp/http.sock",' in text
    assert "host =" not in text and "insecure_loopback_http" not in text
    assert '["acme-h100-dedicated"] = { ["cluster"] = "eu-west"' in text
    assert "token_file" not in text
    http = lua.HookSettings(pdp_url="http://127.0.0.1:8080/pdp", insecure_loopback_http=True)
    text = lua.render_settings(EXAMPLE_FLEET, http)
    assert 'host = "127.0.0.1",' in text and "port = 8080," in text and 'path = "/pdp",' in text
    assert "insecure_loopback_http = true," in text and "socket =" not in text
    for bad, match in (
        ({}, "give the PDP's pdp_socket"),
        ({"pdp_socket": sock, "pdp_url": "http://127.0.0.1:1"}, "give the PDP's pdp_socket"),
        ({"pdp_socket": Path("http.sock")}, "expected an absolute path"),
        ({"pdp_url": "http://127.0.0.1:1"}, "whoever holds the port"),
        ({"pdp_url": "https://pdp:443", "insecure_loopback_http": True}, "expected http://HOST:PORT"),
        ({"pdp_url": "http://10.0.0.1:80", "insecure_loopback_http": True}, "on loopback"),
        ({"pdp_socket": sock, "timeout": 0}, "timeout 0"),
        ({"pdp_socket": sock, "cache_seconds": -1}, "cache_seconds -1"),
    ):
        with pytest.raises(ValueError, match=match):
            lua.HookSettings(**bad)  # type: ignore[arg-type]
    lua.install(tmp_path, EXAMPLE_FLEET, lua.HookSettings(pdp_socket=sock))
    assert (tmp_path / lua.SCRIPT).read_text() == lua.script_text()
    script = lua.script_text()
    assert "function slurm_job_submit" in script and "function slurm_job_modify" in script
