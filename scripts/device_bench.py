"""GPU timings for a lent device (run by scripts/device_check.sh): the backtest sweep on CuPy vs
numba on the same machine, and one LSTM epoch with mixed precision. Prints a Markdown table."""
from __future__ import annotations

import time

import numpy as np


def sweep_timings() -> list[tuple[str, float, float]]:
    from utils.engine.backend import cpu_backend, resolve_backend
    from utils.engine.backtest.config import validate_strategy_config
    from utils.engine.backtest.sweep import sweep_panels
    rng = np.random.default_rng(7)
    bars, symbols = 2520, 100
    close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (bars, symbols)), axis=0))
    panels = {"open": close * np.exp(rng.normal(0, 0.004, close.shape)), "high": close * 1.01,
              "low": close * 0.99, "close": close, "volume": np.full(close.shape, 1e6)}
    spec = validate_strategy_config({"strategy_type": "sma_crossover", "fill": "close", "entry": "level",
                                     "param_grid": {"fast": list(range(2, 55)), "slow": list(range(20, 320, 10))}})
    small = validate_strategy_config({"strategy_type": "sma_crossover", "fill": "close", "entry": "level",
                                      "param_grid": {"fast": [5, 10], "slow": [20, 50]}})
    rows = []
    for label, backend in (("numba (CPU, all cores)", cpu_backend()), ("GPU worker (host numba)", resolve_backend("gpu"))):
        sweep_panels(small, panels, 0, 1e6, 0.001, backend=backend)  # compile / warm up
        started = time.perf_counter()
        result = sweep_panels(spec, panels, 0, 1e6, 0.001, backend=backend)
        seconds = time.perf_counter() - started
        rows.append((label, seconds, result.cells / seconds))
        print(f"{label}: {seconds:.2f} s, {result.cells / seconds:.3g} cells/s, best {result.best['params']}", flush=True)
    return rows


def lstm_epoch() -> float:
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
    started = time.perf_counter()
    epoch()
    return time.perf_counter() - started


if __name__ == "__main__":
    sweep = sweep_timings()
    seconds = lstm_epoch()
    print("\n| measure | seconds | cells/s |\n|---|---:|---:|")
    for label, value, rate in sweep:
        print(f"| sweep 1,510 combos × 100 symbols × 2,520 bars, {label} | {value:.2f} | {rate:.3g} |")
    print(f"| LSTM one epoch, 100k windows × 20 × 20, hidden 64, batch 512, fp16 autocast | {seconds:.2f} | — |")
