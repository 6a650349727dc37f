"""Every error the model layer raises, in one place, so services map them to status codes once.

All are ``ValueError`` (bad request) except ``ModelNotFound`` (a ``KeyError``: unknown id).
"""
from __future__ import annotations


class InvalidModelConfig(ValueError):
    """A ``ModelConfig`` field is malformed (task, columns, validation fraction)."""


class UnknownModelError(ValueError):
    """A model type name that is not in the registry."""


class InvalidModelParams(ValueError):
    """A hyper-parameter that is unknown to the model type or has a bad value."""


class InvalidTrainingData(ValueError):
    """Training columns are missing, ragged, empty, non-numeric or non-finite."""


class InvalidInputData(ValueError):
    """Prediction input columns do not match what the model was trained on."""


class InvalidModelId(ValueError):
    """A model id that could escape the store directory or is otherwise malformed."""


class ModelNotFound(KeyError):
    """No saved model under this id."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "model not found"
