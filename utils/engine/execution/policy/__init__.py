"""A reinforcement-learning execution policy (issue 14): PPO over a gymnasium environment that
fills child orders with ``simulator.step_fill``, saved as ONNX + a torch ``state_dict``.

Modules: ``windows`` (parent orders from bars), ``env`` (the environment), ``network`` (the
actor's known architecture), ``training`` (``train_policy``, ``evaluate``), ``storage`` (safe
save/load), ``inference`` (``PolicyPlanner``), ``predictor`` (the ``ppo_execution`` registry
entry and the training job's entry point). Import the module you need: training pulls in
Stable-Baselines3 and torch, inference only onnxruntime.
"""
