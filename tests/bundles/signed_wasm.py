"""Signed wasm bundles of the examples for the verification tests, and ways to tamper with one."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import yaml

from pdp.bundles.build import BuiltBundle, build_bundle
from pdp.bundles.signing import KeyPair, generate_keypair
from pdp.config import load_config
from tests.conftest import EXAMPLES, ROOT

DENIED = "02-acme-eu-deploy-us.json"  # DENY (RESIDENCY_VIOLATION) under the examples' policy


def build_signed(root: Path, keys: KeyPair, *, extra_gpus: int = 0) -> BuiltBundle:
    """The examples built into root/out (signed, both targets); `extra_gpus` changes the data so
    the revision differs."""
    examples = root / "examples"
    if not examples.exists():
        shutil.copytree(EXAMPLES, examples)
    acme = examples / "tenants" / "acme-eu.yaml"
    doc = yaml.safe_load(acme.read_text())
    doc["tenant"]["entitlements"]["H100-80GB"] = (
        doc["tenant"]["entitlements"].get("H100-80GB", 0) + extra_gpus
    )
    acme.write_text(yaml.safe_dump(doc))
    config = load_config(examples / "tenants", examples / "fleet.yaml")
    return build_bundle(
        config, policies=ROOT / "policies", out_dir=root / "out", signing_key=keys.private_key, wasm=True
    )


def keys_in(directory: Path) -> KeyPair:
    return generate_keypair(directory)


def rewrite(bundle: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """The tarball with each member's content passed through `change` (None drops the member)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as src,
        tarfile.open(fileobj=out, mode="w:gz") as dst,
    ):
        for member in src.getmembers():
            handle = src.extractfile(member)
            data = handle.read() if handle is not None else b""
            new = change(member.name.lstrip("/"), data)
            if new is None:
                continue
            member.size = len(new)
            dst.addfile(member, io.BytesIO(new))
    return out.getvalue()


def allow_everywhere(name: str, data: bytes) -> bytes | None:
    """data.json with acme-eu's residency lifted: the DENIED intent would be allowed."""
    if name != "data.json":
        return data
    doc = json.loads(data)
    doc["gpupaas"]["tenants"]["acme-eu"]["data_residency"] = "any"
    return json.dumps(doc).encode()


def unsigned(name: str, data: bytes) -> bytes | None:
    return None if name == ".signatures.json" else data
