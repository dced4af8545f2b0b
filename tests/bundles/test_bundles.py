"""Signed, versioned bundles against the real OPA: tampered or unsigned bundles are refused while
the last good revision keeps answering; a properly signed new revision is activated."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pdp.bundles.build import build_bundle, policy_files, publish
from pdp.bundles.signing import ensure_keypair
from pdp.config import load_config
from pdp.embedded import EmbeddedPDP
from pdp.opa.bundle import CURRENT_BUNDLE
from tests.conftest import ROOT, embedded_settings, load_intent


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def tamper(bundle: Path, out: Path) -> None:
    """Rewrite data.json inside a signed bundle, keeping its (now wrong) signature."""
    members = []
    with tarfile.open(bundle, "r:gz") as tar:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name.lstrip("/") == "data.json":
                doc = json.loads(data)
                doc["gpupaas"]["tenants"]["acme-eu"]["data_residency"] = "any"
                data = json.dumps(doc).encode()
                member.size = len(data)
            members.append((member, data))
    with tarfile.open(out, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def test_revision_is_derived_from_content(workspace: Path, opa_binary: Path) -> None:
    config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    policies = ROOT / "policies"
    a = build_bundle(
        config, policies=policies, out_dir=workspace / "a", signing_key=None, source_dir=workspace
    )
    b = build_bundle(
        config, policies=policies, out_dir=workspace / "b", signing_key=None, source_dir=workspace
    )
    assert a.revision == b.revision

    acme = workspace / "examples" / "tenants" / "acme-eu.yaml"
    doc = yaml.safe_load(acme.read_text())
    doc["tenant"]["entitlements"]["H100-80GB"] = 6
    acme.write_text(yaml.safe_dump(doc))
    changed = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    c = build_bundle(
        changed, policies=policies, out_dir=workspace / "c", signing_key=None, source_dir=workspace
    )
    assert c.revision != a.revision

    with tarfile.open(a.path) as tar:
        names = {m.name.lstrip("/") for m in tar.getmembers()}
        manifest = json.load(tar.extractfile("/.manifest") or tar.extractfile(".manifest"))  # type: ignore[arg-type]
    assert manifest["revision"] == a.revision and manifest["roots"] == ["gpupaas"]
    assert "data.json" in names
    assert not any(n.endswith("_test.rego") or "/samples/" in n for n in names)


def test_signed_bundle_carries_signatures(workspace: Path, opa_binary: Path) -> None:
    from pdp.bundles.signing import ensure_keypair

    keys = ensure_keypair(workspace / "keys")
    config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    built = build_bundle(
        config, policies=ROOT / "policies", out_dir=workspace / "out", signing_key=keys.private_key
    )
    with tarfile.open(built.path) as tar:
        names = {m.name.lstrip("/") for m in tar.getmembers()}
    assert ".signatures.json" in names and built.signed
    assert (workspace / "out" / CURRENT_BUNDLE).read_bytes() == built.path.read_bytes()


def test_tampered_and_unsigned_bundles_are_refused_and_a_signed_one_activates(
    workspace: Path, opa_binary: Path
) -> None:
    deploy_us = load_intent("02-acme-eu-deploy-us.json")
    with EmbeddedPDP(embedded_settings(workspace)) as stack:
        assert stack.bundle is not None
        good = stack.bundle.revision
        first = stack.point.decide(deploy_us)
        assert first.outcome == "DENY" and "RESIDENCY_VIOLATION" in first.reason_codes
        assert first.bundle_revision == good

        # 1. A tampered bundle (data changed after signing) is refused.
        tampered = workspace / "tampered.tar.gz"
        tamper(stack.bundle.path, tampered)
        publish(tampered, workspace / "bundles")
        wait_for(lambda: stack.bundle_status().get("code") == "bundle_error")
        status = stack.bundle_status()
        assert status["active_revision"] == good
        assert "data.json: digest mismatch" in str(status["message"])
        still = stack.point.decide(deploy_us)
        assert still.bundle_revision == good
        assert "RESIDENCY_VIOLATION" in still.reason_codes

        # 2. An unsigned bundle with a different revision is refused too.
        acme = workspace / "examples" / "tenants" / "acme-eu.yaml"
        doc = yaml.safe_load(acme.read_text())
        doc["tenant"]["entitlements"]["H100-80GB"] = 8
        acme.write_text(yaml.safe_dump(doc))
        config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
        unsigned = build_bundle(
            config, policies=ROOT / "policies", out_dir=workspace / "unsigned", signing_key=None
        )
        publish(unsigned.path, workspace / "bundles")
        wait_for(lambda: "signature" in str(stack.bundle_status().get("message", "")))
        assert stack.bundle_status()["active_revision"] == good
        assert stack.point.decide(deploy_us).bundle_revision == good

        # 3. The same content, signed, is activated.
        signed = stack.build()
        assert signed.revision == unsigned.revision != good
        wait_for(lambda: stack.point.decide(deploy_us).bundle_revision == signed.revision)
        assert stack.bundle_status()["active_revision"] == signed.revision


def test_a_config_without_optional_fields_builds_for_both_engines(workspace: Path, opa_binary: Path) -> None:
    # Optional fields absent everywhere (no tenant with an SLA block, no dedicated pool naming a
    # tenant) must not break the build: `opa build -O=1` once type-checked the policies against
    # the bundle's own data and refused exactly such a fleet (found by the 1,000-tenant bench).
    tenants = workspace / "examples" / "tenants"
    for path in tenants.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["tenant"].pop("sla", None)
        doc["tenant"]["isolation"] = "shared"
        path.write_text(yaml.safe_dump(doc))
    fleet_path = workspace / "examples" / "fleet.yaml"
    fleet = yaml.safe_load(fleet_path.read_text())
    for cluster in fleet["fleet"]["clusters"].values():
        for pool in cluster["pools"].values():
            pool["isolation"] = "shared"
            pool.pop("tenant", None)
    fleet_path.write_text(yaml.safe_dump(fleet))
    config = load_config(tenants, fleet_path)
    built = build_bundle(
        config, policies=ROOT / "policies", out_dir=workspace / "b", signing_key=None, wasm=True
    )
    assert built.path.exists() and built.wasm_path is not None and built.wasm_path.exists()


def test_bundle_members_are_named_by_their_place_in_the_bundle(workspace: Path, opa_binary: Path) -> None:
    # Member names once carried the build's temporary folder (/tmp/pdp-bundle-XXXX/bundle/...):
    # a path of the build machine in every bundle, and no two builds of one input alike.
    config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    keys = ensure_keypair(workspace / "keys")
    builds = [
        build_bundle(
            config,
            policies=ROOT / "policies",
            out_dir=workspace / out,
            signing_key=keys.private_key,
            wasm=True,
        )
        for out in ("one", "two")
    ]
    rego = {
        f"gpupaas/{p.relative_to(ROOT / 'policies' / 'gpupaas').as_posix()}"
        for p in policy_files(ROOT / "policies")
    }
    for tarball, extra in (
        (builds[0].path, {".signatures.json"}),
        (builds[0].wasm_path, {"policy.wasm", ".signatures.json"}),
    ):
        assert tarball is not None
        with tarfile.open(tarball, "r:gz") as tar:
            names = {m.name.lstrip("/") for m in tar.getmembers()}
        assert names == rego | {"data.json", ".manifest"} | extra, sorted(names)
    assert builds[0].path.read_bytes() == builds[1].path.read_bytes()  # reproducible
    assert builds[0].wasm_path is not None and builds[1].wasm_path is not None
    assert builds[0].wasm_path.read_bytes() == builds[1].wasm_path.read_bytes()
