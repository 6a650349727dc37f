"""Debian packages some tests drive as real programs (chromium for the dashboard, prometheus and
promtool for the monitoring config), installed with apt-get when missing: the tests run as root
on a fresh machine. When they cannot be installed the test fails under CI=true (never a silent
skip there) and is skipped elsewhere, naming what is missing."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest


@functools.lru_cache(maxsize=None)
def _install(packages: tuple[str, ...]) -> str:
    """apt-get install ``packages``; the error text, or "" when it worked."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"could not run {command[0]}: {exc}"
        if done.returncode != 0:
            return f"could not install {' '.join(packages)}: {done.stderr[-2000:]}"
    return ""


def commands(names: tuple[str, ...], packages: tuple[str, ...]) -> tuple[str, ...]:
    """The paths of the commands ``names``, installing ``packages`` first when one is missing."""
    if not all(shutil.which(name) for name in names):
        error = _install(packages)
        if error:
            if os.environ.get("CI") == "true":
                pytest.fail(error)
            pytest.skip(error)
    paths = tuple(shutil.which(name) for name in names)
    assert all(paths), f"{', '.join(names)} not on PATH after installing {' '.join(packages)}"
    return paths
