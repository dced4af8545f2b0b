"""What an embedded PDP is made of: where its documents, policies, bundles, keys and state live,
and which engine decides. Kept apart from pdp.embedded so that reading settings imports nothing
heavy (the one-shot `pdp decide` starts in milliseconds)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pdp.opa.binary import PROJECT_ROOT, STATE_ROOT
from pdp.opa.liveness import LivenessSettings
from pdp.records.log import Integrity


@dataclass(frozen=True)
class EmbeddedSettings:
    tenants: Path
    fleet: Path
    policies: Path
    bundles: Path
    keys: Path
    state: Path
    decision_log: Path | None = None
    # The decision log's checkpoints and signing key (pdp/records/log.py).
    records: Integrity = dataclasses.field(default_factory=Integrity)
    opa_addr: str = ""
    ready_timeout: float = 30.0
    # "opa": the supervised OPA sidecar; "wasm": the same bundle compiled to WebAssembly and
    # evaluated in-process.
    engine: str = "opa"
    # The lifecycle builds from its own folder, which may hold no tenant yet.
    allow_no_tenants: bool = False
    # How the supervisor tells a frozen OPA from a live one (pdp/opa/liveness.py).
    liveness: LivenessSettings = dataclasses.field(default_factory=LivenessSettings)

    @classmethod
    def from_project(cls, root: Path | None = None, **overrides: object) -> EmbeddedSettings:
        """The repository's examples and policies, state under var/, keys under .keys/ (`root`:
        all of them under one folder; by default pdp/opa/binary.py's PROJECT_ROOT and STATE_ROOT,
        the checkout, or the installed package's documents and the working directory)."""
        documents = root or PROJECT_ROOT
        state = root or STATE_ROOT
        settings = cls(
            tenants=documents / "examples" / "tenants",
            fleet=documents / "examples" / "fleet.yaml",
            policies=documents / "policies",
            bundles=state / "bundles",
            keys=state / ".keys",
            state=state / "var",
            decision_log=state / "var" / "decisions.sqlite",
        )
        return settings.replace(**overrides) if overrides else settings

    def replace(self, **changes: object) -> EmbeddedSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
