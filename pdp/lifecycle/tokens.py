"""Bearer tokens: random, shown once, stored as their SHA-256 only."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    role: str  # "admin" or "tenant"
    tenant: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_act_on(self, tenant: str) -> bool:
        return self.is_admin or self.tenant == tenant

    @property
    def actor(self) -> str:
        return "admin" if self.is_admin else f"tenant:{self.tenant}"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    # Constant-time, so response timing says nothing about how much of a hash matched.
    return hmac.compare_digest(token_hash(token), stored_hash)
