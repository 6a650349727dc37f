"""The CUDA kernels timed against the CPU kernels on the same inputs (run by scripts/device_check.sh).

Parts (each prints its lines as it goes; a Markdown section for docs/benchmarks.md at the end):

* ``indicators``: a 2,520 x 1,000 (time x symbols) OHLCV panel, five indicators (sma_20, ema_12,
  rsi_14, macd 12/26/9, bollinger 20/2). CPU: each kind's host kernel ``kernels.run_kind`` (numba,
  all cores; the path ``compute_features`` takes), and ``compute_features`` itself for the five
  names. GPU: ``indicator_kernels.run_kind_on_device`` per kind on a panel uploaded once (kernels
  only, synchronised), and again including the upload and the outputs' download. Equality: every
  output element identical to the CPU kernel's (tolerance 0: bit-identical, NaN where NaN).
* ``sweep``: bench/backtest.py's grid (sma_crossover, fast 2..54 x slow 20..310 step 10: 1,510 valid
  combinations) on 100 symbols x 2,520 bars of the same kind of GBM panels. CPU: ``sweep_panels`` on
  the CPU backend (the numba sweep kernel, all cores). GPU: ``sweep_panels`` on a GPU backend (the
  CUDA sweep kernels: host panels uploaded once, combinations in chunks, reductions read back).
  Equality: every combination's every metric identical (tolerance 0).
* ``memory`` (its own process, before numba makes a CUDA context): ``limit_gpu_memory`` with
  fraction 0.5, then a numba device array must come from CuPy's pool and one past the limit must
  raise an out-of-memory the OOM policy recognises.
* ``nvml``: what ``DeviceSampler`` reads on this machine.
* ``lstm``: one LSTM epoch with mixed precision (torch), as before.

``--smoke`` runs tiny sizes and is meant for numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
set here before numba is imported when absent): it proves the script works before a GPU is lent
(numbers meaningless). Usage: ``python3 scripts/device_bench.py [--smoke] [--parts a,b]
[--section FILE] [--append-docs]``. Needs only numpy, numba (and CuPy/torch for their parts).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import best_of  # noqa: E402 - the repository root is on the path only now

PANEL_FEATURES = (("sma", (20,), "sma_20"), ("ema", (12,), "ema_12"), ("rsi", (14,), "rsi_14"),
                  ("macd", (12, 26, 9), "macd"), ("bollinger", (20, 2.0), "bollinger"))
FAST_GRID = list(range(2, 55))  # bench/backtest.py's sweep grid
SLOW_GRID = list(range(20, 320, 10))
CAPITAL, COMMISSION = 1_000_000.0, 0.001
SEED_PANEL, SEED_SWEEP = 11, 20260302


class Sizes:
    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.panel = (40, 6) if smoke else (2520, 1000)  # (bars, symbols)
        self.sweep = (60, 3) if smoke else (2520, 100)
        self.fast = [2, 3] if smoke else FAST_GRID
        self.slow = [20, 30] if smoke else SLOW_GRID
        self.repeats = 1 if smoke else 3


def gbm_panels(bars: int, symbols: int, seed: int):
    """(time x symbols) OHLCV from geometric Brownian motion (as bench/backtest.py's generator)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    dt = 1.0 / 252
    mu, sigma = rng.uniform(0.02, 0.12, symbols), rng.uniform(0.15, 0.45, symbols)
    steps = (mu - 0.5 * sigma ** 2) * dt + sigma * math.sqrt(dt) * rng.standard_normal((bars, symbols))
    close = 50 * np.exp(np.cumsum(steps, axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.003, (bars, symbols)))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.005, (bars, symbols))))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.005, (bars, symbols))))
    volume = rng.integers(1_000, 100_000, (bars, symbols)).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}



def identical(a, b) -> tuple[bool, float]:
    """(bit-identical with NaN where NaN, max |a - b| over finite pairs)."""
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    same = a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    both = np.isfinite(a) & np.isfinite(b) if a.shape == b.shape else np.zeros(0, bool)
    return same, float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0


