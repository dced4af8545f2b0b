"""Is the OPA process alive: does it answer `GET /health` inside a deadline?

A process that has exited is easy to see; a frozen one (stopped, deadlocked, starved) keeps its
socket open and answers nothing, so every decision waits its whole deadline and is DENY
(ENGINE_TIMEOUT) until someone replaces it. The supervisor probes OPA with a deadline and counts
failures in a row; after `failures` of them it kills the process and starts a new one.

Any HTTP answer counts as alive: liveness asks whether OPA runs, not whether it has a bundle
(readiness, `/health?bundles=true`, covers that; a PDP without a bundle is not fixed by a restart).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LivenessSettings:
    interval: float = 1.0  # seconds between the end of one probe and the start of the next
    timeout: float = 1.0  # a probe without an answer in this time has failed
    failures: int = 3  # failed probes in a row that make OPA unresponsive
    # A new process may take this long to answer its first probe; failures before that first
    # answer do not count until then (a process frozen while starting is replaced after it).
    startup: float = 30.0

    def detection_bound(self) -> float:
        """The longest time from OPA freezing to the supervisor deciding to replace it: the probe
        after the last good one starts at most `interval` later, and each of `failures` probes
        takes `timeout` plus the `interval` before the next."""
        return self.failures * (self.interval + self.timeout)


class LivenessProbe:
    """Probes one OPA address and counts failures in a row for the current process."""

    def __init__(self, addr: str, settings: LivenessSettings) -> None:
        self.addr = addr
        # httpx here, not at the top: pdp.settings reads LivenessSettings, and the one-shot
        # `pdp decide` (which probes nothing) should not load an HTTP client for it.
        from pdp.opa.http import http_client

        self.settings = settings
        self._client = http_client(addr, timeout=settings.timeout)
        self._launched = time.monotonic()
        self._answered = False
        self.failures = 0
        self.last_error = ""
        # True while the current process answers: its last probe succeeded.
        self.live = False

    def new_process(self) -> None:
        """A new OPA process was started: it gets the startup allowance and a clean count."""
        self._launched = time.monotonic()
        self._answered = False
        self.failures = 0
        self.last_error = ""
        self.live = False

    def check(self) -> bool:
        """Probe once; True when OPA is to be considered unresponsive (replace it)."""
        import httpx

        try:
            self._client.get("/health")
        except httpx.HTTPError as exc:
            self.last_error = str(exc) or type(exc).__name__
            self.live = False
            in_startup = not self._answered and time.monotonic() - self._launched < self.settings.startup
            if not in_startup:
                self.failures += 1
            return self.failures >= self.settings.failures
        self._answered = True
        self.live = True
        self.failures = 0
        return False

    def close(self) -> None:
        self._client.close()
