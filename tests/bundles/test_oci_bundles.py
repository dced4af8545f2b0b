"""Signed bundles as OCI artifacts, end to end on real components: the CNCF distribution registry
(scripts/build-registry) on loopback over TLS with a test CA, `pdp publish-bundle --oci` pushing with
oras (scripts/build-oras), and the pinned OPA (`opa run --server`, supervised by OpaSidecar) pulling
the tag through a `type: oci` service and verifying the bundle signature; the PDP decides from it.

Attack: whoever can push to the tag (a stolen registry credential) pushes a tampered or an unsigned
bundle; OPA refuses both and the last good revision keeps deciding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pdp.bundles.build import BuiltBundle, build_bundle
from pdp.bundles.oci import (
    BUNDLE_LAYER_MEDIA_TYPE,
    CONFIG_MEDIA_TYPE,
    OciError,
    OciReference,
    push_bundle,
)
from pdp.bundles.signing import KeyPair, ensure_keypair
from pdp.config import load_config
from pdp.engine.opa_http import OpaHttpEngine
from pdp.opa.sidecar import OpaSidecar, SidecarSettings
from pdp.opa.status import read_bundle_status
from pdp.point import DecisionPoint
from tests.artifacts import cached_artifact
from tests.bundles.test_bundles import tamper, wait_for
from tests.conftest import ROOT, load_intent
from tests.oci_registry import Registry, running_registry

SCALE_PAST_ENTITLEMENT = "05-acme-eu-scale-past-entitlement.json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def oras() -> Path:
    return cached_artifact("build-oras")


def build(workspace: Path, out: str, keys: KeyPair | None, *, entitlement: int | None = None) -> BuiltBundle:
    if entitlement is not None:
        acme = workspace / "examples" / "tenants" / "acme-eu.yaml"
        doc = yaml.safe_load(acme.read_text())
        doc["tenant"]["entitlements"]["H100-80GB"] = entitlement
        acme.write_text(yaml.safe_dump(doc))
    config = load_config(workspace / "examples" / "tenants", workspace / "examples" / "fleet.yaml")
    return build_bundle(
        config,
        policies=ROOT / "policies",
        out_dir=workspace / out,
        signing_key=keys.private_key if keys else None,
    )


def publish(bundle: Path, reference: str, registry: Registry, oras: Path) -> dict[str, str]:
    """`pdp publish-bundle --oci`, the command an operator (or CI) runs."""
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "publish-bundle", "--oci", reference, "--bundle", str(bundle),
         "--ca-file", str(registry.ca.cert)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PDP_ORAS_BIN": str(oras)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    pushed: dict[str, str] = json.loads(out.stdout)
    return pushed


def oras_push(oras: Path, registry: Registry, reference: str, bundle: Path, workdir: Path) -> None:
    """The attacker's push: their own oras, straight to the tag, no `pdp` in the way."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle, workdir / "gpupaas.tar.gz")
    (workdir / "config.json").write_text("{}")
    out = subprocess.run(
        [str(oras), "push", "--ca-file", str(registry.ca.cert), "--config",
         f"config.json:{CONFIG_MEDIA_TYPE}", reference, f"gpupaas.tar.gz:{BUNDLE_LAYER_MEDIA_TYPE}"],
        cwd=workdir, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def oci_opa(workspace: Path, registry: Registry, reference: str, keys: KeyPair) -> OpaSidecar:
    return OpaSidecar(
        SidecarSettings(
            bundle_service_url=registry.url,
            verification_key=keys.public_key,
            workdir=workspace / "opa",
            oci_reference=reference,
            bundle_service_ca=registry.ca.cert,
        )
    )


def manifest(registry: Registry, reference: OciReference) -> dict[str, object]:
    """The manifest under the tag, read back from the registry (not from what oras said)."""
    import ssl
    import urllib.request

    request = urllib.request.Request(
        f"{registry.url}/v2/{reference.repository}/manifests/{reference.tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    context = ssl.create_default_context(cafile=str(registry.ca.cert))
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:
        doc: dict[str, object] = json.load(resp)
    return doc


def test_opa_serves_decisions_from_the_tag_and_follows_a_new_signed_revision(
    workspace: Path, opa_binary: Path, registry: Registry, oras: Path
) -> None:
    keys = ensure_keypair(workspace / "keys")
    reference = f"{registry.registry}/gpupaas/bundle:prod"
    first = build(workspace, "one", keys)
    pushed = publish(first.path, reference, registry, oras)
    assert pushed["revision"] == first.revision and pushed["pinned"].endswith(pushed["digest"])

    doc = manifest(registry, OciReference.parse(reference))
    layers = doc["layers"]
    assert isinstance(layers, list) and [layer["mediaType"] for layer in layers] == [BUNDLE_LAYER_MEDIA_TYPE]
    assert doc["config"]["mediaType"] == CONFIG_MEDIA_TYPE  # type: ignore[index]
    assert doc["annotations"]["org.opencontainers.image.version"] == first.revision  # type: ignore[index]

    scale = load_intent(SCALE_PAST_ENTITLEMENT)
    with oci_opa(workspace, registry, reference, keys) as opa:
        opa.wait_ready(60)
        point = DecisionPoint(OpaHttpEngine(opa.addr))
        before = point.decide(scale)
        assert before.bundle_revision == first.revision
        assert before.outcome == "NEEDS_APPROVAL", before
        assert before.reason_codes == ["QUOTA_APPROVAL_REQUIRED"], before

        # A new signed revision (acme-eu entitled to 6 H100s) pushed under the same tag.
        second = build(workspace, "two", keys, entitlement=6)
        assert second.revision != first.revision
        publish(second.path, reference, registry, oras)
        wait_for(lambda: point.decide(scale).bundle_revision == second.revision, timeout=60)
        after = point.decide(scale)
        assert after.outcome == "ALLOW" and "QUOTA_APPROVAL_REQUIRED" not in after.reason_codes, after
        assert read_bundle_status(opa.addr).active_revision == second.revision

    # Pinned by digest (what a GitOps repository records): the first revision, wherever the tag is.
    with oci_opa(workspace / "pinned", registry, pushed["pinned"], keys) as pinned:
        pinned.wait_ready(60)
        assert DecisionPoint(OpaHttpEngine(pinned.addr)).decide(scale).bundle_revision == first.revision


def test_a_tampered_or_unsigned_artifact_under_the_tag_is_refused_and_the_old_revision_serves(
    workspace: Path, opa_binary: Path, registry: Registry, oras: Path
) -> None:
    keys = ensure_keypair(workspace / "keys")
    reference = f"{registry.registry}/gpupaas/attacked:prod"
    good = build(workspace, "good", keys)
    publish(good.path, reference, registry, oras)
    deploy_us = load_intent("02-acme-eu-deploy-us.json")

    with oci_opa(workspace, registry, reference, keys) as opa:
        opa.wait_ready(60)
        point = DecisionPoint(OpaHttpEngine(opa.addr))
        first = point.decide(deploy_us)
        assert first.bundle_revision == good.revision and "RESIDENCY_VIOLATION" in first.reason_codes

        def refused(needle: str) -> Callable[[], bool]:
            return lambda: needle in (read_bundle_status(opa.addr).refused or "")

        # 1. The signed bundle with data.json rewritten (acme-eu's residency lifted), same signature.
        tampered = workspace / "tampered.tar.gz"
        tamper(good.path, tampered)
        oras_push(oras, registry, reference, tampered, workspace / "attack-1")
        wait_for(refused("data.json: digest mismatch"), timeout=60)
        status = read_bundle_status(opa.addr)
        assert status.active_revision == good.revision
        still = point.decide(deploy_us)
        assert still.bundle_revision == good.revision and "RESIDENCY_VIOLATION" in still.reason_codes

        # 2. An unsigned bundle with a new revision: `pdp publish-bundle` will not push it...
        unsigned = build(workspace, "unsigned", None, entitlement=8)
        with pytest.raises(OciError, match="unsigned"):
            push_bundle(unsigned.path, OciReference.parse(reference), ca_file=registry.ca.cert, oras=oras)
        # ...and when the attacker pushes it anyway, OPA refuses it for want of a signature.
        oras_push(oras, registry, reference, unsigned.path, workspace / "attack-2")
        wait_for(refused("signature"), timeout=60)
        assert read_bundle_status(opa.addr).active_revision == good.revision
        assert point.decide(deploy_us).bundle_revision == good.revision

        # 3. The same content, signed and published, activates.
        signed = build(workspace, "signed", keys)
        assert signed.revision == unsigned.revision != good.revision
        publish(signed.path, reference, registry, oras)
        wait_for(lambda: point.decide(deploy_us).bundle_revision == signed.revision, timeout=60)
        assert read_bundle_status(opa.addr).refused is None


def test_the_charts_opa_arguments_pull_the_pinned_artifact(
    workspace: Path, opa_binary: Path, registry: Registry, oras: Path
) -> None:
    # The OPA sidecar exactly as the chart renders it with bundles.ociReference (pinned by digest,
    # as the Argo CD example sets it), run against the real registry; only the pod's paths and
    # ports are mapped to this machine, and deploy/opa-config.yaml is the ConfigMap's content.
    from pdp.embedded import opa_ready
    from tests.helm import template
    from tests.ports import free_port

    keys = ensure_keypair(workspace / "keys")
    bundle = build(workspace, "b", keys)
    pushed = publish(bundle.path, f"{registry.registry}/gpupaas/chart:prod", registry, oras)
    objects = template(f"bundles.ociReference={pushed['pinned']}", "bundles.registryCIDR=127.0.0.1/32")
    assert not [o for o in objects if o["metadata"]["name"] == "pdp-bundles"]  # no bundle server
    pdp = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "pdp")
    opa = next(c for c in pdp["spec"]["template"]["spec"]["containers"] if c["name"] == "opa")
    port = free_port()
    pod_paths = {
        "--addr=127.0.0.1:8181": f"--addr=127.0.0.1:{port}",
        "--config-file=/config/opa-config.yaml": f"--config-file={ROOT / 'deploy' / 'opa-config.yaml'}",
        "--set-file=keys.gpupaas.key=/keys/bundle-signing.pub.pem": (
            f"--set-file=keys.gpupaas.key={keys.public_key}"
        ),
        "--diagnostic-addr=0.0.0.0:8182": f"--diagnostic-addr=127.0.0.1:{free_port()}",
    }
    argv = [str(opa_binary), *(pod_paths.get(a, a) for a in opa["args"])]
    assert (
        f"--set=bundles.gpupaas.resource={pushed['pinned']}" in argv
        and "--set=services.bundles.type=oci" in argv
    )
    # The pod mounts the CA Secret at /certs/ca.crt, which deploy/opa-config.yaml names.
    argv.append(f"--set=services.bundles.tls.ca_cert={registry.ca.cert}")
    with (workspace / "opa.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=workspace, stdout=log, stderr=log)
    try:
        wait_for(lambda: opa_ready(f"127.0.0.1:{port}"), timeout=60)
        decision = DecisionPoint(OpaHttpEngine(f"127.0.0.1:{port}")).decide(
            load_intent(SCALE_PAST_ENTITLEMENT)
        )
        assert decision.bundle_revision == bundle.revision
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_registry_must_be_trusted_opa_refuses_an_unknown_certificate(
    workspace: Path, opa_binary: Path, registry: Registry, oras: Path
) -> None:
    # OPA trusting only another CA (a registry impersonated on the path) activates nothing.
    from pdp.net.certs import make_ca

    keys = ensure_keypair(workspace / "keys")
    reference = f"{registry.registry}/gpupaas/trust:prod"
    publish(build(workspace, "b", keys).path, reference, registry, oras)
    other = make_ca(workspace / "other-ca")
    settings = SidecarSettings(
        bundle_service_url=registry.url,
        verification_key=keys.public_key,
        workdir=workspace / "opa",
        oci_reference=reference,
        bundle_service_ca=other.cert,
    )
    with OpaSidecar(settings) as opa, pytest.raises(TimeoutError):
        opa.wait_ready(8)
    assert "certificate" in (workspace / "opa" / "opa.log").read_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("gpupaas/bundle:prod", "registry's host"),
        ("registry.example.com/gpupaas/bundle", "no tag"),
        ("registry.example.com/GPUPaaS/bundle:prod", "not a valid name"),
        ("registry.example.com/gpupaas/bundle:pr/od", "not a valid tag"),
        ("registry.example.com/gpupaas/bundle:-x", "not a valid tag"),
    ],
)
def test_a_malformed_reference_is_named_with_its_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OciReference.parse(text)


