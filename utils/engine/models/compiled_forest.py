"""Random forests predicted by a compiled C kernel (``forest_kernel.c``) over flattened trees.

Why not a tree compiler (treelite + tl2cgen): tl2cgen turns every node into C code; for the
bench's 100 fully grown trees (156k nodes) gcc needed ~6 minutes per model on this 2-core
machine and the result was no faster than scikit-learn (branchy code mispredicts at every
level of a deep tree). Here one small kernel is compiled once per machine (~0.5 s, cached in a
directory the server owns, keyed on the kernel's source, the compiler and the flags) and every
forest is *data*: no code is ever generated from a model or a request.

The kernel walks 12 rows through a tree together (their loads overlap), trees in order, so each
row's sum is accumulated tree by tree exactly as scikit-learn's single-threaded predict does.
Comparisons are exact: scikit-learn compares ``float32(x) <= threshold`` (a float64); the
threshold rounded *down* to float32 gives the same answer for every float32 x.

Agreement with scikit-learn (tests/unit/test_compiled_forest.py): classification probabilities
are equal up to float64 summation order (scikit-learn's threaded predict adds trees in thread
order; identical for pure leaves, where they are vote counts / n_trees); regression within 1e-12
relative. ``CompileUnavailable`` when there is no C compiler or the build fails: callers keep
their other path.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KERNEL_SOURCE = Path(__file__).with_name("forest_kernel.c")
CFLAGS = ("-O3", "-shared", "-fPIC")
# Below this many rows one thread is faster than handing halves to a pool.
PARALLEL_MIN_ROWS = 2048
MAX_PACKED = 2 ** 31


class CompileUnavailable(RuntimeError):
    """No compiled kernel: no compiler, a failed build, or a forest the kernel cannot hold."""


_kernels: dict[tuple[str, str], ctypes.CDLL] = {}
_kernels_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _compiler_identity(compiler: str) -> str:
    try:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompileUnavailable(f"no C compiler {compiler!r} ({exc})") from None
    if done.returncode != 0:
        raise CompileUnavailable(f"{compiler} --version failed: {done.stderr.strip()[:200]}")
    return done.stdout.splitlines()[0] if done.stdout else compiler


class _ForestStruct(ctypes.Structure):
    """forest_kernel.c's ``Forest``: same fields, same order."""
    _fields_ = [("info", ctypes.c_void_p), ("thr", ctypes.c_void_p), ("roots", ctypes.c_void_p),
                ("values", ctypes.c_void_p), ("n_trees", ctypes.c_int64), ("n_features", ctypes.c_int64),
                ("fbits", ctypes.c_int32), ("n_out", ctypes.c_int32)]


def _bind(library: ctypes.CDLL) -> ctypes.CDLL:
    pointer, i64 = ctypes.c_void_p, ctypes.c_int64
    library.forest_accumulate.argtypes = [pointer, pointer, i64, i64, pointer]
    library.forest_accumulate.restype = None
    return library


def load_kernel(cache_dir: Path, compiler: str = "cc") -> ctypes.CDLL:
    """The compiled kernel: built into ``cache_dir`` on first use (atomically, so concurrent
    processes never load half a file), loaded from there afterwards."""
    key = (str(cache_dir), compiler)
    with _kernels_lock:
        if key in _kernels:
            return _kernels[key]
        source = KERNEL_SOURCE.read_bytes()
        identity = "\n".join((_compiler_identity(compiler), " ".join(CFLAGS), platform.machine()))
        digest = hashlib.sha256(source + identity.encode()).hexdigest()[:20]
        target = Path(cache_dir) / f"forest_kernel-{digest}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(handle)
            try:
                done = subprocess.run([compiler, *CFLAGS, "-o", partial, str(KERNEL_SOURCE)],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    raise CompileUnavailable(f"{compiler} failed: {done.stderr.strip()[:500]}")
                os.replace(partial, target)
            except (OSError, subprocess.SubprocessError) as exc:
                raise CompileUnavailable(f"could not build the forest kernel ({exc})") from None
            finally:
                if os.path.exists(partial):
                    os.unlink(partial)
        try:
            library = _bind(ctypes.CDLL(str(target)))
        except OSError as exc:
            raise CompileUnavailable(f"could not load {target} ({exc})") from None
        _kernels[key] = library
        return library


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _kernels_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(os.cpu_count() or 1, 1), thread_name_prefix="forest")
        return _pool


@dataclass(frozen=True)
class FlatForest:
    info: np.ndarray       # int32 (left << fbits) | feature; leaves point at themselves
    thresholds: np.ndarray  # float32, rounded down; +inf at leaves
    roots: np.ndarray      # int32 root index of each tree
    values: np.ndarray     # float64 (nodes, n_out): class fractions or regression values
    fbits: int
    n_features: int


