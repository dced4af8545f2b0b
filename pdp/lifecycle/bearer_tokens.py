"""Bearer tokens: random, shown once, stored as their SHA-256 only.

A plain SHA-256 is enough here, unlike for passwords: every token the worker issues carries 256
random bits, and an operator's admin token must carry at least 128 by the estimate below, so
there is no dictionary to try against a stolen hash; a slow hash would only slow every request.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

ADMIN_TOKEN_ENV = "PDP_LIFECYCLE_ADMIN_TOKEN"
DEFAULT_ADMIN_TTL = timedelta(days=30)
DEFAULT_TENANT_TTL = timedelta(days=90)
DEFAULT_METRICS_TTL = timedelta(days=30)
MIN_ADMIN_TOKEN_CHARS = 32
MIN_ADMIN_TOKEN_BITS = 128
HOW_TO_MAKE_ONE = "make one with `openssl rand -hex 32`"


@dataclass(frozen=True)
class Principal:
    role: str  # "admin", "tenant" or "metrics" (reads the tenant gauges, nothing else)
    tenant: str | None = None
    token_id: str = ""
    expires_at: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_act_on(self, tenant: str) -> bool:
        return self.is_admin or self.tenant == tenant

    @property
    def actor(self) -> str:
        return "admin" if self.is_admin else f"tenant:{self.tenant}"


TOKEN_PREFIX = "gpupaas_"


def new_token() -> str:
    """256 random bits behind a fixed prefix: an issued token never starts with "-" (a CLI reads
    `--token -x...` as another option; one token in 64 did), and secret scanners can tell it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """The public name of a token (listed, revoked by it); says nothing about the token."""
    return "tok_" + secrets.token_hex(8)


def token_hash(token: str) -> str:
    # Looked up by equality of the digest: an attacker who cannot invert SHA-256 learns nothing
    # from how long a lookup of a guessed token takes.
    return hashlib.sha256(token.encode()).hexdigest()


def estimated_bits(token: str) -> float:
    """Length times the Shannon entropy of the token's own character frequencies: low for short,
    repetitive or few-symbol strings. An estimate from one sample, so it under-counts short
    random tokens (32 hex characters score about 115) and cannot see dictionary words."""
    if not token:
        return 0.0
    counts = Counter(token)
    n = len(token)
    return -n * sum(c / n * math.log2(c / n) for c in counts.values())


def admin_token_problem(token: str) -> str | None:
    """Why `token` is too weak to be the admin credential, or None."""
    bits = estimated_bits(token)
    if len(token) >= MIN_ADMIN_TOKEN_CHARS and bits >= MIN_ADMIN_TOKEN_BITS:
        return None
    return (
        f"is too weak: {len(token)} characters, about {bits:.0f} bits by its character statistics; "
        f"an admin token needs at least {MIN_ADMIN_TOKEN_CHARS} characters and "
        f"{MIN_ADMIN_TOKEN_BITS} bits ({HOW_TO_MAKE_ONE})"
    )


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """'90d', '12h', '30m', '45s' or plain seconds; argparse shows the ValueError's message."""
    found = _DURATION.match(text)
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a positive duration like 90d, 12h, 30m or 3600")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
