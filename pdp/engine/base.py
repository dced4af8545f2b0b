"""The engine interface and the ways an engine can fail to decide.

Each failure carries the reason code the PDP answers with; none of them ever becomes an allow.
"""

from __future__ import annotations

from typing import Any, Protocol


class EngineError(Exception):
    code = "ENGINE_ERROR"


class EngineUnavailable(EngineError):
    """The engine could not be reached (process down, connection refused)."""

    code = "ENGINE_UNAVAILABLE"


class EngineTimeout(EngineError):
    """The engine did not answer inside the caller's deadline."""

    code = "ENGINE_TIMEOUT"


class NoActiveBundle(EngineError):
    """The engine answered, but no bundle is active, so the decision is undefined."""

    code = "ENGINE_NO_ACTIVE_BUNDLE"


class EngineFailure(EngineError):
    """The engine answered with an error (evaluation error, bad reply)."""

    code = "ENGINE_ERROR"


class PolicyEngine(Protocol):
    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        """The value of the document at `path` (e.g. "gpupaas/decision/result") for `input_doc`.

        Raises an EngineError subclass when there is no value; never returns None for "undefined".
        """
        ...
