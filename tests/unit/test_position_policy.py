"""PPO position sizing (issue 15): the environment, safe storage (torch weights_only + ONNX), and
the backtest's model-driven size: a constant-output policy equals fixed-fraction sizing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from utils.data.sample import sample_bars
from utils.engine.backtest.config import validate_strategy_config, warmup_bars
from utils.engine.backtest.position_sizing import POLICY_POSITIONS, policy_fractions
from utils.engine.backtest.runner import align_bars, simulate_spec
from utils.engine.backtest.sweep import sweep_panels
from utils.engine.position.env import EnvConfig, PositionEnv, Series
from utils.engine.position.observations import (DEFAULT_FEATURES, column_names, feature_lookback,
                                                observation_features, observation_names)
from utils.engine.position.policy import (InvalidPolicyFile, PositionPolicy, TrainedPositionPolicy,
                                          load_position_network, save_position_policy, symbol_rows)
from utils.engine.rl.network import PolicyNetwork

SYMBOLS = ("000001.SZ", "600000.SH")
FEATURES = list(DEFAULT_FEATURES)


def constant_policy(directory, output: float, long_only: bool = False, history_bars: int = 2):
    """A stored policy whose network outputs ``output`` whatever it observes, built with the
    storage helpers (no training)."""
    names = observation_names(column_names(FEATURES), history_bars)
    network = PolicyNetwork(len(names), (8,), 1)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.layers[-1].bias.fill_(output)
    size = len(names) - 1
    policy = TrainedPositionPolicy(network, EnvConfig(long_only=long_only), FEATURES, names, history_bars,
                                   np.zeros(size), np.ones(size))
    save_position_policy(policy, directory)
    return PositionPolicy(directory)


@pytest.fixture(scope="module")
def bars():
    return {symbol: sample_bars(symbol).columns() for symbol in SYMBOLS}


def run(config, bars, policy=None):
    spec = validate_strategy_config(config)
    if policy is not None:
        spec = spec.__class__(**{**spec.__dict__, "position_lookback": policy.lookback})
    start, end = bars[SYMBOLS[0]]["time"][400], bars[SYMBOLS[0]]["time"][-1]
    aligned = align_bars(spec, bars, int(start), int(end))
    if policy is not None:
        aligned.panels[POLICY_POSITIONS] = policy.rolled_positions({**aligned.panels, "time": aligned.calendar},
                                                                   aligned.start_index)
    return spec, aligned, simulate_spec(spec, aligned, 1_000_000.0, 0.001)


def test_environment_follows_gymnasium_and_rewards_position_times_next_return():
    features = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    returns = np.random.default_rng(1).normal(0, 0.01, size=50)
    env = PositionEnv([Series(features, returns)], EnvConfig(episode_bars=10, commission=0.002))
    check_env(env, skip_render_check=True)
    observation, info = env.reset(seed=3)
    row = info["start"]
    assert observation[-1] == 0.0 and np.array_equal(observation[:-1], features[row])
    observation, reward, _, _, _ = env.step(np.array([0.5], dtype=np.float32))
    assert observation[-1] == 0.5
    assert reward == pytest.approx(100 * (0.5 * returns[row] - 0.002 * 0.5))
    _, reward, _, _, _ = env.step(np.array([-2.0], dtype=np.float32))  # clipped to -1
    assert reward == pytest.approx(100 * (-returns[row + 1] - 0.002 * 1.5))
    long_only = PositionEnv([Series(features, returns)], EnvConfig(long_only=True))
    assert long_only.action_space.low[0] == 0.0


def test_features_read_only_past_bars(bars):
    close = np.asarray(bars[SYMBOLS[0]]["close"])
    names, full = observation_features(bars[SYMBOLS[0]], FEATURES, 2)
    cut = {field: np.asarray(values)[:1000] for field, values in bars[SYMBOLS[0]].items()}
    _, prefix = observation_features(cut, FEATURES, 2)
    np.testing.assert_array_equal(full[:1000], prefix)  # row t is the same without the bars after t
    assert names[-1] == "position" and names[:2] == ["return_1", "return_5"] and "rsi_14_lag1" in names
    assert full[500, 0] == pytest.approx(close[500] / close[499] - 1)
    assert np.isfinite(full[feature_lookback(FEATURES) + 1]).all()


def test_storage_is_safe_and_onnx_matches_torch(tmp_path, bars):
    names, runs = symbol_rows(bars[SYMBOLS[0]], FEATURES, 1)
    network = PolicyNetwork(len(names), (16, 16), 1)
    size = len(names) - 1
    policy = TrainedPositionPolicy(network, EnvConfig(), FEATURES, names, 1, runs[0][0].mean(axis=0),
                                   runs[0][0].std(axis=0))
    save_position_policy(policy, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]
    observations = np.c_[runs[0][0][:100], np.linspace(-1, 1, 100)].astype(np.float32)
    onnx = PositionPolicy(tmp_path).act(observations)
    with torch.no_grad():
        torch_positions = load_position_network(tmp_path)(torch.as_tensor(observations)).numpy()
    np.testing.assert_allclose(onnx, torch_positions, atol=1e-6)
    assert np.all(np.abs(onnx) <= 1) and size == observations.shape[1] - 1
    (tmp_path / "policy.zip").write_bytes(b"PK")
    with pytest.raises(InvalidPolicyFile, match="never loaded"):
        PositionPolicy(tmp_path / "policy.zip")
    torch.save({"layers.0.weight": torch.zeros(3)}, tmp_path / "policy.pt")
    with pytest.raises(InvalidPolicyFile, match="refused"):
        load_position_network(tmp_path)


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_constant_policy_equals_fixed_fraction_sizing(tmp_path, bars, fill):
    """The issue's parity requirement: output 0.5 everywhere == percent_equity 0.5."""
    policy = constant_policy(tmp_path, 0.5)
    base = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "fill": fill}
    _, aligned_fixed, fixed = run({**base, "sizing": "percent_equity", "size": 0.5}, bars)
    spec, aligned, model = run({**base, "position_model": "m-constant"}, bars, policy)
    assert warmup_bars(spec) >= policy.lookback
    assert np.all(aligned.panels[POLICY_POSITIONS][aligned.start_index:] == pytest.approx(0.5))
    # the policy's warm-up may keep more bars before the start; the reported part must agree
    np.testing.assert_allclose(model.equity, fixed.equity, rtol=1e-9, atol=0)
    assert len(model.trade_table) == len(fixed.trade_table) > 4
    shift = aligned.start_index - aligned_fixed.start_index
    model_trades, fixed_trades = model.trade_table.copy(), fixed.trade_table.copy()
    model_trades[:, :2] -= shift  # entry/exit bar indices count from each calendar's first row
    np.testing.assert_allclose(model_trades, fixed_trades, rtol=1e-9, atol=1e-9)


