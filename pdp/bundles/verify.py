"""Checking a bundle's signature the way OPA does before it activates one.

`opa build --signing-key` adds `/.signatures.json`: {"signatures": [JWT]}, one RS256 JWT whose
payload lists every file of the bundle with the SHA-256 of its content. Raw files (policy.wasm,
.rego) are hashed byte for byte; structured ones (.json, .yaml, .manifest) are parsed and hashed in
a canonical form (object keys sorted, no whitespace, numbers as written), so the signature does not
depend on formatting. A bundle verifies when the JWT's signature verifies under the configured key
(as OPA's `bundles.<name>.signing.keyid`: the JWT's own `kid` is not trusted to pick a key), every
file it lists is present with that hash, and no file is present that it does not list.

Anything else raises BundleSignatureError: a bundle that does not verify is never loaded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNATURES_FILE = ".signatures.json"
_STRUCTURED = (".json", ".yaml", ".yml")
# A tarball is refused past this much content: bundles are a few MB, not a zip bomb's worth.
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


class BundleSignatureError(ValueError):
    """The bundle is unsigned, signed by another key, or was changed after signing."""


class _Number(str):
    """A JSON number as written (OPA hashes json.Number's text, not a float's)."""


def _go_string(value: str) -> str:
    """A string as Go's encoding/json writes it with SetEscapeHTML(false)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":  # Go 1.22+
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _canonical(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _canonical(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _canonical(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:  # pragma: no cover - json.loads yields nothing else here
        raise BundleSignatureError(f"unexpected JSON value {value!r}")


def file_hash(name: str, content: bytes) -> str:
    """The hex SHA-256 OPA signs for the file `name` holding `content`."""
    if name.endswith(_STRUCTURED) or name.rsplit("/", 1)[-1] == ".manifest":
        if name.endswith((".yaml", ".yml")):
            raise BundleSignatureError(f"{name}: YAML data files are not accepted in a verified bundle")
        try:
            value = json.loads(content, parse_float=_Number, parse_int=_Number)
        except ValueError as exc:
            raise BundleSignatureError(f"{name} is not valid JSON: {exc}") from exc
        parts: list[str] = []
        _canonical(value, parts)
        content = "".join(parts).encode()
    return hashlib.sha256(content).hexdigest()


def _b64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BundleSignatureError("the signature is not a JWT") from exc


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """An RSA public key (PEM SubjectPublicKeyInfo, as `pdp keygen` writes it)."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the bundle verification key is not an RSA public key (RS256)")
    return key


def _signed_files(token: str, key: rsa.RSAPublicKey) -> dict[str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise BundleSignatureError("the signature is not a JWT")
    try:
        header = json.loads(_b64(parts[0]))
    except ValueError as exc:
        raise BundleSignatureError("the signature's header is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise BundleSignatureError("the signature is not RS256")
    try:
        key.verify(_b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise BundleSignatureError("the signature does not verify under the verification key") from exc
    try:
        payload = json.loads(_b64(parts[1]))
        listed = payload["files"]
        files = {str(f["name"]).lstrip("/"): str(f["hash"]) for f in listed}
        algorithms = {f.get("algorithm", "SHA-256") for f in listed}
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleSignatureError("the signature's payload lists no files") from exc
    if algorithms - {"SHA-256"}:
        raise BundleSignatureError(f"unsupported file hash algorithm(s): {sorted(algorithms)}")
    if len(files) != len(listed):
        raise BundleSignatureError("the signature lists a file twice")
    return files


def read_tarball(data: bytes) -> dict[str, bytes]:
    """The regular files of a gzipped bundle tarball, by name without a leading '/'."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                total += member.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleSignatureError("the bundle is larger than any bundle this PDP accepts")
                name = member.name.lstrip("/")
                if name.startswith("./"):
                    name = name[2:]
                if name in files:
                    raise BundleSignatureError(f"the bundle holds {name} twice")
                handle = tar.extractfile(member)
                files[name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleSignatureError(f"not a gzipped tarball: {exc}") from exc
    return files


def verify_files(files: dict[str, bytes], key: rsa.RSAPublicKey) -> None:
    """Raise BundleSignatureError unless `files` (read_tarball) are exactly what was signed."""
    raw = files.get(SIGNATURES_FILE)
    if raw is None:
        raise BundleSignatureError(f"the bundle is not signed (no {SIGNATURES_FILE})")
    try:
        tokens = json.loads(raw)["signatures"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleSignatureError(f"{SIGNATURES_FILE} lists no signatures") from exc
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        # OPA accepts exactly one signature too.
        raise BundleSignatureError(f"{SIGNATURES_FILE} must hold exactly one signature")
    signed = _signed_files(tokens[0], key)
    present = {name for name in files if name != SIGNATURES_FILE}
    if present - set(signed):
        raise BundleSignatureError(f"not covered by the signature: {sorted(present - set(signed))}")
    if set(signed) - present:
        raise BundleSignatureError(f"signed but missing: {sorted(set(signed) - present)}")
    for name in sorted(present):
        if not hmac.compare_digest(file_hash(name, files[name]), signed[name]):
            raise BundleSignatureError(f"{name} was changed after signing")


def verified_files(data: bytes, key: rsa.RSAPublicKey) -> dict[str, bytes]:
    """The files of the bundle tarball `data`, once its signature verifies under `key`."""
    files = read_tarball(data)
    verify_files(files, key)
    return files


def verify_tarball(path: Path, key: rsa.RSAPublicKey) -> dict[str, bytes]:
    return verified_files(path.read_bytes(), key)
