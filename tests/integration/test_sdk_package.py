"""The client package builds from the sources alone (no generated stubs in the tree): the wheel
carries every service's stubs, the `gq` entry point and no server code, and runs from the wheel.
(The fresh-venv `pip install .` is slower; the README's SDK section shows it.)"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SERVER_ONLY = ("numba", "redis", "scikit-learn", "lightgbm", "torch", "cvxpy", "onnxruntime")


def _sources(folder: Path) -> Path:
    """What a fresh clone holds for the client package (gpu_quant without generated stubs)."""
    folder.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in"):
        shutil.copy2(PROJECT_ROOT / name, folder / name)
    (folder / "api_proto").mkdir()
    for proto in (PROJECT_ROOT / "api_proto").glob("*.proto"):
        shutil.copy2(proto, folder / "api_proto" / proto.name)
    shutil.copytree(PROJECT_ROOT / "gpu_quant", folder / "gpu_quant",
                    ignore=shutil.ignore_patterns("*_pb2*.py", "*_pb2*.pyi", "__pycache__"))
    return folder


def test_wheel_ships_stubs_and_entry_point_without_server_code(tmp_path):
    source = _sources(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel, = (tmp_path / "dist").glob("gpu_quant-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode())
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        archive.extractall(tmp_path / "installed")

    for proto in (PROJECT_ROOT / "api_proto").glob("*.proto"):
        assert {f"gpu_quant/_proto/{proto.stem}_pb2.py", f"gpu_quant/_proto/{proto.stem}_pb2_grpc.py"} <= names
    assert entry_points["console_scripts"]["gq"] == "gpu_quant.cli.app:main"
    assert {name.split("/")[0] for name in names} == {"gpu_quant", wheel.name.split("-py3")[0] + ".dist-info"}
    requirements = [line.split(":", 1)[1].strip().lower() for line in metadata.splitlines()
                    if line.startswith("Requires-Dist:")]
    assert not [name for name in requirements if name.startswith(SERVER_ONLY)], requirements
    stubs = (tmp_path / "installed" / "gpu_quant" / "_proto" / "factor_pb2.py").read_text()
    assert "from . import jobs_pb2" in stubs and "api_proto import" not in stubs

    # the unpacked wheel runs on its own stubs: the CLI's help and a message from each service
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "installed")}
    check = ("import gpu_quant, gpu_quant._proto as p; from gpu_quant._proto import backtest_pb2, factor_pb2, "
             "portfolio_pb2, execution_pb2, ml_pb2, realtime_pb2, market_data_pb2, jobs_pb2_grpc; "
             "assert p.__file__.startswith(%r), p.__file__; "
             "print(factor_pb2.FactorAnalysisRequest(symbols=['A']).symbols[0])" % str(tmp_path / "installed"))
    ran = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout.strip() == "A", ran.stderr
    helped = subprocess.run([sys.executable, "-m", "gpu_quant.cli", "--help"], capture_output=True, text=True,
                            timeout=120, env=env, cwd=tmp_path)
    assert helped.returncode == 0 and "backtest" in helped.stdout, helped.stderr
