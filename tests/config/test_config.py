"""Invalid tenant and fleet documents fail with the file, the path inside it and the problem;
contradictions (checked by the policies themselves) are refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdp.bundles.build import build_bundle
from pdp.config import ConfigErrors, load_config, load_tenant_document, validate_tenant
from tests.conftest import ROOT


def write_tenant(workspace: Path, name: str, **changes: object) -> Path:
    base = yaml.safe_load((workspace / "examples" / "tenants" / "globex.yaml").read_text())
    base["tenant"].update({"name": name, "namespaces": [f"{name}-ns"], **changes})
    path = workspace / "examples" / "tenants" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def errors_of(workspace: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigErrors) as raised:
        config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
        build_bundle(config, policies=ROOT / "policies", out_dir=workspace / "out", signing_key=None)
    return [(Path(e.file).name, e.path, e.problem) for e in raised.value.errors]


def test_the_article_form_is_accepted(tmp_path: Path) -> None:
    doc = tmp_path / "t.yaml"
    doc.write_text(
        "tenant:\n"
        "  name: article\n  namespaces: [article]\n  entitlements: {H100-80GB: 4}\n"
        "  tier: enterprise\n  isolation: dedicated\n  data_residency: eu-only\n"
        "  allow_preemption: false\n  allow_gpu_sharing: false\n"
    )
    assert load_tenant_document(doc)["data_residency"] == "eu-only"


@pytest.mark.parametrize(
    ("change", "path", "problem"),
    [
        ({"tier": "gold"}, "tenant.tier", "is not one of"),
        ({"isolation": None}, "tenant.isolation", "is not one of"),
        ({"data_residency": "europe"}, "tenant.data_residency", "does not match"),
        ({"entitlements": {"H100-80GB": -4}}, "tenant.entitlements.H100-80GB", "less than the minimum"),
        ({"namespaces": ["Bad_NS"]}, "tenant.namespaces[0]", "does not match"),
        ({"allow_preemption": "no"}, "tenant.allow_preemption", "is not of type 'boolean'"),
        ({"colour": "blue"}, "tenant.colour", "is not a known field"),
    ],
)
def test_schema_errors_name_file_path_and_problem(
    workspace: Path, change: dict[str, object], path: str, problem: str
) -> None:
    write_tenant(workspace, "broken", **change)
    errors = errors_of(workspace)
    assert any(f == "broken.yaml" and p == path and problem in msg for f, p, msg in errors), errors


def test_missing_required_field_is_named(workspace: Path) -> None:
    doc = yaml.safe_load((workspace / "examples" / "tenants" / "globex.yaml").read_text())
    del doc["tenant"]["entitlements"]
    (workspace / "examples" / "tenants" / "globex.yaml").write_text(yaml.safe_dump(doc))
    assert ("globex.yaml", "tenant.entitlements", "is required") in errors_of(workspace)


def test_a_field_required_by_several_schema_branches_is_reported_once(workspace: Path) -> None:
    bare = workspace / "examples" / "tenants" / "bare.yaml"
    bare.write_text(yaml.safe_dump({"tenant": {"name": "bare"}}))
    errors = errors_of(workspace)
    assert errors.count(("bare.yaml", "tenant.tier", "is required")) == 1, errors


def test_every_missing_and_unknown_field_of_a_document_is_named_at_once() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "tenants" / "globex.yaml").read_text())
    for name in ("isolation", "data_residency", "allow_preemption"):
        del doc["tenant"][name]
    doc["tenant"].update({"colour": "blue", "owner": "ops"})
    named = {(e.path, e.problem) for e in validate_tenant(doc, "t.yaml")}
    assert named == {
        ("tenant.isolation", "is required"),
        ("tenant.data_residency", "is required"),
        ("tenant.allow_preemption", "is required"),
        ("tenant.colour", "is not a known field"),
        ("tenant.owner", "is not a known field"),
    }


def test_every_broken_file_is_reported_at_once(workspace: Path) -> None:
    write_tenant(workspace, "one", tier="gold")
    write_tenant(workspace, "two", isolation="private")
    files = {f for f, _, _ in errors_of(workspace)}
    assert files == {"one.yaml", "two.yaml"}


def test_yaml_syntax_error_names_line(workspace: Path) -> None:
    (workspace / "examples" / "tenants" / "bad.yaml").write_text("tenant:\n  name: [unclosed\n")
    ((file, where, problem),) = errors_of(workspace)
    assert file == "bad.yaml" and where.startswith("line ") and "not valid YAML" in problem


def test_fleet_errors_name_the_pool(workspace: Path) -> None:
    fleet = workspace / "examples" / "fleet.yaml"
    doc = yaml.safe_load(fleet.read_text())
    doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["gpus_per_node"] = 0
    fleet.write_text(yaml.safe_dump(doc))
    assert any(
        f == "fleet.yaml" and p == "fleet.clusters.eu-west.pools.eu-h100-shared.gpus_per_node"
        for f, p, _ in errors_of(workspace)
    )


@pytest.mark.parametrize(
    ("change", "path", "code"),
    [
        ({"tier": "spot", "allow_preemption": False}, "tenant.allow_preemption", "TENANT_CONTRADICTION"),
        ({"data_residency": "cn-only"}, "tenant.data_residency", "RESIDENCY_UNSATISFIABLE"),
        ({"entitlements": {"B200": 8}}, "tenant.entitlements.B200", "GPU_CLASS_UNKNOWN"),
        (
            {"data_residency": "us-only", "entitlements": {"MI300X": 2}},
            "tenant.entitlements.MI300X",
            "ENTITLEMENT_UNSATISFIABLE",
        ),
        ({"namespaces": ["globex-ml"]}, "tenant.namespaces[0]", "NAMESPACE_CONFLICT"),
    ],
)
def test_contradictions_are_refused_with_a_reason(
    workspace: Path, opa_binary: Path, change: dict[str, object], path: str, code: str
) -> None:
    write_tenant(workspace, "contra", **change)
    with pytest.raises(ConfigErrors) as raised:
        config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
        build_bundle(config, policies=ROOT / "policies", out_dir=workspace / "out", signing_key=None)
    found = [e for e in raised.value.errors if Path(e.file).name == "contra.yaml" and e.path == path]
    assert [e.code for e in found] == [code], raised.value.errors
    assert "contra" in found[0].problem
    assert not (workspace / "out" / "gpupaas.tar.gz").exists()


@pytest.mark.parametrize(
    ("pool", "names", "path", "code"),
    [
        (
            "us-a100-spot",
            ["us-spot-1", "eu-acme-1", "us-spot-3", "us-spot-4"],
            "fleet.clusters.us-east.pools.us-a100-spot.node_names[1]",
            "NODE_NAME_CONFLICT",
        ),
        (
            "us-a100-spot",
            ["us-spot-1"],
            "fleet.clusters.us-east.pools.us-a100-spot.node_names",
            "NODE_COUNT_MISMATCH",
        ),
    ],
)
def test_fleet_node_names_that_contradict_are_refused(
    workspace: Path, opa_binary: Path, pool: str, names: list[str], path: str, code: str
) -> None:
    fleet = workspace / "examples" / "fleet.yaml"
    doc = yaml.safe_load(fleet.read_text())
    doc["fleet"]["clusters"]["us-east"]["pools"][pool]["node_names"] = names
    fleet.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigErrors) as raised:
        config = load_config(workspace / "examples" / "tenants", fleet)
        build_bundle(config, policies=ROOT / "policies", out_dir=workspace / "out", signing_key=None)
    found = [e for e in raised.value.errors if e.path == path]
    assert [(Path(e.file).name, e.code) for e in found] == [("fleet.yaml", code)], raised.value.errors


def test_fleet_node_names_must_be_node_names(workspace: Path) -> None:
    fleet = workspace / "examples" / "fleet.yaml"
    doc = yaml.safe_load(fleet.read_text())
    doc["fleet"]["clusters"]["us-east"]["pools"]["us-a100-mig"]["node_names"] = ["us-mig-1", "Not_A_Node"]
    fleet.write_text(yaml.safe_dump(doc))
    assert any(
        p == "fleet.clusters.us-east.pools.us-a100-mig.node_names[1]" for _, p, _ in errors_of(workspace)
    )


def test_a_failed_build_keeps_the_current_bundle(workspace: Path, opa_binary: Path) -> None:
    config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    good = build_bundle(config, policies=ROOT / "policies", out_dir=workspace / "out", signing_key=None)
    before = (workspace / "out" / "gpupaas.tar.gz").read_bytes()
    write_tenant(workspace, "contra", data_residency="cn-only")
    errors_of(workspace)
    assert (workspace / "out" / "gpupaas.tar.gz").read_bytes() == before == good.path.read_bytes()
