"""The lifecycle's view of the PDP: decide intents, and publish or withdraw a tenant's policy.

A tenant becomes known to the policies only when its document is in the bundle: activation writes
it into the lifecycle's own tenant folder under the state directory (pdp/lifecycle/storage/documents.py),
rebuilds the signed bundle and waits until OPA serves it. Every rebuild also writes the fleet the
bundle carries: the operator's fleet document with the dedicated pools the lifecycle carved
(pdp/lifecycle/fleet.py), so a rebuild never names a tenant the bundle does not hold among its
pools: a dedicated pool of such a tenant waits under the fleet's `awaiting` for its onboarding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pdp.embedded import EmbeddedPDP
from pdp.lifecycle import fleet as fleets
from pdp.lifecycle.storage import documents
from pdp.point import DecideOptions

log = logging.getLogger(__name__)

Carvings = Callable[[], list[dict[str, Any]]]
# Called with every fleet the bundle is rebuilt with (the GPU operator's sharing configuration
# follows it: pdp/substrate/gpu_operator/adapter.py).
FleetListener = Callable[[Mapping[str, Any]], object]


def _none() -> list[dict[str, Any]]:
    return []


class PolicyGateway:
    def __init__(
        self,
        stack: EmbeddedPDP,
        timeout: float = 2.0,
        base_fleet: Path | None = None,
        carvings: Carvings = _none,
    ) -> None:
        self.stack = stack
        self.timeout = timeout
        # The operator's fleet document; the bundle's fleet file (stack.settings.fleet) is derived.
        self.base_fleet = base_fleet or stack.settings.fleet
        self.carvings = carvings
        self.on_fleet: FleetListener | None = None
        self._build_lock = threading.Lock()

    @property
    def fleet(self) -> dict[str, Any]:
        """The fleet the bundle OPA serves carries."""
        doc = yaml.safe_load(self.stack.settings.fleet.read_text())
        return dict(doc["fleet"])

    def current_fleet(self) -> dict[str, Any]:
        """The fleet as a rebuild now would make it: the operator's document read afresh (capacity
        added there shows), with the carved pools. The one provisioning reads."""
        return self.effective(documents.names(self.stack.settings.tenants))[0]

    def effective(self, tenants: set[str]) -> tuple[dict[str, Any], list[str]]:
        return fleets.effective(fleets.load(self.base_fleet), self.carvings(), tenants)

    def decide(self, intent: Mapping[str, Any]) -> dict[str, Any]:
        """The decision as a JSON document; InvalidIntent for a malformed intent."""
        return self.stack.point.decide(
            intent, DecideOptions(timeout=self.timeout, entry_point="lifecycle")
        ).to_dict()

    def publish(self, policy: Mapping[str, Any]) -> str:
        """Put the tenant's policy into the bundle; returns the revision OPA now serves."""
        with self._build_lock:
            documents.write(self.stack.settings.tenants, policy)
            return self._rebuild()

    def withdraw(self, name: str) -> str:
        with self._build_lock:
            documents.remove(self.stack.settings.tenants, name)
            return self._rebuild()

    def republish(self) -> str:
        """Rebuild with the tenants as they are (after a change of the fleet: a carved pool)."""
        with self._build_lock:
            return self._rebuild()

    @property
    def policies(self) -> Path:
        """The policy tree the bundle is built from (pdp/lifecycle/services/policy_trees.py)."""
        return self.stack.settings.policies

    @property
    def revision(self) -> str:
        """The revision of the bundle last built (the one OPA serves once a rebuild returned)."""
        return self.stack.bundle.revision if self.stack.bundle is not None else ""

    def activate(self, policies: Path) -> str:
        """Build from the policy tree `policies` from now on (a rollout or its rollback); returns the
        revision OPA now serves."""
        with self._build_lock:
            before = self.stack.settings
            self.stack.settings = before.replace(policies=policies)
            try:
                return self._rebuild()
            except TimeoutError:  # built: OPA is slow to take it, the tree is the new one
                raise
            except Exception:  # it does not build: the bundle OPA serves is unchanged
                self.stack.settings = before
                raise

    def write_fleet(self) -> None:
        """Write the bundle's fleet file from the operator's document and the carvings."""
        fleet, notes = self.effective(documents.names(self.stack.settings.tenants))
        for note in notes:
            log.info("fleet: %s", note)
        fleets.write(self.stack.settings.fleet, fleet)
        if self.on_fleet is not None:
            try:
                self.on_fleet(fleet)
            except Exception:  # the policy still publishes; the next fleet write tries again
                log.exception("fleet: realizing the GPU sharing configuration failed")

    def _rebuild(self, wait: float = 30.0) -> str:
        self.write_fleet()
        revision = self.stack.build().revision
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.stack.bundle_status().get("active_revision") == revision:
                if self.stack.sidecar is not None:  # the wasm engine noted it when it loaded it
                    self.stack.record_active(revision)
                return revision
            time.sleep(0.1)
        raise TimeoutError(f"OPA did not activate bundle revision {revision} within {wait}s")
