"""Trainable predictors: config, registry, training, evaluation, safe storage, inference.

Importing the package registers the built-in model types (a dict insert, no I/O).
"""
from .base import BasePredictor, ModelConfig, TrainingResult, infer_task
from .errors import (InvalidInputData, InvalidModelConfig, InvalidModelId, InvalidModelParams,
                     InvalidTrainingData, ModelNotFound, UnknownModelError)
from .evaluation import TimeSplit, evaluate, time_split
from .inference import predict_columns, prepare_features
from .random_forest import RandomForestPredictor
from .registry import MODEL_REGISTRY, ModelRegistry, register_model
from .store import ModelStore, validate_model_id
from .trainer import TrainingReport, train_model

__all__ = [
    "BasePredictor", "ModelConfig", "TrainingResult", "infer_task",
    "InvalidInputData", "InvalidModelConfig", "InvalidModelId", "InvalidModelParams",
    "InvalidTrainingData", "ModelNotFound", "UnknownModelError",
    "TimeSplit", "evaluate", "time_split", "predict_columns", "prepare_features",
    "RandomForestPredictor", "MODEL_REGISTRY", "ModelRegistry", "register_model",
    "ModelStore", "validate_model_id", "TrainingReport", "train_model",
]
