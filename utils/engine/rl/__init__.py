"""Pieces shared by the reinforcement-learning policies (``ppo_execution``, ``ppo_position``).

``network`` (the actor as a plain torch MLP rebuilt from JSON), ``sb3`` (Stable-Baselines3
training helpers: progress callback, isolated seeding), ``storage`` (safe files: a torch
``state_dict`` loaded with ``weights_only=True`` and an ONNX graph; never an SB3 ``.zip``).
"""
