"""Slurm as a substrate of the tenant lifecycle: the tenant's Slurm objects by lifecycle group, for
the users a site maps to each tenant (tenant policy names no Unix users)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pdp.substrate.slurm import accounts

EVERY_TENANT = "*"


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the file, the key and the problem."""


def load_users(path: Path) -> dict[str, list[str]]:
    """`{tenant: [user, ...], "*": [users of every tenant]}` from a YAML file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsersFileError(f"{path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise UsersFileError(f"{path}: expected a mapping of tenant name to a list of users")
    users: dict[str, list[str]] = {}
    for tenant, names in doc.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UsersFileError(f"{path}: {tenant}: expected a list of user names")
        users[str(tenant)] = list(names)
    return users


@dataclass(frozen=True)
class SlurmSubstrate:
    users: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def users_of(self, tenant: str) -> list[str]:
        return sorted({*self.users.get(EVERY_TENANT, ()), *self.users.get(tenant, ())})

    def render(self, policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return accounts.render(policy, fleet, self.users_of(str(policy["name"])))
