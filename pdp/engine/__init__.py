"""Policy engines behind one method, so another engine (e.g. in-process WASM) can slot in."""

from __future__ import annotations

from pdp.engine.base import (
    EngineError,
    EngineFailure,
    EngineTimeout,
    EngineUnavailable,
    NoActiveBundle,
    PolicyEngine,
)

__all__ = [
    "EngineError",
    "EngineFailure",
    "EngineTimeout",
    "EngineUnavailable",
    "NoActiveBundle",
    "PolicyEngine",
]
