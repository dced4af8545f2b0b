"""What the workflows run against: store, adapter, PDP gateway and settings, set once per
process by the worker (workflows are module-level functions, as DBOS requires)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pdp.lifecycle.adapters import Adapter
from pdp.lifecycle.db import Database
from pdp.lifecycle.policy import PolicyGateway
from pdp.lifecycle.store import Store


@dataclass
class Settings:
    # Each approval round waits this long; after the first the approval is escalated, after the
    # second it expires as rejected.
    approval_timeout: float = 24 * 3600.0
    archive_dir: Path = Path("var/lifecycle/archive")
    step_attempts: int = 3
    step_interval: float = 0.2


@dataclass
class Runtime:
    db: Database
    store: Store
    adapter: Adapter
    policy: PolicyGateway
    settings: Settings


_current: Runtime | None = None


def install(rt: Runtime) -> None:
    global _current
    _current = rt


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the lifecycle runtime is not installed (start the worker)")
    return _current
