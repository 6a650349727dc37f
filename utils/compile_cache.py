"""Where numba keeps compiled kernels on disk, set once at process entry.

numba reads ``NUMBA_CACHE_DIR`` when it is imported, and each ``cache=True`` kernel picks its cache
directory when its module is imported. So ``use_compile_cache_dir`` runs at the start of a process
(``main_server``'s roles, a worker process), before any compute module is imported, and sets the
environment too, so processes it spawns inherit it. Without it numba writes next to the sources
(``__pycache__``), which a read-only install, a container image layer or a cleaned checkout loses.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

ENV_NAME = "NUMBA_CACHE_DIR"


def use_compile_cache_dir(path: Path) -> Path | None:
    """Point numba's on-disk cache at ``path`` (created if missing) for this process and its
    children; returns the directory, or None when it cannot be created (numba then keeps its
    default, next to the sources, and says so when it cannot write there either)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("compiled-kernel cache %s cannot be created (%s); kernels are cached next to the sources",
                    path, exc.strerror or exc)
        return None
    resolved = str(path.resolve())
    os.environ[ENV_NAME] = resolved
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported: kernels defined from now on use it
        config.CACHE_DIR = resolved
    return path


def cached_kernel_files(path: Path) -> int:
    """How many compiled kernels (``*.nbc``) the cache holds."""
    return sum(1 for _ in path.rglob("*.nbc")) if path.is_dir() else 0


WARM_MARKER = "worker-warm-up.done"


KERNEL_SOURCES = (Path(__file__).resolve().parent / "engine", Path(__file__).resolve().parent / "tasks")


def _sources_stamp() -> str:
    """A digest of the kernel sources' names, sizes and modification times: numba's own cache
    index is invalidated by the same, so a changed source means kernels to compile again."""
    digest = hashlib.sha256()
    for root in KERNEL_SOURCES:
        for source in sorted(root.rglob("*.py")):
            stat = source.stat()
            digest.update(f"{source.relative_to(root.parent)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _marker_text() -> str:
    import numba
    return (f"numba {numba.__version__}, python {sys.version_info.major}.{sys.version_info.minor}, "
            f"sources {_sources_stamp()}\n")


def is_warm(path: Path) -> bool:
    """Whether a worker's warm-up has run to its end with this cache, the same numba and Python
    and unchanged kernel sources: the kernels are then on disk, and a warm-up loads rather than
    compiles them."""
    try:
        return (path / WARM_MARKER).read_text() == _marker_text()
    except OSError:
        return False


def mark_warm(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / WARM_MARKER).write_text(_marker_text())
    except OSError as exc:
        log.warning("cannot mark the kernel cache %s as warm (%s)", path, exc.strerror or exc)