def test_plain_http_is_refused_off_loopback_and_allowed_on_it(tmp_path: Path) -> None:
    from pdp.bundles.oci import transport_args

    remote = OciReference.parse("registry.example.com:5000/gpupaas/bundle:prod")
    with pytest.raises(ValueError, match="not on loopback"):
        transport_args(remote, ca_file=None, plain_http=True, registry_config=None)
    local = OciReference.parse("127.0.0.1:5000/gpupaas/bundle:prod")
    assert transport_args(local, ca_file=None, plain_http=True, registry_config=None) == ["--plain-http"]
    assert (
        OciReference.parse("[::1]:5000/g/b:t").on_loopback
        and OciReference.parse("localhost/g/b:t").on_loopback
    )


def test_publish_bundle_names_the_problem_before_pushing(
    workspace: Path, opa_binary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pdp.cli import main

    bad_reference = main(["publish-bundle", "--oci", "gpupaas/bundle:prod"])
    assert bad_reference == 2 and "registry's host" in capsys.readouterr().err
    missing = main(
        ["publish-bundle", "--oci", "127.0.0.1:5000/g/b:t", "--bundle", str(workspace / "none.tar.gz")]
    )
    assert missing == 2 and "no such file" in capsys.readouterr().err
    unsigned = build(workspace, "u", None)
    refused = main(["publish-bundle", "--oci", "127.0.0.1:5000/g/b:t", "--bundle", str(unsigned.path)])
    assert refused == 1 and "unsigned" in capsys.readouterr().err
    not_a_bundle = workspace / "x.tar.gz"
    not_a_bundle.write_bytes(b"not gzip")
    assert main(["publish-bundle", "--oci", "127.0.0.1:5000/g/b:t", "--bundle", str(not_a_bundle)]) == 1
    assert "not a bundle tarball" in capsys.readouterr().err
    off_loopback = build(workspace, "s", ensure_keypair(workspace / "keys"))
    plain = main(
        [
            "publish-bundle",
            "--oci",
            "registry.example.com/g/b:t",
            "--bundle",
            str(off_loopback.path),
            "--plain-http",
        ]
    )
    assert plain == 2 and "not on loopback" in capsys.readouterr().err