# ------------------------------------------------------------------ indicators
def indicators(sizes: Sizes) -> dict:
    import numpy as np
    from numba import cuda
    from utils.engine.cuda.indicator_kernels import run_kind_on_device
    from utils.engine.cuda.target import to_host
    from utils.engine.indicators.features import compute_features
    from utils.engine.indicators.kernels import run_kind
    from utils.engine.indicators.kinds import KINDS

    bars, symbols = sizes.panel
    host = {k: np.ascontiguousarray(v) for k, v in gbm_panels(bars, symbols, SEED_PANEL).items()}
    small = {k: np.ascontiguousarray(v[:40, :2]) for k, v in host.items()}
    for name, params, _ in PANEL_FEATURES:  # compile both targets outside the timings
        run_kind(KINDS[name], params, small)
    began = time.perf_counter()
    device_small = {k: cuda.to_device(v) for k, v in small.items()}
    for name, params, _ in PANEL_FEATURES:
        run_kind_on_device(KINDS[name], params, device_small)
    cuda.synchronize()
    gpu_compile = time.perf_counter() - began
    feature_names = [label for _, _, label in PANEL_FEATURES]
    compute_features(np, feature_names, small)

    def cpu_kernels():
        return [run_kind(KINDS[name], params, host) for name, params, _ in PANEL_FEATURES]
    cpu_s = best_of(sizes.repeats, cpu_kernels)
    cpu_features_s = best_of(sizes.repeats, lambda: compute_features(np, feature_names, host))
    on_device = {k: cuda.to_device(v) for k, v in host.items()}

    def gpu_kernels():
        outputs = [run_kind_on_device(KINDS[name], params, on_device) for name, params, _ in PANEL_FEATURES]
        cuda.synchronize()
        return outputs
    gpu_s = best_of(sizes.repeats, gpu_kernels)

    def gpu_round_trip():
        uploaded = {k: cuda.to_device(v) for k, v in host.items()}
        return [to_host(run_kind_on_device(KINDS[name], params, uploaded)) for name, params, _ in PANEL_FEATURES]
    gpu_trip_s = best_of(sizes.repeats, gpu_round_trip)
    mismatches, worst = [], 0.0
    for (name, params, label), cpu_out, gpu_out in zip(PANEL_FEATURES, cpu_kernels(), gpu_round_trip()):
        same, diff = identical(cpu_out.transpose(2, 0, 1), gpu_out)  # run_kind: (time, symbols, outputs)
        worst = max(worst, diff)
        if not same:
            mismatches.append(f"{label} (max |diff| {diff:.3g})")
    result = {"bars": bars, "symbols": symbols, "cpu_s": cpu_s, "cpu_features_s": cpu_features_s, "gpu_s": gpu_s,
              "gpu_trip_s": gpu_trip_s, "gpu_compile_s": gpu_compile, "identical": not mismatches,
              "mismatches": mismatches, "max_diff": worst}
    print(f"[indicators] {bars} x {symbols}, 5 kinds: CPU kernels {cpu_s * 1e3:.1f} ms (compute_features "
          f"{cpu_features_s * 1e3:.1f} ms), GPU kernels {gpu_s * 1e3:.2f} ms, GPU with transfers "
          f"{gpu_trip_s * 1e3:.1f} ms, GPU compile {gpu_compile:.1f} s; identical: {not mismatches} "
          f"{mismatches or ''}", flush=True)
    return result


