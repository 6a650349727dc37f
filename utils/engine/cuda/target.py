"""The CUDA target: one step source compiled for the GPU, device arrays in and out, launch sizes.

How a step becomes a device function. An indicator step (``step_core`` convention) or any other
engine kernel piece is an ``@njit`` dispatcher; ``device_function(dispatcher)`` takes its Python
source (``dispatcher.py_func``) and compiles it a second time with ``numba.cuda.jit(device=True)``.
The helpers it calls (other ``@njit`` dispatchers: ``sma_push``, ``ema_feed``, ``ring_index``...)
are resolved the same way, recursively: the device function is a copy of the step's function
object whose globals (and closure cells) that name an ``@njit`` dispatcher name that
dispatcher's device function instead. (numba's CUDA typing context would also retarget a CPU
dispatcher on its own, but with the CPU's target options, ``cache=True`` included; doing it here
keeps one cache, ``device_function``'s, per function.) The ``@intrinsic`` helpers of
``step_core`` (``fma``, ``pick``) are target-generic LLVM and compile for CUDA unchanged. No
source is rewritten: the GPU kernel and the CPU kernel are the same Python code (same code
object), so parity is by construction, and by test (``tests/cudasim``). A step must stay within
what both targets compile: ``math.isnan``/``math.sqrt`` rather than ``np.isnan``/``np.sqrt``
(the same LLVM operations on the host; the CUDA target has no NumPy ufuncs on scalars).

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, ``simulated()``) a kernel is that
Python source run by the interpreter, one Python thread per CUDA thread. The device function is
then the plain Python copy described above (calls into it are direct Python calls), and the two
intrinsics, which have no Python body, run as their Python twins: ``pick`` as a conditional
expression, ``fma`` through a tiny host-compiled ``@njit`` that calls the same ``llvm.fma`` (so
the single rounding is the CPU's own). Python float arithmetic is IEEE binary64 in the same
order as the compiled step (numba emits no contraction or reassociation without fastmath), so
the simulator is bit-identical to the CPU kernel; the simulator tests assert exactly that (also
on flat and zero inputs: the values a step divides are NumPy scalars read from arrays, which
give inf/NaN like the compiled code where a Python float would raise; ``math.sqrt`` only ever
sees non-negative or NaN arguments).

Floating point on a real GPU. NVVM contracts ``a * b + c`` into one FMA by default (``-fma=1``)
even without fastmath, which changes last bits against the CPU kernels. numba's ``cuda.jit``
has no option to turn that off (``fastmath=False`` only leaves out ftz/approximate div and
sqrt; the NVVM options numba builds are ``{"fastmath", "opt"}``, and ``fma`` is only ever set
*on*, by fastmath). ``compile_kernel`` therefore compiles eagerly for one signature and sets
``fma=False`` on the kernel's code library before its PTX is used (PTX, cubin and function
caches cleared), and ``compile_ptx`` does the same for the offline PTX check; with that, and
NVVM's IEEE defaults (``prec-div=1``, ``prec-sqrt=1``, no ftz), +, -, *, / and sqrt round as on
the CPU, and the explicit ``fma`` of the steps stays fused on both. This touches numba
internals (``_nvvm_options`` and the caches of ``CUDACodeLibrary``); ``_forbid_contraction``
fails loudly if they change. Transcendentals (``exp``, ``log``, ``pow``) would come from
libdevice and differ from glibc in the last ulp; no indicator step uses one today, so indicator
kernels are bit-identical; a kernel that does is equal to 2 ulp per such call (libdevice's
documented bound) and its test must say so.

Compiling without a GPU. The step device functions are marked ``inline="always"`` (as their
``@njit`` originals are), so numba inlines them in its own IR and no separate device function
needs the current device; the ``@overload`` implementations numba uses (``int()`` of a float)
still ask the current device for its compute capability, which ``compile_ptx`` answers with the
target's when there is no driver (``_compiling_for``). That is how ``tests/unit/test_cuda_ptx.py``
compiles every indicator kernel to PTX with only libNVVM installed.

Under the simulator, launches take turns (``_SimulatedKernel``): numba's simulator runs one
kernel at a time per process, and a worker runs jobs in threads.

numba.cuda is imported lazily, inside these functions, never when the engine is imported (it
reads ``NUMBA_ENABLE_CUDASIM`` once, at its own import).
"""
from __future__ import annotations

import contextlib
import os
import threading
import types as pytypes
from typing import Any, Callable

import numpy as np

THREADS_PER_BLOCK = 128


def cuda_module():
    """``numba.cuda`` (the simulator's when ``NUMBA_ENABLE_CUDASIM=1`` was set before numba's import)."""
    from numba import cuda

    return cuda


def simulated() -> bool:
    """Whether numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM``, as numba reads it)."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


def simulator_requested() -> bool:
    """``NUMBA_ENABLE_CUDASIM`` set in the environment (what numba reads at import)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


# ------------------------------------------------------------------ device functions
_DEVICE_FUNCTIONS: dict[Any, Any] = {}


