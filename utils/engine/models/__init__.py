"""Trainable predictors: config, registry, training, evaluation, safe storage, inference.

Importing the package registers the built-in model types (a dict insert, no I/O).
"""
from .base import (BasePredictor, DetailedProgress, ModelConfig, ProgressInfo, TrainingResult, infer_task,
                   report_progress)
from .errors import (InvalidInputData, InvalidModelConfig, InvalidModelId, InvalidModelParams,
                     InvalidTrainingData, ModelNotFound, UnknownModelError)
from .evaluation import TimeSplit, evaluate, time_split
from .gradient_boosting import GradientBoostingPredictor
from .inference import predict_columns, prepare_features
from .linear import LinearRegressionPredictor, LogisticPredictor, RidgePredictor
from .random_forest import RandomForestPredictor
from .registry import MODEL_REGISTRY, ModelRegistry, register_model
from .sequence import (DLinearPredictor, GRUPredictor, LSTMPredictor, SequencePredictor,
                       TransformerPredictor)
from .store import ModelStore, validate_model_id
from .trainer import TrainingReport, train_model

__all__ = [
    "BasePredictor", "ModelConfig", "TrainingResult", "infer_task",
    "DetailedProgress", "ProgressInfo", "report_progress",
    "GradientBoostingPredictor", "LinearRegressionPredictor", "LogisticPredictor", "RidgePredictor",
    "InvalidInputData", "InvalidModelConfig", "InvalidModelId", "InvalidModelParams",
    "InvalidTrainingData", "ModelNotFound", "UnknownModelError",
    "TimeSplit", "evaluate", "time_split", "predict_columns", "prepare_features",
    "RandomForestPredictor", "MODEL_REGISTRY", "ModelRegistry", "register_model",
    "ModelStore", "validate_model_id", "TrainingReport", "train_model",
    "SequencePredictor", "LSTMPredictor", "GRUPredictor", "TransformerPredictor", "DLinearPredictor",
]