# ------------------------------------------------------------------ sweep
def sweep(sizes: Sizes) -> dict:
    import numpy as np
    from utils.engine.backend import Backend, cpu_backend
    from utils.engine.backtest.config import validate_strategy_config
    from utils.engine.backtest.sweep import sweep_panels

    bars, symbols = sizes.sweep
    panels = gbm_panels(bars, symbols, SEED_SWEEP)
    config = {"strategy_type": "sma_crossover", "fill": "close", "entry": "level"}
    spec = validate_strategy_config({**config, "param_grid": {"fast": sizes.fast, "slow": sizes.slow}})
    warm = validate_strategy_config({**config, "param_grid": {"fast": [5, 10], "slow": [20, 30]}})
    warm_panels = {k: v[:40, :2].copy() for k, v in panels.items()}
    # The GPU backend as a GPU worker resolves it; the sweep takes host panels and uploads them itself.
    gpu = Backend(name="gpu", xp=np, device_id=0, simulated=sizes.smoke)
    runs = {}
    for label, backend in (("cpu", cpu_backend()), ("gpu", gpu)):
        began = time.perf_counter()
        sweep_panels(warm, warm_panels, 0, CAPITAL, COMMISSION, backend=backend)  # compile
        compile_s = time.perf_counter() - began
        began = time.perf_counter()
        result = sweep_panels(spec, panels, 0, CAPITAL, COMMISSION, limit=10**9, backend=backend)
        runs[label] = (time.perf_counter() - began, compile_s, result)
        print(f"[sweep] {label}: {runs[label][0]:.2f} s ({result.combinations} combinations, "
              f"{result.cells / runs[label][0]:.3g} cells/s; warm-up/compile {compile_s:.1f} s)", flush=True)
    cpu_rows = {tuple(sorted(r["params"].items())): r["metrics"] for r in runs["cpu"][2].table}
    gpu_rows = {tuple(sorted(r["params"].items())): r["metrics"] for r in runs["gpu"][2].table}
    mismatches, worst = [], 0.0
    for key, metrics in cpu_rows.items():
        other = gpu_rows.get(key)
        if other is None or set(other) != set(metrics):
            mismatches.append(f"{dict(key)}: missing")
            continue
        for name, value in metrics.items():
            same, diff = identical(value, other[name])
            worst = max(worst, diff)
            if not same:
                mismatches.append(f"{dict(key)} {name}: {value!r} vs {other[name]!r}")
    combos = runs["cpu"][2].combinations
    result = {"bars": bars, "symbols": symbols, "combinations": combos, "cells": runs["cpu"][2].cells,
              "cpu_s": runs["cpu"][0], "gpu_s": runs["gpu"][0], "gpu_compile_s": runs["gpu"][1],
              "identical": not mismatches and len(gpu_rows) == len(cpu_rows), "mismatches": mismatches[:5],
              "mismatch_count": len(mismatches), "max_diff": worst,
              "best_cpu": runs["cpu"][2].best["params"], "best_gpu": runs["gpu"][2].best["params"]}
    print(f"[sweep] identical: {result['identical']} ({len(mismatches)} differing metrics, max |diff| {worst:.3g}); "
          f"best CPU {result['best_cpu']} GPU {result['best_gpu']}", flush=True)
    return result


