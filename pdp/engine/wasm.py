"""The in-process engine: the same policies compiled by `opa build -t wasm`, evaluated inside the
PDP on wasmtime. No network hop, no second process; selectable by configuration behind the same
one-method interface as the sidecar engine.

The host side of OPA's WebAssembly ABI (v1.2+ "fast path" opa_eval) is implemented here on the
wasmtime package. The compiled module carries most built-ins itself; the few it asks the host for
(see `HOST_BUILTINS`) are implemented in Python with Go's semantics for the verbs the policies use.
"""

from __future__ import annotations

import json
import re
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import wasmtime

from pdp.engine.base import EngineFailure, EngineTimeout, NoActiveBundle
from pdp.engine.instance_pool import InstancePool
from pdp.engine.wasm_native import (
    I32Call,
    LinearMemory,
    define_i32_func,
    epoch_ticker,
    set_epoch_deadline,
)

_TICK_SECONDS = 0.005  # epoch granularity for deadlines


def _go_sprintf(fmt: str, args: list[Any]) -> str:
    """Go's fmt.Sprintf for the verbs the policies use (%s, %d, %v, %%)."""
    values = iter(args)

    def verb(match: re.Match[str]) -> str:
        v = match.group(1)
        if v == "%":
            return "%"
        value = next(values, None)
        if v == "d" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(int(value))
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        # OPA prints composite values the way Rego writes them: ["a", "b"], {"k": 1}
        return json.dumps(value) if isinstance(value, list | dict) else str(value)

    return re.sub(r"%([sdv%])", verb, fmt)


HOST_BUILTINS: dict[str, Callable[..., Any]] = {"sprintf": _go_sprintf}


