"""The embedded default: OPA launched and supervised as a local process.

OPA pulls signed bundles from a bundle server, verifies them with the public key and only then
activates them, so a tampered or unsigned bundle is refused while the last good one keeps
serving. If the process dies it is restarted with backoff on the same address, and callers
reconnect without being told. If it stops answering (frozen, deadlocked, starved) the supervisor
sees it with a liveness probe (pdp/opa/liveness.py), kills it and starts a new one: with the
default settings within 6.1 s of the freeze plus the restart backoff (0.2 s, up to 5 s after
repeated restarts). The old process is killed and reaped before the new one starts, so two OPAs
never share the address and nothing answers from the replaced one.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pdp.integrity.files import private_dir
from pdp.opa.binary import find_opa
from pdp.opa.bundle import BUNDLE_NAME, CURRENT_BUNDLE, KEY_ID, SIGNING_ALG
from pdp.opa.http import http_client
from pdp.opa.liveness import LivenessProbe, LivenessSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SidecarSettings:
    bundle_service_url: str
    verification_key: Path
    workdir: Path
    # "unix:///path/opa.sock" or "127.0.0.1:8181"; the default keeps OPA off the network entirely.
    addr: str = ""
    poll_min_seconds: int = 1
    poll_max_seconds: int = 2
    opa_binary: Path | None = None
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    # An OCI artifact (registry/repository:tag) instead of GET <url>/gpupaas.tar.gz: OPA pulls it
    # from the registry at bundle_service_url (pdp/bundles/oci.py pushes it).
    oci_reference: str = ""
    # The CA that issued the bundle service's TLS certificate (default: the system's roots).
    bundle_service_ca: Path | None = None
    # Go's GC target for OPA (GOGC), unless the environment sets one: each decision allocates
    # ~1,300-1,900 objects, and at 100 OPA marked its whole heap (the bundle's data) every few
    # hundred decisions. 400 costs 10-25% less OPA CPU per decision for ~50 MiB more peak memory
    # at 1,000 tenants / 10,000 nodes (docs/performance.md).
    gogc: int = 400

    def resolved_addr(self) -> str:
        return self.addr or f"unix://{self.workdir / 'opa.sock'}"


def opa_config(settings: SidecarSettings) -> dict[str, Any]:
    """The OPA configuration file: one signed bundle, polled often, status kept for /v1/status."""
    service: dict[str, Any] = {"url": settings.bundle_service_url}
    if settings.oci_reference:
        service["type"] = "oci"
    if settings.bundle_service_ca is not None:
        service["tls"] = {"ca_cert": str(settings.bundle_service_ca)}
    return {
        "services": {"bundles": service},
        "bundles": {
            BUNDLE_NAME: {
                "service": "bundles",
                "resource": settings.oci_reference or CURRENT_BUNDLE,
                "polling": {
                    "min_delay_seconds": settings.poll_min_seconds,
                    "max_delay_seconds": settings.poll_max_seconds,
                },
                "signing": {"keyid": KEY_ID},
            }
        },
        "keys": {KEY_ID: {"algorithm": SIGNING_ALG, "key": settings.verification_key.read_text()}},
        "status": {"console": False},
        "default_decision": "/gpupaas/decision/result",
    }


class OpaSidecar:
    def __init__(self, settings: SidecarSettings) -> None:
        self.settings = settings
        self.addr = settings.resolved_addr()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._probe: LivenessProbe | None = None
        self.restarts = 0
        # Processes replaced because they stopped answering, and (pid, exit status) of every
        # process that ended, newest last: the record that a replaced OPA is gone.
        self.unresponsive_kills = 0
        self.exits: list[tuple[int, int]] = []
        private_dir(settings.workdir)  # OPA persists the bundle (tenant data) here
        self._config_file = settings.workdir / "opa-config.json"
        self._log_file = settings.workdir / "opa.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _launch(self) -> None:
        self._config_file.write_text(json.dumps(opa_config(self.settings), indent=1))
        if self.addr.startswith("unix://"):
            Path(self.addr.removeprefix("unix://")).unlink(missing_ok=True)
        argv = [
            str(self.settings.opa_binary or find_opa()),
            "run",
            "--server",
            "--addr",
            self.addr,
            "--config-file",
            str(self._config_file),
            "--log-level",
            "error",
            "--skip-version-check",
            "--unix-socket-perm",
            "700",
            # Keeps data as AST values, so queries do not convert tenants and fleet on every read
            # (about 13% more decisions/s in the benchmark harness).
            "--optimize-store-for-read-speed",
        ]
        env = {"GOGC": str(self.settings.gogc), **os.environ}
        with self._log_file.open("ab") as log_fh:
            self._proc = subprocess.Popen(argv, stdout=log_fh, stderr=subprocess.STDOUT, env=env)

    def start(self) -> OpaSidecar:
        with self._lock:
            self._launch()
        self._supervisor = threading.Thread(target=self._supervise, name="opa-supervisor", daemon=True)
        self._supervisor.start()
        return self

    @property
    def live(self) -> bool:
        """The current OPA process answered the supervisor's last liveness probe."""
        return self._probe is not None and self._probe.live

    def _supervise(self) -> None:
        probe = self._probe = LivenessProbe(self.addr, self.settings.liveness)
        try:
            self._supervise_with(probe)
        finally:
            probe.close()

    def _supervise_with(self, probe: LivenessProbe) -> None:
        backoff = 0.2
        interval = self.settings.liveness.interval
        next_probe = time.monotonic() + interval
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None or proc.poll() is None:
                if self._stopping.wait(0.1):
                    return
                if proc is None or proc.poll() is not None:
                    continue
                backoff = 0.2
                if time.monotonic() >= next_probe:
                    if probe.check():
                        self._replace_unresponsive(proc, probe)
                    next_probe = time.monotonic() + interval
                continue
            self.exits.append((proc.pid, proc.returncode))
            log.warning("opa exited with status %s; restarting in %.1fs", proc.returncode, backoff)
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._launch()
                    self.restarts += 1
            probe.new_process()
            next_probe = time.monotonic() + interval
            backoff = min(backoff * 2, 5.0)

    def _replace_unresponsive(self, proc: subprocess.Popen[bytes], probe: LivenessProbe) -> None:
        """SIGKILL (works on a stopped process too) and reap it; the loop then starts a new one."""
        with self._lock:
            if self._stopping.is_set() or proc is not self._proc or proc.poll() is not None:
                return
            log.error(
                "opa pid %d did not answer /health within %.1fs %d times in a row (%s); "
                "killing it and starting a new one",
                proc.pid,
                self.settings.liveness.timeout,
                probe.failures,
                probe.last_error,
            )
            self.unresponsive_kills += 1  # before the kill: whoever reads it may expect a dying process
            proc.kill()
            proc.wait()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until OPA answers and the bundle is active (GET /health?bundles=true is 200)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with http_client(self.addr, timeout=1.0) as client:
            while time.monotonic() < deadline:
                try:
                    resp = client.get("/health", params={"bundles": "true"})
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code} {resp.text.strip()}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                time.sleep(0.05)
        raise TimeoutError(
            f"OPA at {self.addr} has no active bundle after {timeout:.0f}s ({last}); see {self._log_file}"
        )

    def kill(self) -> None:
        """SIGKILL the current OPA process (the supervisor will bring it back)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)

    def __enter__(self) -> OpaSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
