"""Reference libraries for parity tests: missing one skips on a laptop, fails under ``CI=true``.

A parity test that skips proves nothing, so in CI (``CI=true``, as GitHub Actions and GitLab set it)
an absent reference is a failure; locally it stays a skip so a partial venv can still run the rest.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

DEFAULT_INSTALL_HINT = "pip install -r requirements-test.txt"


def running_in_ci() -> bool:
    return os.environ.get("CI") == "true"


def reference_unavailable(reason: str) -> None:
    """Skip (locally) or fail (under CI=true) because a reference check cannot run."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true: a reference check that cannot run is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_reference(module_name: str, install_hint: str = DEFAULT_INSTALL_HINT) -> ModuleType:
    """Import a reference library for a parity test; usable at module level or inside a test."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        problem = str(error)
    # outside the except block so the failure reads as one message, not a chained traceback
    reference_unavailable(f"reference library {module_name!r} is not importable ({problem}); "
                          f"install it: {install_hint}")
    raise AssertionError("unreachable: reference_unavailable always raises")
