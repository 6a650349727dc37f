#!/usr/bin/env bash
# One prepared run for a lent GPU machine (the `device` tool; see docs/benchmarks.md for where the
# numbers go). The device image has numpy, numba, CuPy, torch and pytest but not redis-py,
# pydantic or LightGBM, so this covers the paths that need only those: the backtest sweep (its tests,
# then a timing on a GPU worker's backend, which sweeps with the host numba kernel until that kernel
# is compiled for CUDA) and a torch LSTM epoch with mixed precision. Usage on the device:
# `bash scripts/device_check.sh` (writes under $OUT when set). Budget: about 5 minutes.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
OUT="${OUT:-/tmp/device-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import cupy, torch, numba; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numba', numba.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q --noconftest -p no:cacheprovider tests/unit/test_backtest_sweep.py 2>&1 \
  | tail -20 | tee "$OUT/pytest.txt"
timeout 300 python3 scripts/device_bench.py 2>&1 | tee "$OUT/bench.txt"
