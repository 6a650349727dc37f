# %% [markdown]
# # gpu_quant SDK quickstart
# Notebook-style (`# %%` cells: VS Code, Jupytext, PyCharm) or a plain script:
#     make run                                  # the server, in another terminal
#     pip install .                             # or use .venv/bin/python from the checkout
#     python examples/sdk_quickstart.py         # GQ_TARGET / GQ_API_KEY pick another server
# tests/integration/test_sdk.py runs this file against the test server.

# %%
import os

import numpy as np
import pandas as pd

from gpu_quant import Client

client = Client(os.environ.get("GQ_TARGET", "localhost:50051"), api_key=os.environ.get("GQ_API_KEY"))
print(client.health(), client.bars.ls()[["symbol", "rows", "first_time", "last_time"]], sep="\n")

# %% [markdown]
# ## A backtest: progress bar while it runs, then DataFrames

# %%
run = client.backtest(["000001.SZ", "600000.SH"], "2024-01-01", "2024-12-31",
                      strategy={"strategy_type": "trend_following", "lookback_period": 20,
                                "moving_average_window": 50},
                      capital=1_000_000, commission=0.0003)
run.wait()                         # Ctrl-C here asks whether to cancel the job on the server
result = run.result()
print({name: round(result.metrics[name], 4) for name in ("total_return", "sharpe_ratio", "max_drawdown")})
print(result.equity.tail())        # index time; equity, drawdown
print(result.trades.head())        # every trade, all pages
run.report("sdk_quickstart_report.html")

# %% [markdown]
# ## A parameter sweep: one job, a ranked table

# %%
ranked = client.sweep(["000001.SZ"], "2023-01-01", "2024-12-31", {"strategy_type": "sma_crossover"},
                      param_grid={"fast": [5, 10, 20], "slow": [50, 100]}, rank_by="sharpe_ratio")
print(ranked[["rank", "fast", "slow", "sharpe_ratio", "total_return"]])

# %% [markdown]
# ## Your own bars, indicators, live ticks

# %%
days = pd.bdate_range("2022-01-03", periods=300)
close = 50 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, len(days))))
bars = pd.DataFrame({"date": days, "open": close, "high": close * 1.01, "low": close * 0.99, "close": close,
                     "volume": 1e6})
print(client.bars.import_frame(bars, "DEMO.SYM", replace=True))
print(client.features("DEMO.SYM", ["sma_20", "rsi", "macd"], lookback=5))
ticks = [{"symbol": "DEMO.SYM", "price": close[-1] * (1 + 0.001 * i), "volume": 100.0} for i in range(5)]
for update in client.stream(ticks, features=["sma_5", "rsi"]):
    print(update["sequence"], round(update["price"], 3), update["sma_5"], update["rsi"])

# %% [markdown]
# ## Train a model on a DataFrame, predict on another

# %%
rng = np.random.default_rng(2)
frame = pd.DataFrame({"ret_5": rng.normal(0, 0.02, 400), "rsi": rng.uniform(10, 90, 400)})
frame["up"] = (frame["rsi"] < 50).astype(int)
training = client.train("logistic", frame, features=["ret_5", "rsi"], target="up")
training.wait()
print(client.predict(training.model_id, pd.DataFrame({"ret_5": [0.01, -0.01], "rsi": [30.0, 70.0]})))

# %%
client.close()
