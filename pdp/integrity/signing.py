"""Ed25519 signing keys and signature blocks (algorithm, key id, value), for checkpoints and for
the lifecycle's certificates of destruction."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.integrity.files import private_dir
from pdp.net.pem import write_private_key

ALGORITHM = "Ed25519"


class KeyFileError(Exception):
    pass


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`, generated there (mode 0600, its folder 0700) on first start. A
    key file others may read is refused: whoever reads it can sign in this process's name."""
    if not path.exists():
        private_dir(path.parent)
        key = Ed25519PrivateKey.generate()
        write_private_key(path, key)
        return key
    return load_key(path)


def load_key(path: Path) -> Ed25519PrivateKey:
    """The existing signing key at `path` (never generated: a verifier must not mint a new key)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(f"{path}: mode {mode:o} lets others read the signing key; chmod 600 it")
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return loaded


def load_public_pem(pem: str) -> Ed25519PublicKey:
    try:
        public = serialization.load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise KeyFileError(f"not a PEM public key: {exc}") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError("the public key is not an Ed25519 key")
    return public


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A trusted public key from a PEM file (`public_pem`'s format)."""
    try:
        return load_public_pem(path.read_text())
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key (first 32 hex digits): names the key a signature needs."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def sign(text: str, key: Ed25519PrivateKey) -> dict[str, str]:
    """The signature block over `text`: algorithm, key id, value."""
    return {
        "algorithm": ALGORITHM,
        "key_id": key_id(key.public_key()),
        "value": base64.b64encode(key.sign(text.encode())).decode(),
    }


def signature_problems(text: str, sig: Mapping[str, object], public: Ed25519PublicKey) -> list[str]:
    """What is wrong with a signature block over `text`; empty when it verifies with `public`."""
    problems = []
    if sig.get("algorithm") != ALGORITHM:
        problems.append(f"unsupported signature algorithm {sig.get('algorithm')!r} (expected {ALGORITHM})")
    kid = key_id(public)
    if sig.get("key_id") != kid:
        problems.append(f"signed with key {sig.get('key_id')!r}, not with this public key ({kid})")
    try:
        public.verify(base64.b64decode(str(sig.get("value", "")), validate=True), text.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        problems.append("the signature does not verify: the document was altered or signed by another key")
    return problems
