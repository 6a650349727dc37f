"""require_reference: a missing reference library skips locally and fails under CI=true."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT
from tests.references import reference_unavailable, require_reference

MISSING = "no_such_reference_library_for_parity"


def test_an_installed_reference_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_reference("json") is json


def test_a_missing_reference_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=MISSING):
        require_reference(MISSING)


@pytest.mark.parametrize("value", ["false", "1", ""])
def test_only_ci_true_turns_the_skip_into_a_failure(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception):
        require_reference(MISSING)


def test_a_missing_reference_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING}.*install it: pip install example"):
        require_reference(MISSING, install_hint="pip install example")


def test_an_unrunnable_reference_check_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="seed document absent"):
        reference_unavailable("seed document absent")


def run_parity_module(tmp_path, ci: str) -> subprocess.CompletedProcess:
    module = tmp_path / "test_parity_module.py"
    module.write_text(f"from tests.references import require_reference\n"
                      f"require_reference({MISSING!r})\n"
                      f"def test_never_runs():\n    pass\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "CI": ci, "PYTHONPATH": str(PROJECT_ROOT)})


def test_a_parity_module_without_its_reference_fails_the_run_under_ci(tmp_path):
    """End to end: the run fails (not 'all skipped') when a parity module lacks its reference."""
    completed = run_parity_module(tmp_path, "true")
    assert completed.returncode not in (0, 5), completed.stdout[-2000:]  # 0 passed, 5 nothing collected
    assert "1 error" in completed.stdout and "is not importable" in completed.stdout


def test_a_parity_module_without_its_reference_is_skipped_locally(tmp_path):
    completed = run_parity_module(tmp_path, "false")
    assert completed.returncode == 5, completed.stdout[-2000:]  # 5: no test ran (the module was skipped)
    assert "1 skipped" in completed.stdout
