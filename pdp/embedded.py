"""The embedded default: bundle build, bundle server, supervised OPA sidecar and decision point,
all local, no external services.

    with EmbeddedPDP(EmbeddedSettings.from_project()) as stack:
        decision = stack.point.decide(intent)
"""

from __future__ import annotations

import httpx

from pdp.bundles.build import BuiltBundle, build_bundle
from pdp.bundles.history import RevisionHistory
from pdp.bundles.server import BundleServer
from pdp.bundles.signing import KeyPair, ensure_keypair
from pdp.config import load_config
from pdp.engine.opa_http import OpaHttpEngine
from pdp.engine.wasm import WasmBundle, WasmEngine
from pdp.opa.bundle import BUNDLE_NAME
from pdp.opa.http import http_client
from pdp.opa.sidecar import OpaSidecar, SidecarSettings
from pdp.opa.status import bundle_refusal
from pdp.point import DecisionPoint
from pdp.records.log import DecisionLog
from pdp.settings import EmbeddedSettings

__all__ = ["EmbeddedPDP", "EmbeddedSettings", "opa_ready"]


def opa_ready(addr: str) -> bool:
    """True when the OPA at `addr` answers and its bundle is active."""
    try:
        with http_client(addr, timeout=0.5) as client:
            return client.get("/health", params={"bundles": "true"}).status_code == 200
    except httpx.HTTPError:
        return False


class EmbeddedPDP:
    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        self.keys: KeyPair = ensure_keypair(settings.keys)
        self.bundle: BuiltBundle | None = None
        self._bundle_server: BundleServer | None = None
        self.sidecar: OpaSidecar | None = None
        self.engine: OpaHttpEngine | WasmEngine | None = None
        self.decision_log: DecisionLog | None = None
        self._point: DecisionPoint | None = None

    @property
    def point(self) -> DecisionPoint:
        if self._point is None:
            raise RuntimeError("the embedded PDP is not started")
        return self._point

    def build(self) -> BuiltBundle:
        """(Re)build and publish the signed bundle; a running OPA activates it within seconds."""
        s = self.settings
        config = load_config(s.tenants, s.fleet, allow_no_tenants=s.allow_no_tenants)
        self.bundle = build_bundle(
            config,
            policies=s.policies,
            out_dir=s.bundles,
            signing_key=self.keys.private_key,
            wasm=s.engine == "wasm",
        )
        if isinstance(self.engine, WasmEngine) and self.bundle.wasm_path is not None:
            self.engine.replace(WasmBundle.from_tarball(self.bundle.wasm_path))
            self.record_active(self.bundle.revision)
        return self.bundle

    @property
    def history(self) -> RevisionHistory:
        """The revisions this PDP activated (pdp/bundles/history.py)."""
        return RevisionHistory.of_state(self.settings.state)

    def record_active(self, revision: str) -> None:
        """Note that the engine now decides on `revision` (seen active by OPA, or loaded)."""
        bundle = self.settings.bundles / f"{BUNDLE_NAME}-{revision}.tar.gz"
        self.history.record(
            revision, bundle=bundle, public_key=self.keys.public_key, engine=self.settings.engine
        )

    def start(self) -> EmbeddedPDP:
        s = self.settings
        if s.engine not in ("opa", "wasm"):
            raise ValueError(f"engine {s.engine!r} is not one of opa, wasm")
        self.build()
        self.decision_log = DecisionLog(s.decision_log, s.records) if s.decision_log else None
        if s.engine == "wasm":
            assert self.bundle is not None and self.bundle.wasm_path is not None
            self.engine = WasmEngine.from_tarball(self.bundle.wasm_path)
            self._point = DecisionPoint(self.engine, self.decision_log)
            self.record_active(self.bundle.revision)
            return self
        self._bundle_server = BundleServer(s.bundles).start()
        self.sidecar = OpaSidecar(
            SidecarSettings(
                bundle_service_url=self._bundle_server.url,
                verification_key=self.keys.public_key,
                workdir=s.state / "opa",
                addr=s.opa_addr,
                liveness=s.liveness,
            )
        ).start()
        self.sidecar.wait_ready(s.ready_timeout)
        self.engine = OpaHttpEngine(self.sidecar.addr)
        self._point = DecisionPoint(self.engine, self.decision_log)
        active = self.bundle_status().get("active_revision") or (self.bundle.revision if self.bundle else "")
        if active:
            self.record_active(str(active))
        return self

    def bundle_status(self) -> dict[str, object]:
        """OPA's status of the bundle (GET /v1/status): active_revision, and code/message/errors
        after a refused download."""
        if self.sidecar is None:
            return {}
        with http_client(self.sidecar.addr, timeout=1.0) as client:
            status: dict[str, object] = client.get("/v1/status").json()["result"]["bundles"]["gpupaas"]
        return status

    def bundle_refusal(self) -> str | None:
        """Why OPA refused the last bundle it fetched (signature, digest, compile error), or None.
        The wasm engine loads only bundles the build produced, so it has nothing to refuse."""
        if self.sidecar is None:
            return None
        return bundle_refusal(self.sidecar.addr)

    def engine_ready(self) -> bool:
        if isinstance(self.engine, WasmEngine):
            return True
        return self.sidecar is not None and opa_ready(self.sidecar.addr)

    def stop(self) -> None:
        if self.engine:
            self.engine.close()
        if self.sidecar:
            self.sidecar.stop()
        if self._bundle_server:
            self._bundle_server.stop()
        if self.decision_log:
            self.decision_log.close()
        self._point = None

    def __enter__(self) -> EmbeddedPDP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