def _is_njit_dispatcher(value: Any) -> bool:
    from numba.core.dispatcher import Dispatcher

    return isinstance(value, Dispatcher) and getattr(value, "py_func", None) is not None


def _python_intrinsics() -> dict[Any, Callable]:
    """The Python twins of ``step_core``'s intrinsics, for the simulator."""
    from utils.engine.indicators.step_core import fma, pick

    return {fma: _host_fma(), pick: lambda condition, if_true, if_false: if_true if condition else if_false}


_HOST_FMA: list = []


def _host_fma():
    """``fma`` compiled for the host and callable from Python (the same ``llvm.fma`` the CPU step uses)."""
    if not _HOST_FMA:
        from numba import njit

        from utils.engine.indicators.step_core import fma

        @njit(error_model="numpy")
        def host_fma(a, b, c):
            return fma(float(a), float(b), float(c))

        _HOST_FMA.append(host_fma)
    return _HOST_FMA[0]


def _retarget(value: Any, python: bool) -> Any:
    if _is_njit_dispatcher(value):
        return device_function(value)
    if python:
        twins = _python_intrinsics()
        try:
            return twins.get(value, value)
        except TypeError:  # unhashable global
            return value
    return value


def _rebound(py_func: pytypes.FunctionType, python: bool) -> pytypes.FunctionType:
    """A copy of ``py_func`` whose referenced globals and closure cells that are ``@njit``
    dispatchers are their device functions (and, for the simulator, intrinsics their twins)."""
    names = set(py_func.__code__.co_names)
    globals_ = dict(py_func.__globals__)
    for name in names & globals_.keys():
        globals_[name] = _retarget(globals_[name], python)
    closure = None
    if py_func.__closure__:
        closure = tuple(pytypes.CellType(_retarget(cell.cell_contents, python)) for cell in py_func.__closure__)
    copy = pytypes.FunctionType(py_func.__code__, globals_, py_func.__name__, py_func.__defaults__, closure)
    copy.__qualname__ = py_func.__qualname__
    copy.__module__ = py_func.__module__
    copy.__doc__ = py_func.__doc__
    return copy


def device_function(dispatcher: Any) -> Any:
    """The CUDA device function compiled from ``dispatcher.py_func`` (cached per dispatcher).

    On a real GPU target a ``numba.cuda.jit(device=True)`` dispatcher; in the simulator the
    Python function itself (see the module docstring)."""
    found = _DEVICE_FUNCTIONS.get(dispatcher)
    if found is None:
        if not _is_njit_dispatcher(dispatcher):
            raise TypeError(f"device_function takes an @njit dispatcher, got {dispatcher!r}")
        python = simulated()
        _DEVICE_FUNCTIONS[dispatcher] = None  # a recursive reference resolves lazily below
        function = _rebound(dispatcher.py_func, python)
        if python:
            found = function
        else:
            found = cuda_module().jit(device=True)(function)
            # inlined into the caller's numba IR, as on the CPU: no separately compiled device
            # function, so typing needs no GPU (compile_ptx works with only libNVVM)
            found.targetoptions["inline"] = "always"
        _DEVICE_FUNCTIONS[dispatcher] = found
    return found


# ------------------------------------------------------------------ compiling kernels
def _forbid_contraction(library: Any) -> None:
    """Make NVVM compile ``library`` with ``-fma=0`` (see the module docstring), dropping any PTX,
    cubin or loaded function already made with contraction on."""
    options = getattr(library, "_nvvm_options", None)
    caches = [getattr(library, name, None) for name in ("_ptx_cache", "_ltoir_cache", "_cubin_cache",
                                                        "_linkerinfo_cache", "_cufunc_cache")]
    if not isinstance(options, dict) or not all(isinstance(cache, dict) for cache in caches):
        raise RuntimeError("numba's CUDA code library changed: cannot turn FMA contraction off; "
                           "update utils/engine/cuda/target.py._forbid_contraction")
    options["fma"] = False
    for cache in caches:
        cache.clear()


_SIMULATOR_LAUNCH = threading.Lock()


class _SimulatedKernel:
    """A simulator kernel whose launches take turns: numba's simulator runs one kernel at a time
    per process (it asserts so), while a worker may run several jobs in threads."""

    def __init__(self, kernel: Any) -> None:
        self._kernel = kernel

    def __getitem__(self, config: Any) -> Callable:
        configured = self._kernel[config]

        def launch(*args: Any) -> Any:
            with _SIMULATOR_LAUNCH:
                return configured(*args)

        return launch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)


def compile_kernel(function: Callable, signature: str) -> Any:
    """``function`` as a CUDA kernel compiled eagerly for ``signature``, launchable as
    ``kernel[blocks, threads](*args)``; on a real GPU without FMA contraction."""
    cuda = cuda_module()
    kernel = cuda.jit(signature)(function)
    if simulated():
        return _SimulatedKernel(kernel)
    for overload in kernel.overloads.values():
        _forbid_contraction(overload._codelibrary)
    return kernel


