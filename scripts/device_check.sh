#!/usr/bin/env bash
# One prepared run for a lent GPU machine (the `device` tool): runs the CUDA kernels for real and
# times them against the CPU kernels on the same inputs (scripts/device_bench.py), then appends a
# dated section to docs/benchmarks.md (and leaves it, with the logs, under $OUT to bring back).
#
# The device image has numpy, numba, CuPy, torch and pytest but not redis-py, pydantic or LightGBM,
# and no network, so nothing is installed: the script uses the system python3 and the engine
# modules that need only those (utils/engine/cuda, indicators, backtest, utils/gpu). nvidia-ml-py
# (pure Python) is used when importable; put its pynvml.py under build/device-extra/ and carry
# that path to test the NVML sampler there.
#
# Usage on the device, fresh checkout, one command: `bash scripts/device_check.sh` (budget: under
# 10 minutes on a 16-core H100/H200 box; parts time out on their own). Smoke run anywhere (numba's
# CUDA simulator, tiny sizes, seconds): `bash scripts/device_check.sh --smoke`.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d build/device-extra ] && export PYTHONPATH="$PYTHONPATH:$PWD/build/device-extra"
OUT="${OUT:-/tmp/device-out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
status=0

if [ "${1:-}" = "--smoke" ]; then
  NUMBA_ENABLE_CUDASIM=1 timeout 120 "$PY" scripts/device_bench.py --smoke --parts indicators,sweep,nvml \
    --section "$OUT/benchmarks_section.md" 2>&1 | tee "$OUT/bench.txt"
  exit "${PIPESTATUS[0]}"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import cupy, torch, numba, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, 'numba', numba.__version__, 'numpy', numpy.__version__)" \
  2>&1 | tee -a "$OUT/gpu.txt"

# GPU_MEMORY_FRACTION over CuPy and numba.cuda: its own process (the EMM plugin must precede numba's context)
timeout 90 "$PY" scripts/device_bench.py --parts memory 2>&1 | tee "$OUT/memory.txt" || status=1

# the host sweep kernel's own tests (no conftest: the device has no redis-py)
timeout 150 "$PY" -m pytest -q --noconftest -p no:cacheprovider tests/unit/test_backtest_sweep.py 2>&1 \
  | tail -20 | tee "$OUT/pytest.txt"

# kernels vs CPU kernels (indicators 2,520 x 1,000 x 5 kinds; SMA sweep 1,510 x 100 x 2,520), NVML, LSTM
timeout 330 "$PY" scripts/device_bench.py --section "$OUT/benchmarks_section.md" --append-docs 2>&1 \
  | tee "$OUT/bench.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
cp docs/benchmarks.md "$OUT/benchmarks.md" 2>/dev/null
exit "$status"