def test_threshold_and_direction_veto_entries(tmp_path, bars):
    base = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "direction": "long_short"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    policy = constant_policy(tmp_path / "a", 0.5)
    against = constant_policy(tmp_path / "b", -0.5)
    _, _, vetoed = run({**base, "position_model": "m-a", "position_threshold": 0.6}, bars, policy)
    assert len(vetoed.trade_table) == 0 and np.all(vetoed.equity == 1_000_000.0)
    _, _, longs = run({**base, "position_model": "m-a"}, bars, policy)
    _, _, shorts = run({**base, "position_model": "m-b"}, bars, against)
    assert np.all(longs.trade_table[:, 4] > 0) and np.all(shorts.trade_table[:, 4] < 0)  # T_SIZE
    assert len(longs.trade_table) and len(shorts.trade_table)
    np.testing.assert_array_equal(policy_fractions(np.array([[0.3, -0.3, 0.05]]), np.array([[1, 1, -1]]), 0.1),
                                  [[0.3, 0.0, 0.0]])


def test_sweep_rows_use_the_policy_size(tmp_path, bars):
    policy = constant_policy(tmp_path, 0.5)
    grid = {"strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10], "slow": [30]}}
    spec, aligned, _ = run({**grid, "position_model": "m-c", "fast": 5}, bars, policy)
    fixed_spec, fixed_aligned, _ = run({**grid, "sizing": "percent_equity", "size": 0.5, "fast": 5}, bars)
    with_model = sweep_panels(spec, aligned.panels, aligned.start_index, 1e6, 0.001)
    fixed = sweep_panels(fixed_spec, fixed_aligned.panels, fixed_aligned.start_index, 1e6, 0.001)
    for row, other in zip(with_model.table, fixed.table):
        assert row["params"] == other["params"]
        assert row["metrics"]["total_return"] == pytest.approx(other["metrics"]["total_return"], rel=1e-9)


@pytest.mark.parametrize("config, message", [
    ({"position_model": "m-x", "position_threshold": 1.5}, "position_threshold"),
    ({"position_threshold": 0.1}, "position_model only"),
    ({"position_model": "bad id!"}, "position_model"),
    ({"strategy_type": "momentum", "position_model": "m-x"}, "sleeve strategies"),
])
def test_config_validation(config, message):
    with pytest.raises(ValueError, match=message):
        validate_strategy_config({"strategy_type": "sma_crossover", **config})
