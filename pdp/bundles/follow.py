"""The signed wasm bundle, pulled from the bundle server the way OPA pulls its own.

`pdp serve --engine wasm --wasm-bundle-url URL --bundle-verification-key KEY` decides in-process
from the same signed revision the platform publishes for OPA. `BundleFollower` polls URL with
If-None-Match (a 304 costs nothing), verifies every download's signature with the key OPA uses
(pdp/bundles/verify.py) before anything of it is loaded, and then:

- loads it into the engine (`on_bundle`);
- writes the verified tarball, mode 0600, to `state_file` (atomically), which the worker
  processes (`--webhook-workers`, `--workers`) watch and reload (pdp/api/workers.py): they read a
  file only this pod's user can have written, and only after it verified.

A download that does not verify, or does not load, is refused: logged, counted in
`gpupaas_pdp_bundle_activation_failures_total`, reported by `refusal()` (the PDP's health
monitor logs it), and the last good revision keeps deciding. Until a first bundle verifies, the
engine has none: every decision is a DENY and the PDP is not ready.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from pdp.bundles.verify import BundleSignatureError, load_public_key, verified_files
from pdp.engine.wasm import WasmBundle

log = logging.getLogger(__name__)

# OPA's bundle polling defaults (deploy/opa-config.yaml: min_delay_seconds 5, max 15).
MIN_DELAY = 5.0
MAX_DELAY = 15.0


class BundleFollowerError(ValueError):
    """A verification key that cannot be read or is not an RSA public key."""


def write_private(path: Path, data: bytes) -> None:
    """`data` at `path`, mode 0600, replacing the file atomically (a watcher never reads half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BundleFollower:
    def __init__(
        self,
        url: str,
        verification_key: Path,
        on_bundle: Callable[[WasmBundle], None],
        *,
        state_file: Path | None = None,
        ca_file: Path | None = None,
        min_delay: float = MIN_DELAY,
        max_delay: float = MAX_DELAY,
    ) -> None:
        try:
            self._key = load_public_key(verification_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise BundleFollowerError(f"--bundle-verification-key {verification_key}: {exc}") from exc
        self.url = url
        self.state_file = state_file
        self._on_bundle = on_bundle
        self._delays = (min_delay, max(min_delay, max_delay))
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self._client = httpx.Client(verify=verify, timeout=30.0, follow_redirects=False)
        self._etag: str | None = None
        self.revision: str | None = None
        self._refusal: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bundle-follow", daemon=True)

    def refusal(self) -> str | None:
        """Why the latest download was refused, or None once one loaded (PdpServer logs it)."""
        return self._refusal

    def poll(self) -> bool:
        """One conditional download; True when a new verified revision was loaded. Never raises
        for a bad download or an unreachable server: the current revision keeps deciding."""
        from pdp import metrics

        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            response = self._client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("wasm bundle %s: cannot fetch it: %s", self.url, exc)
            return False
        if response.status_code == 304:
            return False
        if response.status_code != 200:
            log.warning("wasm bundle %s: HTTP %d", self.url, response.status_code)
            return False
        try:
            files = verified_files(response.content, self._key)
            bundle = WasmBundle.from_files(files, self.url)
            self._on_bundle(bundle)
        except Exception as exc:  # BundleSignatureError, a bundle that does not compile or load
            kind = "refused" if isinstance(exc, BundleSignatureError) else "not loaded"
            self._refusal = f"wasm bundle {self.url} {kind}: {exc}"
            # Not remembered: the same bad bundle is refused (and counted) once, not every poll.
            self._etag = response.headers.get("ETag")
            metrics.BUNDLE_FAILURES.inc()
            log.error("%s; revision %s keeps deciding", self._refusal, self.revision or "(none)")
            return False
        if self.state_file is not None:
            try:
                write_private(self.state_file, response.content)
            except OSError as exc:  # this process decides on it; the workers keep theirs
                log.error("wasm bundle for the worker processes not written to %s: %s", self.state_file, exc)
        self._etag = response.headers.get("ETag")
        self._refusal = None
        self.revision = bundle.revision
        metrics.decisions.revision_seen(bundle.revision)
        log.info("wasm bundle %s: revision %s verified and active", self.url, bundle.revision)
        return True

    def _run(self) -> None:
        while True:
            try:
                self.poll()
            except Exception:  # never let the follower die: the current revision decides on
                log.exception("wasm bundle %s: poll failed", self.url)
            # Faster until a first bundle is active: the PDP answers DENY until then.
            delay = 1.0 if self.revision is None else random.uniform(*self._delays)
            if self._stop.wait(delay):
                return

    def start(self) -> BundleFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=35)
        self._client.close()
