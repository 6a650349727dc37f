"""A PPO position-sizing policy (issue 15): a Stable-Baselines3 agent over a gymnasium environment
whose observation is engine features of the last bars plus the current position and whose action
is the target position fraction in [-1, 1] ([0, 1] long-only); reward = position x next return -
commission x |change of position|. Stored as ONNX + a torch ``state_dict`` (never an SB3 .zip).

Modules: ``observations`` (feature columns, lags, normalisation), ``env`` (the environment),
``policy`` (training, safe storage, the ONNX ``PositionPolicy`` a backtest and Predict run),
``predictor`` (the ``ppo_position`` registry entry and the training job's entry point).
"""
