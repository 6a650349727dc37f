"""The RL execution policy: environment contract, deterministic training, safe storage round
trip (ONNX and state_dict act as the trained SB3 policy), no unpickling, planner, evaluation."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from utils.data.sample import sample_bars
from utils.engine.execution.policy import network, storage
from utils.engine.execution.policy.env import (ACTION_MULTIPLES, TWAP_ACTION, EnvConfig, ExecutionEnv,
                                               observation_names, observation_size, rollout)
from utils.engine.execution.policy.inference import PlanState, PolicyPlanner
from utils.engine.execution.policy.predictor import DEFAULTS, ExecutionPolicyPredictor
from utils.engine.execution.policy.training import evaluate, order_outcome, train_policy
from utils.engine.execution.policy.windows import (OrderWindow, order_windows_from_bars, split_held_out,
                                                   trailing_sigmas)
from utils.engine.execution.simulator import ImpactModel, simulate_order
from utils.engine.models import ModelConfig, ModelStore
from utils.engine.models.errors import InvalidInputData, InvalidModelParams

TIMESTEPS = 1024


@pytest.fixture(scope="module")
def windows():
    bars = sample_bars("000001.SZ", 10.0)
    return order_windows_from_bars(bars.high, bars.low, bars.close, bars.volume, window_bars=8)


@pytest.fixture(scope="module")
def trained(windows):
    return train_policy(windows[:200], timesteps=TIMESTEPS, seed=3)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    directory = tmp_path_factory.mktemp("policy")
    storage.save_policy(trained, directory)
    return directory


def observations(n=500, seed=0):
    size = observation_size(EnvConfig().history_bars)
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, size)).astype(np.float32)


def test_env_passes_the_gymnasium_checker(windows):
    check_env(ExecutionEnv(windows[:20]), skip_render_check=True)


def test_windows_never_look_ahead():
    prices = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 60))) * 10
    sigmas = trailing_sigmas(prices, 5)
    returns = np.diff(np.log(prices))
    assert np.isnan(sigmas[:6]).all()
    # bar 10's sigma uses the 5 returns ending at bar 9 (returns[4:9]), not bar 10's own
    assert sigmas[10] == pytest.approx(returns[4:9].std(ddof=1))
    ones = np.ones(60)
    made = order_windows_from_bars(prices, prices, prices, ones * 100, window_bars=6, lookback=8, sigma_bars=5,
                                   side="sell", participation=0.2)
    assert made and all(w.side == -1 and w.n_bars == 6 and w.quantity == pytest.approx(0.2 * 100 * 6) for w in made)
    # the first order starts at bar 14 = lookback + sigma_bars + 1 (its lookback bars need sigmas too)
    np.testing.assert_allclose(made[0].prices, prices[6:20])
    training, held_out = split_held_out(made, 0.25)
    assert training + held_out == made and len(held_out) == round(len(made) * 0.25)


def test_twap_action_reproduces_the_simulators_twap_schedule(windows):
    window = windows[5]
    env = rollout(ExecutionEnv([window]), 0, lambda observation: TWAP_ACTION)
    result = simulate_order(window.side, window.quantity, np.full(window.n_bars, window.quantity / window.n_bars),
                            window.order_prices, window.order_volumes, window.order_sigmas, ImpactModel())
    np.testing.assert_allclose(env.filled, result.filled, rtol=1e-12)
    np.testing.assert_allclose(env.fill_prices, result.fill_prices, rtol=1e-12)


def test_rewards_sum_to_the_orders_price_advantage_and_the_last_bar_sweeps(windows):
    window = windows[7]
    env = ExecutionEnv([window])
    env.reset(options={"window": 0})
    total, terminated = 0.0, False
    while not terminated:  # 0x every bar: everything is left to the last bar's sweep
        _, reward, terminated, _, _ = env.step(0)
        total += reward
    assert env.filled[:-1].sum() == 0 and env.filled[-1] == pytest.approx(window.quantity) and env.remaining == 0
    outcome = order_outcome(window, env.filled, env.fill_prices)
    assert total == pytest.approx(outcome["pa_bps"] * EnvConfig().reward_scale)
    assert outcome["ffr"] == pytest.approx(1.0)


def test_unfilled_quantity_is_penalised_when_the_participation_cap_binds(windows):
    window = windows[3]
    config = EnvConfig(impact=ImpactModel(participation_cap=0.01), unfilled_penalty_bps=500.0)
    env = ExecutionEnv([window], config)  # 10% participation asked, 1% allowed
    env.reset(options={"window": 0})
    rewards = [env.step(TWAP_ACTION)[1] for _ in range(window.n_bars)]
    unfilled = env.remaining / window.quantity
    assert unfilled > 0.8
    fills_only = order_outcome(window, env.filled, env.fill_prices)["pa_bps"] * (1 - unfilled)
    assert sum(rewards) == pytest.approx((fills_only - 500.0 * unfilled) * config.reward_scale)


def test_observation_names_match_the_space():
    names = observation_names(5)
    assert len(names) == observation_size(5) == 14 and names[:3] == ["elapsed", "remaining", "twap_deviation"]


def test_training_is_deterministic_with_a_seed(windows, trained):
    again = train_policy(windows[:200], timesteps=TIMESTEPS, seed=3)
    other = train_policy(windows[:200], timesteps=TIMESTEPS, seed=4)
    for key, value in trained.network.state_dict().items():
        assert torch.equal(value, again.network.state_dict()[key]), key
    assert any(not torch.equal(value, other.network.state_dict()[key])
               for key, value in trained.network.state_dict().items())


def test_progress_is_reported_up_to_one(windows):
    seen = []
    train_policy(windows[:50], timesteps=512, seed=0, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 10


def test_storage_round_trip_acts_as_the_sb3_policy(trained, saved):
    assert sorted(os.listdir(saved)) == ["policy.json", "policy.onnx", "policy.pt"]
    batch = observations()
    expected = trained.model.predict(batch, deterministic=True)[0]
    loaded = storage.load_network(saved)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.act(torch.from_numpy(batch)).numpy(), expected)
    planner = PolicyPlanner(saved, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal([planner.act(row) for row in batch], expected)
    assert [trained.act(row) for row in batch[:50]] == expected[:50].tolist()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_storage_never_unpickles(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("policy.json", "policy.onnx"):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    with open(tmp_path / "policy.pt", "wb") as crafted:
        pickle.dump({"layers.0.weight": Exploit()}, crafted)
    with pytest.raises(storage.InvalidPolicyFile, match="refused"):
        storage.load_network(tmp_path)
    torch.save({"layers.0.weight": Exploit()}, tmp_path / "policy.pt")  # a torch archive with an object inside
    with pytest.raises(storage.InvalidPolicyFile, match="refused"):
        storage.load_network(tmp_path)
    assert not marker.exists()


def test_storage_refuses_an_sb3_zip(trained, tmp_path):
    archive = tmp_path / "ppo.zip"
    trained.model.save(archive)  # what SB3 writes: its data entry is cloudpickle
    for loader in (storage.load_network, PolicyPlanner):
        with pytest.raises(storage.InvalidPolicyFile, match="never loaded"):
            loader(archive)


def test_storage_refuses_an_unknown_architecture(saved, tmp_path):
    for name in ("policy.pt", "policy.onnx"):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    text = (saved / "policy.json").read_text()
    (tmp_path / "policy.json").write_text(text.replace('"activation": "tanh"', '"activation": "os.system"'))
    with pytest.raises(storage.InvalidPolicyFile):
        storage.load_network(tmp_path)
    assert set(storage.ACTIVATION_NAMES) == set(network.ACTIVATIONS)


def test_planner_schedule_sums_to_the_quantity(saved):
    planner = PolicyPlanner(saved, providers=["CPUExecutionProvider"])
    bars = sample_bars("600000.SH", 9.0)
    prices = (bars.high[:30] + bars.low[:30] + bars.close[:30]) / 3
    schedule = planner.plan(PlanState(side=1, quantity=5_000.0, n_bars=12, prices=prices, volumes=bars.volume[:30],
                                      sigma=0.018))
    assert schedule.shape == (12,) and (schedule >= 0).all() and schedule.sum() == pytest.approx(5_000.0)
    allowed_first = {m * 5_000.0 / 12 for m in ACTION_MULTIPLES}
    assert min(abs(schedule[0] - a) for a in allowed_first) < 1e-9
    # part-way through: what is left, over the bars left; sigma from the prices when not given
    later = planner.plan(PlanState(side=-1, quantity=5_000.0, n_bars=4, prices=prices, volumes=bars.volume[:30],
                                   elapsed_fraction=0.5, remaining=1_000.0))
    assert later.shape == (4,) and later.sum() == pytest.approx(1_000.0)
    with pytest.raises(ValueError):
        planner.plan(PlanState(side=1, quantity=10.0, n_bars=3, prices=prices, volumes=bars.volume[:30],
                               remaining=20.0))


def test_evaluate_compares_with_twap_on_held_out_orders(trained, windows):
    scores = evaluate(trained, windows[200:240])
    assert scores["orders"] == 40
    for strategy in ("policy", "twap", "all_at_once"):
        assert set(scores[strategy]) == {"pa_bps", "ffr", "pos", "shortfall_bps"}
        assert 0.9 < scores[strategy]["ffr"] <= 1.0  # a last-bar sweep may exceed that bar's volume
    assert scores["twap"]["ffr"] == pytest.approx(1.0)
    # TWAP fills every bar at its price plus impact: always a little worse than the TWAP price
    assert scores["twap"]["pa_bps"] < 0 and scores["twap"]["pos"] == 0.0
    assert scores["policy_vs_twap_pa_bps"] == pytest.approx(scores["policy"]["pa_bps"] - scores["twap"]["pa_bps"])
    assert 0.0 <= scores["policy_twap_action_share"] <= 1.0


def test_registry_entry_validates_params_and_refuses_predict(trained, tmp_path):
    config = ModelConfig("ppo_execution", ("placeholder",), "target", params={"timesteps": 4096.0, "side": "sell"})
    predictor = ExecutionPolicyPredictor(config)
    assert predictor.params == {**DEFAULTS, "timesteps": 4096, "side": "sell"}
    for bad in ({"side": "short"}, {"timesteps": 10}, {"no_such_param": 1}):
        with pytest.raises(InvalidModelParams):
            ExecutionPolicyPredictor(ModelConfig("ppo_execution", ("placeholder",), "target", params=bad))
    predictor.policy = trained
    store = ModelStore(tmp_path)
    store.save("m-policy", predictor)
    loaded = store.load("m-policy")
    metadata = store.read_metadata("m-policy")
    assert metadata["model_type"] == "ppo_execution" and metadata["feature_columns"] == observation_names(5)
    assert metadata["versions"]["torch"] == torch.__version__
    with pytest.raises(InvalidInputData, match="ExecutionService.PlanExecution"):
        loaded.predict(np.zeros((1, 14)))