def compile_ptx(function: Callable, signature: str, cc: tuple[int, int] = (7, 5)) -> str:
    """PTX of ``function`` as a kernel for ``signature`` and compute capability ``cc``, no FMA
    contraction: needs libNVVM, no GPU (``numba.cuda.compile_ptx`` with ``fma=0``)."""
    from numba.core import sigutils
    from numba.cuda.compiler import compile_cuda

    from numba.core import types

    nvvm_options = {"fastmath": False, "opt": 3, "fma": False}
    args, _ = sigutils.normalize_signature(signature)
    with _compiling_for(cc):
        cres = compile_cuda(function, types.void, args, nvvm_options=nvvm_options, cc=cc)
        code = function.__code__
        library, _ = cres.target_context.prepare_cuda_kernel(cres.library, cres.fndesc, False, False,
                                                             nvvm_options, code.co_filename, code.co_firstlineno)
        _forbid_contraction(library)
        return library.get_asm_str(cc=cc)


class _TargetDevice:
    def __init__(self, cc: tuple[int, int]) -> None:
        self.compute_capability = cc


_COMPILE_LOCK = threading.Lock()


@contextlib.contextmanager
def _compiling_for(cc: tuple[int, int]):
    """Built-in numba.cuda compiles the ``@overload`` implementations a kernel uses (``int()`` of
    a float, ...) as device functions for the *current device's* compute capability, even under
    ``compile_ptx``, so without a GPU (no driver) they fail. For the offline PTX check only, the
    device numba asks for is ``cc``, the target being compiled for; with a GPU present nothing
    changes (its own device answers)."""
    from numba.cuda import dispatcher

    try:
        dispatcher.get_current_device()
        has_device = True
    except Exception:  # noqa: BLE001 - no driver / no device: answer with the target
        has_device = False
    if has_device:
        yield
        return
    with _COMPILE_LOCK:
        original = dispatcher.get_current_device
        dispatcher.get_current_device = lambda: _TargetDevice(cc)
        try:
            yield
        finally:
            dispatcher.get_current_device = original


def nvvm_available() -> str | None:
    """``None`` when libNVVM can be loaded (so ``compile_ptx`` works), else why not."""
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
    except Exception as error:  # noqa: BLE001 - any failure to load means "no NVVM here"
        return f"{type(error).__name__}: {error}"
    return None


_KERNELS_READY: list = []


def kernels_unavailable() -> str | None:
    """``None`` when CUDA kernels can be compiled here (the simulator, or libNVVM found), else
    why not (found once per process). A GPU host needs libNVVM besides the driver: a CUDA
    toolkit (``CUDA_HOME``), or the ``nvidia-cuda-nvcc-cu12`` wheel with ``CUDA_HOME`` set to
    its ``site-packages/nvidia/cuda_nvcc``."""
    if not _KERNELS_READY:
        _KERNELS_READY.append(None if simulated() else nvvm_available())
    return _KERNELS_READY[0]


# ------------------------------------------------------------------ arrays and launches
def on_device(device_id: int = 0) -> Any:
    """Context manager: the numba.cuda allocations, copies and launches inside it use CUDA device
    ``device_id`` (a backend's ``device_id``; numba otherwise takes device 0 in every thread)."""
    return cuda_module().gpus[device_id]


def is_device_array(values: Any) -> bool:
    return hasattr(values, "__cuda_array_interface__") and not isinstance(values, np.ndarray)


def to_device(values: Any, dtype: Any = None) -> Any:
    """A numba device array for ``values``: zero-copy for anything with
    ``__cuda_array_interface__`` (CuPy, torch, numba), one copy to the device for host arrays
    (C-contiguous, ``dtype`` when given)."""
    cuda = cuda_module()
    if is_device_array(values) and not simulated():
        array = cuda.as_cuda_array(values)
        if dtype is not None and array.dtype != np.dtype(dtype):
            raise TypeError(f"device array has dtype {array.dtype}, expected {np.dtype(dtype)}")
        return array
    if is_device_array(values):  # the simulator's own device arrays
        values = values.copy_to_host()
    return cuda.to_device(np.ascontiguousarray(values, dtype=dtype))


def to_host(values: Any) -> np.ndarray:
    """``values`` in host memory: NumPy passes through; device arrays are copied once."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "copy_to_host"):
        return values.copy_to_host()
    if hasattr(values, "__cuda_array_interface__"):
        return cuda_module().as_cuda_array(values).copy_to_host()
    return np.asarray(values)


def device_empty(shape: tuple[int, ...], dtype: Any = np.float64) -> Any:
    return cuda_module().device_array(shape, dtype=dtype)


def launch_config(items: int, threads_per_block: int = THREADS_PER_BLOCK) -> tuple[int, int]:
    """``(blocks, threads)`` covering ``items`` threads: at most ``threads_per_block`` per block
    (fewer when there are fewer items, which also keeps the simulator from starting idle threads)."""
    threads = max(1, min(threads_per_block, items))
    return max(1, -(-items // threads)), threads
