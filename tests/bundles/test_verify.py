"""A bundle's signature, checked as OPA checks it (pdp/bundles/verify.py): the signed wasm bundle
`pdp build --engine wasm` writes verifies; one signed by another key, changed after signing,
with a file added or removed, or without its signature does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdp.bundles.build import BuiltBundle
from pdp.bundles.signing import KeyPair
from pdp.bundles.verify import BundleSignatureError, file_hash, load_public_key, verified_files
from pdp.engine.wasm import WasmBundle
from tests.bundles.signed_wasm import allow_everywhere, build_signed, keys_in, rewrite, unsigned


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltBundle, KeyPair, KeyPair]:
    root = tmp_path_factory.mktemp("signed")
    keys = keys_in(root / "keys")
    other = keys_in(root / "other-keys")
    return build_signed(root, keys), keys, other


def _wasm(signed: tuple[BuiltBundle, KeyPair, KeyPair]) -> bytes:
    assert signed[0].wasm_path is not None
    return signed[0].wasm_path.read_bytes()


def test_the_signed_wasm_bundle_verifies_and_loads(signed: tuple[BuiltBundle, KeyPair, KeyPair]) -> None:
    built, keys, _ = signed
    files = verified_files(_wasm(signed), load_public_key(keys.public_key.read_bytes()))
    assert {"policy.wasm", "data.json", ".manifest", ".signatures.json"} <= set(files)
    assert WasmBundle.from_files(files, "test").revision == built.revision
    # The OPA bundle of the same build verifies under the same key too (same scheme).
    verified_files(built.path.read_bytes(), load_public_key(keys.public_key.read_bytes()))


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (lambda b: rewrite(b, allow_everywhere), "data.json was changed after signing"),
        (
            lambda b: rewrite(b, lambda n, d: d + b"\0" if n == "policy.wasm" else d),
            "policy.wasm was changed",
        ),
        (lambda b: rewrite(b, unsigned), "not signed"),
        (lambda b: rewrite(b, lambda n, d: None if n == "data.json" else d), "signed but missing"),
        (b"not a tarball".__add__, "not a gzipped tarball"),
    ],
)
def test_a_bundle_changed_after_signing_is_refused(
    signed: tuple[BuiltBundle, KeyPair, KeyPair], attack: object, message: str
) -> None:
    key = load_public_key(signed[1].public_key.read_bytes())
    data = attack(_wasm(signed)) if callable(attack) else b""
    with pytest.raises(BundleSignatureError, match=message):
        verified_files(data, key)


def test_a_bundle_signed_by_another_key_is_refused(signed: tuple[BuiltBundle, KeyPair, KeyPair]) -> None:
    other = load_public_key(signed[2].public_key.read_bytes())
    with pytest.raises(BundleSignatureError, match="does not verify"):
        verified_files(_wasm(signed), other)


def test_a_file_added_to_a_signed_bundle_is_refused(signed: tuple[BuiltBundle, KeyPair, KeyPair]) -> None:
    import io
    import tarfile

    data = _wasm(signed)
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src,
        tarfile.open(fileobj=out, mode="w:gz") as dst,
    ):
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        extra = tarfile.TarInfo("/gpupaas/extra/data.json")
        body = b'{"allow": true}'
        extra.size = len(body)
        dst.addfile(extra, io.BytesIO(body))
    with pytest.raises(BundleSignatureError, match="not covered by the signature"):
        verified_files(out.getvalue(), load_public_key(signed[1].public_key.read_bytes()))


def test_structured_files_hash_as_opa_hashes_them() -> None:
    # The hash does not depend on whitespace or key order; numbers keep their text.
    a = file_hash("data.json", b'{"b": 1.50, "a": ["x", "\\u0001<"]}')
    b = file_hash("data.json", json.dumps({"a": ["x", "\u0001<"], "b": 1}).encode())
    assert a != b  # 1.50 is not 1
    assert a == file_hash("data.json", b'{"a":["x","\\u0001<"],"b":1.50}')
    assert file_hash("policy.wasm", b"{ }") != file_hash(".manifest", b"{ }") == file_hash("x.json", b"{}")


def test_the_wasm_bundle_from_a_folder_of_bundles_is_the_signed_one(
    signed: tuple[BuiltBundle, KeyPair, KeyPair],
) -> None:
    # What the bundle server publishes: out/gpupaas.wasm.tar.gz is the signed build.
    built = signed[0]
    assert built.wasm_path is not None
    current = Path(built.wasm_path).parent / "gpupaas.wasm.tar.gz"
    assert current.read_bytes() == built.wasm_path.read_bytes()


def test_data_opa_signed_verifies_whatever_its_strings_and_numbers(tmp_path: Path, opa_binary: Path) -> None:
    # The canonical JSON hash must be OPA's byte for byte: control characters, HTML characters,
    # U+2028, non-ASCII, numbers as written, nested arrays and objects, keys out of order.
    import subprocess

    keys = keys_in(tmp_path / "keys")
    src = tmp_path / "bundle"
    (src / "gpupaas" / "nested").mkdir(parents=True)
    (src / "p.rego").write_text("package gpupaas.decision\n\nresult := {}\n")
    tricky = '"a<b>&\\u0001\\u0008\\u000c\\u001f\\u2028\\u2029é\\t\\n\\"\\\\ 🎉"'
    data = f'{{"z": [1.50, 1e3, -0, 12345678901234567890, {tricky}], "a": {{"k": null, "j": true}}}}'
    (src / "data.json").write_text('{"gpupaas": ' + data + "}")
    (src / "gpupaas" / "nested" / "data.json").write_text(data)
    (src / ".manifest").write_text('{"roots": ["gpupaas"], "revision": "x"}')
    out = tmp_path / "b.tar.gz"
    args = [
        "build",
        "-b",
        ".",
        "-o",
        str(out),
        "--signing-key",
        str(keys.private_key),
        "--signing-alg",
        "RS256",
    ]
    subprocess.run([str(opa_binary), *args], cwd=src, check=True, capture_output=True)
    files = verified_files(out.read_bytes(), load_public_key(keys.public_key.read_bytes()))
    assert "nested" in json.loads(files["data.json"])["gpupaas"]  # opa build merges the data files
