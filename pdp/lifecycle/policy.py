"""The lifecycle's view of the PDP: decide intents, and publish or withdraw a tenant's policy.

A tenant becomes known to the policies only when its document is in the bundle: activation writes
it next to the other tenant documents, rebuilds the signed bundle and waits until OPA serves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import yaml

from pdp.embedded import EmbeddedPDP
from pdp.point import DecideOptions


class PolicyGateway:
    def __init__(self, stack: EmbeddedPDP, timeout: float = 2.0) -> None:
        self.stack = stack
        self.timeout = timeout
        self._build_lock = threading.Lock()

    @property
    def fleet(self) -> dict[str, Any]:
        doc = yaml.safe_load(self.stack.settings.fleet.read_text())
        return dict(doc["fleet"])

    def decide(self, intent: Mapping[str, Any]) -> dict[str, Any]:
        """The decision as a JSON document; InvalidIntent for a malformed intent."""
        return self.stack.point.decide(intent, DecideOptions(timeout=self.timeout)).to_dict()

    def _document(self, name: str) -> Any:
        return self.stack.settings.tenants / f"{name}.yaml"

    def publish(self, policy: Mapping[str, Any]) -> str:
        """Put the tenant's policy into the bundle; returns the revision OPA now serves."""
        with self._build_lock:
            self._document(str(policy["name"])).write_text(yaml.safe_dump({"tenant": dict(policy)}))
            return self._rebuild()

    def withdraw(self, name: str) -> str:
        with self._build_lock:
            self._document(name).unlink(missing_ok=True)
            return self._rebuild()

    def _rebuild(self, wait: float = 30.0) -> str:
        revision = self.stack.build().revision
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.stack.bundle_status().get("active_revision") == revision:
                return revision
            time.sleep(0.1)
        raise TimeoutError(f"OPA did not activate bundle revision {revision} within {wait}s")
