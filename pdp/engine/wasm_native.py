"""Direct calls into wasmtime's C API for the wasm engine's hot path: exported i32 functions and
the linear memory, without wasmtime-py's generic wrappers.

Why: wasmtime-py's bindings are ctypes over `CDLL`, which releases the GIL around every foreign
call. One decision made about twenty such calls (memory size and pointer queries, malloc, JSON
parse and dump, the epoch deadline), and in a process with other Python threads each release is
a chance to lose the GIL and wait a switch interval to get it back; wasmtime-py's `Func.__call__`
also converts every argument through its generic value types. Here the short calls go through a
`PyDLL` handle of the same library (the GIL stays held: they take microseconds) and only the
evaluation itself releases it, so the engine's epoch ticker can still interrupt a runaway policy.

These are wasmtime-py's ctypes bindings, not its public API: the version is pinned
(pyproject.toml) and the engine differential test exercises every call.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import _func
from wasmtime._func import enter_wasm

_held = ctypes.PyDLL(ffi.dll._name)  # same library, calls that keep the GIL


def _bind(name: str, restype: Any, argtypes: list[Any]) -> Any:
    fn = getattr(_held, name)
    fn.restype, fn.argtypes = restype, argtypes
    return fn


_CTX = ctypes.POINTER(ffi.wasmtime_context_t)
_func_call_held = _bind(
    "wasmtime_func_call",
    ctypes.POINTER(ffi.wasmtime_error_t),
    [
        _CTX,
        ctypes.POINTER(ffi.wasmtime_func_t),
        ctypes.POINTER(ffi.wasmtime_val_t),
        ctypes.c_size_t,
        ctypes.POINTER(ffi.wasmtime_val_t),
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.POINTER(ffi.wasm_trap_t)),
    ],
)
_MEMORY = ctypes.POINTER(ffi.wasmtime_memory_t)
_memory_data = _bind("wasmtime_memory_data", ctypes.c_void_p, [_CTX, _MEMORY])
_memory_size = _bind("wasmtime_memory_data_size", ctypes.c_size_t, [_CTX, _MEMORY])
_set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, [_CTX, ctypes.c_uint64])
_increment_epoch = _bind("wasmtime_engine_increment_epoch", None, [ctypes.POINTER(ffi.wasm_engine_t)])
_strnlen = ctypes.PyDLL(None).strnlen
_strnlen.restype, _strnlen.argtypes = ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_size_t]


class I32Call:
    """A call of an exported function that takes and returns only i32s, as opa_eval, opa_malloc,
    opa_json_parse and opa_json_dump do, through one preallocated argument array.

    `releases_gil`: the evaluation itself (it may run long and call back into Python for host
    built-ins); the others are short and keep the GIL."""

    def __init__(self, func: wasmtime.Func, arity: int, *, releases_gil: bool = False) -> None:
        self._func = func._func
        self._params = (ffi.wasmtime_val_t * arity)()
        for param in self._params:
            param.kind = ffi.WASMTIME_I32
        self._results = (ffi.wasmtime_val_t * 1)()
        self._arity = arity
        self._call = ffi.wasmtime_func_call if releases_gil else _func_call_held

    def __call__(self, store: wasmtime.Store, *args: int) -> int:
        params = self._params
        for i, arg in enumerate(args):
            params[i].of.i32 = arg
        with enter_wasm(store) as trap:
            error = self._call(
                store._context(), ctypes.byref(self._func), params, self._arity, self._results, 1, trap
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(self._results[0].of.i32)


class LinearMemory:
    """Reads and writes of one instance's memory by address (it may move when it grows, so its
    base is asked for on every access)."""

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self._store = store
        self._memory = ctypes.byref(memory._memory)
        self.wrapped = memory

    def size(self) -> int:
        return int(_memory_size(self._store._context(), self._memory))

    def _span(self, address: int, length: int) -> int:
        context = self._store._context()
        size = _memory_size(context, self._memory)
        if address < 0 or length < 0 or address + length > size:
            raise wasmtime.WasmtimeError(f"out of bounds: {length} bytes at {address} in {size}")
        return int(_memory_data(context, self._memory)) + address

    def write(self, data: bytes, address: int) -> None:
        ctypes.memmove(self._span(address, len(data)), data, len(data))

    def read_cstring(self, address: int) -> bytes:
        """The NUL-terminated string at `address` (to the end of memory when there is no NUL)."""
        context = self._store._context()
        size = _memory_size(context, self._memory)
        if not 0 <= address <= size:
            raise wasmtime.WasmtimeError(f"out of bounds: address {address} in {size}")
        start = int(_memory_data(context, self._memory)) + address
        return ctypes.string_at(start, _strnlen(start, size - address))

    def grow_to(self, size: int) -> None:
        have = self.size()
        if size > have:
            self.wrapped.grow(self._store, (size - have) // 65536 + 1)


def set_epoch_deadline(store: wasmtime.Store, ticks: int) -> None:
    _set_epoch_deadline(store._context(), ticks)


def epoch_ticker(engine: wasmtime.Engine, interval: float, stopped: Callable[[], bool]) -> None:
    """Move `engine`'s epoch on every `interval` seconds until `stopped()`: the engine's deadline
    clock, 200 wake-ups a second in every process that decides.

    Why not `Event.wait` and `Engine.increment_epoch`: each wake-up then built a Condition waiter
    (a lock allocated, acquired twice) and released the GIL around the increment (an atomic add),
    one more chance to take it from the event loop mid-review. `time.sleep` is one C call, and the
    increment keeps the GIL. A stop is seen within one interval."""
    pointer = engine.ptr()
    while not stopped():
        time.sleep(interval)
        _increment_epoch(pointer)


_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(0)  # NULL: the callback has no state


def define_i32_func(linker: wasmtime.Linker, module: str, name: str, arity: int, func: Any) -> Any:
    """Define the host function `module.name` taking `arity` i32s and returning one i32, called
    with plain ints. wasmtime-py's generic trampoline builds a Caller and converts every value
    through its Val types on each call; the policy's `sprintf` calls come through here.

    Returns the C callback: the caller keeps it as long as any instance of the linker lives."""
    i32 = wasmtime.ValType.i32()
    ty = wasmtime.FuncType([i32] * arity, [i32])

    def call(_env: Any, _caller: Any, params: Any, nparams: int, results: Any, _nresults: int) -> int:
        try:
            value = func(*[params[i].of.i32 for i in range(nparams)])
            results[0].kind = ffi.WASMTIME_I32
            results[0].of.i32 = value
            return 0
        except BaseException as exc:
            # As wasmtime-py's own trampoline does: the exception is raised again by enter_wasm
            # in the caller of the wasm function, after the trap unwinds the wasm stack.
            _func.LAST_EXCEPTION = exc  # type: ignore[assignment]
            trap = wasmtime.Trap("python exception")._consume()
            return int(ctypes.cast(trap, ctypes.c_void_p).value or 0)

    callback = ffi.wasmtime_func_callback_t(call)
    module_bytes, name_bytes = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func(
        linker.ptr(),
        ctypes.create_string_buffer(module_bytes),
        len(module_bytes),
        ctypes.create_string_buffer(name_bytes),
        len(name_bytes),
        ty.ptr(),
        callback,
        None,
        _NO_FINALIZER,
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    return callback