@dataclass(frozen=True)
class WasmBundle:
    module: bytes
    data: dict[str, Any]
    revision: str
    # The module as wasmtime compiled it earlier (WasmEngine.compiled_module): loads in
    # milliseconds where compiling takes most of a second. Trusted like native code.
    compiled: bytes | None = None

    @classmethod
    def from_tarball(cls, path: Path, *, compiled: bytes | None = None) -> WasmBundle:
        """A bundle built with `opa build -t wasm` (policy.wasm, data.json, .manifest)."""
        files: dict[str, bytes] = {}
        with tarfile.open(path, "r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        files[member.name.lstrip("/")] = handle.read()
        return cls.from_files(files, str(path), compiled=compiled)

    @classmethod
    def from_files(cls, files: dict[str, bytes], source: str, *, compiled: bytes | None = None) -> WasmBundle:
        """The bundle of a tarball's files by name (pdp/bundles/verify.py reads and verifies them)."""
        if "policy.wasm" not in files:
            raise NoActiveBundle(f"{source} holds no policy.wasm (build it with -t wasm)")
        manifest = json.loads(files.get(".manifest", b"{}"))
        data = json.loads(files.get("data.json", b"{}"))
        return cls(files["policy.wasm"], data, str(manifest.get("revision", "")), compiled)


class _Instance:
    """One instantiated module with the data loaded; not thread-safe (the engine pools them)."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, data: dict[str, Any]) -> None:
        self.store = wasmtime.Store(engine)
        self.store.set_epoch_deadline(1_000_000)  # loading data is not bounded by any one caller
        memory = wasmtime.Memory(self.store, wasmtime.MemoryType(wasmtime.Limits(5, None)))
        self.memory = LinearMemory(self.store, memory)
        linker = wasmtime.Linker(engine)
        linker.define(self.store, "env", "memory", memory)
        i32 = wasmtime.ValType.i32()
        linker.define_func("env", "opa_abort", wasmtime.FuncType([i32], []), self._abort)
        self._host = [
            define_i32_func(linker, "env", f"opa_builtin{arity}", 2 + arity, self._builtin)
            for arity in range(5)
        ]
        self.instance = linker.instantiate(self.store, module)
        exports = self.instance.exports(self.store)

        def func(name: str) -> wasmtime.Func:
            export = exports[name]
            if not isinstance(export, wasmtime.Func):
                raise EngineFailure(
                    f"the wasm module's {name} is not a function (OPA wasm ABI 1.2+ expected)"
                )
            return export

        # Also called once per argument and result of every host built-in (sprintf, ...).
        self._malloc = I32Call(func("opa_malloc"), 1)
        self._json_parse = I32Call(func("opa_json_parse"), 2)
        self._json_dump = I32Call(func("opa_json_dump"), 1)
        self._heap_get = func("opa_heap_ptr_get")
        self._eval = I32Call(func("opa_eval"), 7, releases_gil=True)
        self.entrypoints: dict[str, int] = self._read_json(func("entrypoints")(self.store))
        required: dict[str, int] = self._read_json(func("builtins")(self.store))
        missing = sorted(set(required) - set(HOST_BUILTINS))
        if missing:
            raise EngineFailure(f"the wasm module needs built-ins the host lacks: {', '.join(missing)}")
        self._builtins = {bid: HOST_BUILTINS[name] for name, bid in required.items()}
        self._data = self._write_value(data)
        self._heap_after_data = self._heap_get(self.store)

    def _read_cstring(self, address: int) -> bytes:
        return self.memory.read_cstring(address)

    def _read_json(self, value_address: int) -> Any:
        return orjson.loads(self._read_cstring(self._json_dump(self.store, value_address)))

    def _write_value(self, value: Any) -> int:
        raw = orjson.dumps(value)
        address = self._malloc(self.store, len(raw))
        self.memory.write(raw, address)
        parsed = self._json_parse(self.store, address, len(raw))
        if parsed == 0:
            raise EngineFailure("the wasm module could not parse a JSON value")
        return int(parsed)

    def _builtin(self, builtin_id: int, _ctx: int, *args: int) -> int:
        result = self._builtins[builtin_id](*(self._read_json(a) for a in args))
        return self._write_value(result)

    def _abort(self, address: int) -> None:
        raise EngineFailure(f"policy aborted: {self._read_cstring(address).decode(errors='replace')}")

    def evaluate(self, entrypoint: int, input_doc: Any) -> Any:
        raw = orjson.dumps(input_doc)
        # Each evaluation starts from the heap as it was right after loading data (opa_eval takes
        # the heap pointer as an argument), so memory used by one decision is reclaimed by the next.
        address = self._heap_after_data
        self.memory.grow_to(address + len(raw) + 1)
        self.memory.write(raw, address)
        result = self._eval(self.store, 0, entrypoint, self._data, address, len(raw), address + len(raw), 0)
        results = orjson.loads(self._read_cstring(result))
        return results[0]["result"] if results else None


class WasmEngine:
    """PolicyEngine over a pool of wasm instances (one evaluation per instance at a time)."""

    in_process = True  # evaluates on the caller's CPU, never waits on I/O

    def __init__(self, bundle: WasmBundle, *, instances: int = 4) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        self._module = self._load_module(bundle)
        self._data = bundle.data
        self.revision = bundle.revision
        self._instances = instances
        self._pool: InstancePool[_Instance] = InstancePool()
        for _ in range(instances):
            self._pool.put(self._new_instance())
        self._stop = threading.Event()
        # Deadlines are counted in epochs; the ticker moves the epoch on so that a long evaluation
        # traps at its deadline instead of running on past the caller's.
        self._ticker = threading.Thread(
            target=epoch_ticker,
            args=(self._engine, _TICK_SECONDS, self._stop.is_set),
            name="wasm-epoch",
            daemon=True,
        )
        self._ticker.start()

    def _load_module(self, bundle: WasmBundle) -> wasmtime.Module:
        if bundle.compiled is not None:
            try:
                return wasmtime.Module.deserialize(self._engine, bundle.compiled)
            except wasmtime.WasmtimeError:
                pass  # compiled by another wasmtime or for another CPU: compile it again
        return wasmtime.Module(self._engine, bundle.module)

    def compiled_module(self) -> bytes:
        """The current module as compiled here, for WasmBundle.compiled."""
        return bytes(self._module.serialize())

    def _new_instance(self) -> _Instance:
        return _Instance(self._engine, self._module, self._data)

    @classmethod
    def from_tarball(cls, path: Path, *, instances: int = 4) -> WasmEngine:
        return cls(WasmBundle.from_tarball(path), instances=instances)

    def replace(self, bundle: WasmBundle) -> None:
        """Switch to a new bundle. Evaluations already running finish on the old instances (and
        return them to the old pool), so no decision ever mixes two revisions."""
        module = self._load_module(bundle)
        pool: InstancePool[_Instance] = InstancePool()
        for _ in range(self._instances):
            pool.put(_Instance(self._engine, module, bundle.data))
        self._module, self._data, self.revision, self._pool = module, bundle.data, bundle.revision, pool

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        pool = self._pool
        instance = pool.get(max(timeout, 0.0))
        if instance is None:
            raise EngineTimeout(f"no wasm instance free within {timeout:.3f}s")
        try:
            entrypoint = instance.entrypoints.get(path)
            if entrypoint is None:
                raise NoActiveBundle(f"the wasm bundle has no entrypoint {path}")
            set_epoch_deadline(instance.store, max(1, int(timeout / _TICK_SECONDS)))
            started = time.monotonic()
            try:
                result = instance.evaluate(entrypoint, input_doc)
            except wasmtime.Trap as exc:
                if time.monotonic() - started >= timeout:
                    raise EngineTimeout(f"wasm evaluation passed its {timeout:.3f}s deadline") from exc
                raise EngineFailure(f"wasm evaluation trapped: {exc}") from exc
            except wasmtime.WasmtimeError as exc:
                raise EngineFailure(f"wasm evaluation failed: {exc}") from exc
            except Exception as exc:  # a host built-in (sprintf) raised: wasmtime re-raises it here
                raise EngineFailure(f"wasm host built-in failed: {exc!r}") from exc
        except (EngineTimeout, EngineFailure):
            # A trapped instance may be in any state: replace it rather than reuse it.
            pool.put(self._new_instance())
            raise
        except BaseException:
            pool.put(instance)
            raise
        pool.put(instance)
        if result is None:
            raise NoActiveBundle(f"the wasm bundle has no decision at {path}")
        return result

    def close(self) -> None:
        self._stop.set()

    def __enter__(self) -> WasmEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
