"""The wasm engine before its first bundle: a PDP that fetches its bundle (pdp/bundles/follow.py)
or waits for the file its parent writes (`serve-worker --wasm-bundle`) starts answering at once,
and until a verified bundle is loaded every decision is ENGINE_NO_ACTIVE_BUNDLE, a DENY, and the
PDP reports not ready; after that it decides like WasmEngine and reloads like it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pdp.engine.base import NoActiveBundle
from pdp.engine.wasm import WasmBundle, WasmEngine


class ReloadableWasmEngine:
    """PolicyEngine over a WasmEngine that exists once `replace` has loaded a first bundle."""

    in_process = True

    def __init__(self, *, instances: int = 4) -> None:
        self._instances = instances
        self._engine: WasmEngine | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, *, instances: int = 4) -> ReloadableWasmEngine:
        """Loaded from `path` when it exists; empty (deny, not ready) when it does not yet."""
        engine = cls(instances=instances)
        if path.exists():
            engine.replace(WasmBundle.from_tarball(path))
        return engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def revision(self) -> str:
        return self._engine.revision if self._engine is not None else ""

    def replace(self, bundle: WasmBundle) -> None:
        """Load `bundle`; an exception leaves the current one (or none) deciding."""
        with self._lock:
            if self._engine is None:
                self._engine = WasmEngine(bundle, instances=self._instances)
            else:
                self._engine.replace(bundle)

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        engine = self._engine
        if engine is None:
            raise NoActiveBundle("no verified wasm bundle loaded yet")
        return engine.evaluate(path, input_doc, timeout=timeout)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
