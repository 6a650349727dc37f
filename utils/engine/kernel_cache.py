"""numba's on-disk cache for kernels built by a factory (closures), which ``cache=True`` cannot keep.

Why: numba keys a closure's cache entry by the pickled contents of its cells. When a cell holds
another compiled function (the indicator drivers close over their kind's ``step``/``load``/
``store``), that pickle carries a per-process random id, so the key differs in every process and
the entry is never found again: each driver compiled from scratch after every start (about half a
second per kind and role). ``ClosureCache`` keys the entry instead by what the closure *computes
with*: the bytecode and constants of the function, and for each cell a fingerprint of its value
(a compiled function by its Python function's code, recursively through the compiled functions
it calls by global name; a number or tuple by its value). The same code in any process finds the
same entry; a change to a step's code (or to a helper it calls) makes a new one.

Where entries land is numba's choice (``NUMBA_CACHE_DIR`` when set, else ``__pycache__`` next to
the source); ``utils.compile_cache`` points it at a persistent directory at process start.
"""
from __future__ import annotations

import hashlib
import types
from typing import Any

from numba.core.caching import FunctionCache
from numba.core.dispatcher import Dispatcher


def _code_parts(code: types.CodeType, seen: set[int]) -> list[bytes]:
    parts = [code.co_qualname.encode(), code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.extend(_code_parts(const, seen))
        else:
            parts.append(repr(const).encode())
    return parts


def _function_parts(function: types.FunctionType, seen: set[int]) -> list[bytes]:
    if id(function) in seen:  # recursion through globals (a function calling itself)
        return [b"<seen>", function.__qualname__.encode()]
    seen.add(id(function))
    parts = [function.__module__.encode(), *_code_parts(function.__code__, seen)]
    for cell in function.__closure__ or ():
        parts.extend(_value_parts(cell.cell_contents, seen))
    for name in function.__code__.co_names:  # compiled functions it calls by global name
        value = function.__globals__.get(name)
        if isinstance(value, Dispatcher):
            parts.append(name.encode())
            parts.extend(_value_parts(value, seen))
    return parts


def _value_parts(value: Any, seen: set[int]) -> list[bytes]:
    if isinstance(value, Dispatcher):
        return [b"dispatcher", repr(sorted(value.targetoptions.items())).encode(),
                *_function_parts(value.py_func, seen)]
    if isinstance(value, types.FunctionType):
        return [b"function", *_function_parts(value, seen)]
    if isinstance(value, (tuple, list)):
        return [type(value).__name__.encode()] + [part for item in value for part in _value_parts(item, seen)]
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return [type(value).__name__.encode(), repr(value).encode()]
    raise TypeError(f"cannot fingerprint a closure cell holding {type(value).__name__}")


def fingerprint(function: types.FunctionType) -> str:
    """A digest of ``function``'s code, its closure's values and the compiled functions it calls."""
    digest = hashlib.sha256()
    for part in _function_parts(function, set()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


class ClosureCache(FunctionCache):
    """numba's ``FunctionCache`` with an index key that is the same in every process."""

    def __init__(self, py_func: types.FunctionType) -> None:
        super().__init__(py_func)
        self._fingerprint = fingerprint(py_func)

    def _index_key(self, sig, codegen):
        return sig, codegen.magic_tuple(), (self._fingerprint, "closure")


def cache_on_disk(dispatcher: Dispatcher) -> Dispatcher:
    """Give a factory-built ``@njit`` function an on-disk cache (what ``cache=True`` does for a
    module-level one, through ``Dispatcher.enable_caching``, but with the stable key)."""
    try:
        dispatcher._cache = ClosureCache(dispatcher.py_func)
    except TypeError:  # a cell we cannot fingerprint (an array...): compiled per process, as before
        pass
    return dispatcher