# ------------------------------------------------------------------ memory, nvml, lstm
def memory_check() -> dict:
    """GPU_MEMORY_FRACTION over CuPy and numba.cuda (run first in its own process)."""
    import cupy
    from numba import cuda
    from utils.gpu.memory import limit_gpu_memory
    from utils.gpu.oom import is_cuda_oom
    limit = limit_gpu_memory(0, 0.5)
    pool = cupy.get_default_memory_pool()
    before = pool.used_bytes()
    array = cuda.device_array(1_000_000)  # 8 MB through the plugin
    inside = pool.used_bytes() - before
    try:
        cuda.device_array(limit.limit_bytes // 8 + 1)  # past the limit
        refused, recognised = False, False
    except Exception as exc:
        refused, recognised = True, is_cuda_oom(exc)
    del array
    result = {"limit_bytes": limit.limit_bytes, "allocator": limit.numba_allocator, "numba_bytes_in_pool": inside,
              "over_limit_refused": refused, "oom_recognised": recognised}
    print(f"[memory] {result}", flush=True)
    return result


def nvml() -> dict:
    from utils.gpu.devices import DeviceSampler
    sampler = DeviceSampler()
    report = sampler.sample()
    sampler.close()
    result = {"source": report.source, "reason": report.reason,
              "samples": [(s.device, s.utilization, s.memory_used, s.memory_total) for s in report.samples]}
    print(f"[nvml] {result}", flush=True)
    return result


def lstm_epoch() -> dict:
    import torch
    from utils.engine.models.sequence.networks import RecurrentNet
    device = torch.device("cuda")
    windows, window, features = 100_000, 20, 20
    x = torch.randn(windows, window, features, device=device)
    y = (torch.rand(windows, device=device) > 0.5).long()
    net = RecurrentNet("lstm", features, 2, 64, 1, 0.1).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch() -> None:
        for start in range(0, windows, 512):
            with torch.autocast("cuda", dtype=torch.float16):
                loss = loss_fn(net(x[start:start + 512]), y[start:start + 512])
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        torch.cuda.synchronize()

    epoch()  # warm-up (cuDNN plans)
    seconds = best_of(1, epoch)
    print(f"[lstm] one epoch {seconds:.2f} s", flush=True)
    return {"seconds": seconds}


# ------------------------------------------------------------------ report
def machine() -> str:
    import numba
    import numpy as np
    parts = [f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", f"numpy {np.__version__}",
             f"numba {numba.__version__}"]
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        parts.insert(0, "numba CUDA simulator (smoke run: numbers meaningless)")
    else:
        try:
            from numba import cuda
            device = cuda.get_current_device()
            parts.insert(0, f"{device.name.decode() if isinstance(device.name, bytes) else device.name}")
        except Exception as exc:
            parts.insert(0, f"no CUDA device ({exc})")
    return "; ".join(parts)


def ratio(cpu: float, gpu: float) -> str:
    return f"{cpu / gpu:.1f}×" if gpu > 0 else "—"


def section(results: dict, smoke: bool) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"### CUDA kernels vs CPU kernels, {stamp}{' (smoke run)' if smoke else ''}", "",
             f"Machine: {machine()}. Command: `bash scripts/device_check.sh` (scripts/device_bench.py). "
             "Equality tolerance: 0 (every element bit-identical to the CPU kernel's, NaN where NaN).", "",
             "| measure | CPU | GPU | CPU / GPU | goal | identical |", "|---|---:|---:|---:|---:|---|"]
    ind = results.get("indicators")
    if isinstance(ind, dict):
        shape = f"{ind['bars']:,} × {ind['symbols']:,}"
        lines.append(f"| indicator panel {shape}, 5 kinds, kernels only (GPU: inputs resident) | "
                     f"{ind['cpu_s'] * 1e3:.1f} ms | {ind['gpu_s'] * 1e3:.2f} ms | {ratio(ind['cpu_s'], ind['gpu_s'])} | "
                     f"≥ 10× | {'yes' if ind['identical'] else 'NO: ' + ', '.join(ind['mismatches'])} |")
        lines.append(f"| indicator panel {shape}: CPU `compute_features` vs GPU with upload + download | "
                     f"{ind['cpu_features_s'] * 1e3:.1f} ms | {ind['gpu_trip_s'] * 1e3:.1f} ms | "
                     f"{ratio(ind['cpu_features_s'], ind['gpu_trip_s'])} | — | |")
    sw = results.get("sweep")
    if isinstance(sw, dict):
        lines.append(f"| SMA sweep {sw['combinations']:,} combinations × {sw['symbols']} symbols × {sw['bars']:,} bars "
                     f"(`sweep_panels`) | {sw['cpu_s']:.2f} s | {sw['gpu_s']:.2f} s | {ratio(sw['cpu_s'], sw['gpu_s'])} | "
                     f"≥ 20× | {'yes' if sw['identical'] else 'NO: %d differ, e.g. %s' % (sw['mismatch_count'], sw['mismatches'][:2])} |")
    if isinstance(results.get("lstm"), dict):
        lines.append(f"| LSTM one epoch, 100k windows × 20 × 20, hidden 64, batch 512, fp16 autocast | — | "
                     f"{results['lstm']['seconds']:.2f} s | — | — | |")
    notes = []
    if isinstance(ind, dict):
        notes.append(f"GPU compile of the five indicator kernels {ind['gpu_compile_s']:.1f} s")
    if isinstance(sw, dict):
        notes.append(f"sweep warm-up (compile) on the GPU {sw['gpu_compile_s']:.1f} s")
    for name in ("memory", "nvml"):
        if name in results:
            notes.append(f"{name}: {results[name]}")
    for name, value in results.items():
        if isinstance(value, str):
            notes.append(f"{name}: {value}")
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines) + "\n"


PARTS = {"indicators": indicators, "sweep": sweep}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes under numba's CUDA simulator")
    parser.add_argument("--parts", default="indicators,sweep,nvml,lstm")
    parser.add_argument("--section", type=Path, help="write the Markdown section here")
    parser.add_argument("--append-docs", action="store_true", help="append the section to docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # before numba is imported
    sizes = Sizes(args.smoke)
    results: dict = {}
    parts = [part for part in args.parts.split(",") if part]
    if "memory" in parts:  # alone in its process (scripts/device_check.sh runs it first)
        results["memory"] = memory_check()
        return 0
    for part in parts:
        action = {"nvml": nvml, "lstm": lstm_epoch}.get(part) or (lambda p=part: PARTS[p](sizes))
        try:
            results[part] = action()
        except Exception as exc:  # one part failing must not lose the others' numbers
            import traceback
            traceback.print_exc()
            results[part] = f"failed: {type(exc).__name__}: {exc}"
    text = section(results, args.smoke)
    print("\n" + text)
    if args.section:
        args.section.write_text(text)
    if args.append_docs:
        with open(ROOT / "docs" / "benchmarks.md", "a") as docs:
            docs.write("\n" + text)
    failed = [p for p, r in results.items() if isinstance(r, str) or (isinstance(r, dict) and r.get("identical") is False)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
