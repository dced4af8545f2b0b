"""RSA keys for bundle signatures (RS256, as `opa build --signing-key` and `opa run` expect)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pdp.net.pem import write_private_key


@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path


def generate_keypair(directory: Path, bits: int = 2048) -> KeyPair:
    """A fresh RSA key pair; the private key is written owner-readable only."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = directory / "bundle-signing.key.pem"
    public = directory / "bundle-signing.pub.pem"
    write_private_key(private, key)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


def ensure_keypair(directory: Path) -> KeyPair:
    """The key pair in `directory`, generated on first use (local development only: production
    keys come from a secret store and are passed as paths)."""
    pair = KeyPair(directory / "bundle-signing.key.pem", directory / "bundle-signing.pub.pem")
    if pair.private_key.exists() and pair.public_key.exists():
        return pair
    return generate_keypair(directory)