def _round_down_float32(thresholds: np.ndarray) -> np.ndarray:
    narrow = thresholds.astype(np.float32)
    above = narrow.astype(np.float64) > thresholds
    narrow[above] = np.nextafter(narrow[above], np.float32(-np.inf))
    return narrow


def flatten_forest(forest: Any) -> FlatForest:
    """A fitted scikit-learn RandomForestClassifier/Regressor (one output) as flat arrays."""
    classifier = hasattr(forest, "classes_")
    if getattr(forest, "n_outputs_", 1) != 1:
        raise CompileUnavailable("multi-output forests are not compiled")
    n_features = int(forest.n_features_in_)
    fbits = max(int(n_features - 1).bit_length(), 1)
    infos, thresholds, values, roots = [], [], [], []
    offset = 0
    for estimator in forest.estimators_:
        tree = estimator.tree_
        left, right = tree.children_left, tree.children_right
        internal = np.flatnonzero(left != -1)
        # Renumber so that the children of the k-th internal node are 2k+1 and 2k+2: the right
        # child is always left + 1, so one index and one comparison pick the next node.
        new_id = np.zeros(tree.node_count, dtype=np.int64)
        new_id[left[internal]] = 2 * np.arange(internal.size) + 1
        new_id[right[internal]] = 2 * np.arange(internal.size) + 2
        order = np.empty(tree.node_count, dtype=np.int64)
        order[new_id] = np.arange(tree.node_count)  # new index -> scikit-learn node
        is_leaf = left[order] == -1
        next_left = np.where(is_leaf, np.arange(tree.node_count), new_id[np.maximum(left[order], 0)]) + offset
        feature = np.where(is_leaf, 0, tree.feature[order])
        infos.append((next_left << fbits) | feature)
        thresholds.append(np.where(is_leaf, np.inf, tree.threshold[order]))
        leaf_values = tree.value[order, 0, :]
        if classifier:  # scikit-learn's tree predict_proba: each node's class fractions
            totals = leaf_values.sum(axis=1, keepdims=True)
            leaf_values = leaf_values / np.where(totals == 0, 1.0, totals)
        values.append(leaf_values)
        roots.append(offset)
        offset += tree.node_count
    info = np.concatenate(infos)
    if offset >= MAX_PACKED >> fbits:
        raise CompileUnavailable(f"forest too large for the kernel ({offset} nodes)")
    return FlatForest(info.astype(np.int32), _round_down_float32(np.concatenate(thresholds)),
                      np.asarray(roots, dtype=np.int32), np.ascontiguousarray(np.concatenate(values)),
                      fbits, n_features)


class CompiledForest:
    """``mean(features) -> (n, n_out)``: the forest's mean leaf value per row, i.e. scikit-learn's
    ``predict_proba`` (classifier) or ``predict`` as a column (regressor)."""

    def __init__(self, forest: Any, kernel: ctypes.CDLL, threads: int | None = None) -> None:
        self.flat = flatten_forest(forest)
        self.kernel = kernel
        self.threads = max(threads or os.cpu_count() or 1, 1)
        self.n_trees = int(self.flat.roots.size)
        self.n_out = int(self.flat.values.shape[1])
        flat = self.flat
        # One struct built once: converting a dozen arguments per call (numpy's .ctypes objects)
        # cost more than walking a row through 100 trees. It points into ``flat``'s arrays, which
        # this object keeps alive.
        self._struct = _ForestStruct(flat.info.ctypes.data, flat.thresholds.ctypes.data, flat.roots.ctypes.data,
                                     flat.values.ctypes.data, self.n_trees, flat.n_features, flat.fbits, self.n_out)
        self._address = ctypes.addressof(self._struct)

    def _accumulate(self, rows: np.ndarray, start: int, stop: int, sums: np.ndarray) -> None:
        self.kernel.forest_accumulate(self._address, rows.ctypes.data, start, stop, sums.ctypes.data)

    def mean(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != self.flat.n_features:
            raise ValueError(f"expected (n, {self.flat.n_features}) features, got {features.shape}")
        # scikit-learn predicts on float32 inputs; the kernel compares the same float32 values.
        rows = features.astype(np.float32, order="C")
        n = rows.shape[0]
        sums = np.zeros((n, self.n_out))
        parts = min(self.threads, n // (PARALLEL_MIN_ROWS // 2)) if n >= PARALLEL_MIN_ROWS else 1
        if parts <= 1:
            self._accumulate(rows, 0, n, sums)
        else:  # ctypes drops the GIL during the call, so the parts run on separate cores
            bounds = np.linspace(0, n, parts + 1).astype(np.int64)
            done = [_shared_pool().submit(self._accumulate, rows, int(a), int(b), sums)
                    for a, b in zip(bounds[1:-1], bounds[2:])]
            self._accumulate(rows, 0, int(bounds[1]), sums)  # the first part in this thread
            for future in done:
                future.result()
        sums /= self.n_trees
        return sums
