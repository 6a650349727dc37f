"""Sequence models in torch (lstm, gru, transformer, dlinear): windows of time-ordered rows in,
one prediction per row out (the first ``window - 1`` rows are history; see ``predictor``)."""
from .predictor import (DLinearPredictor, GRUPredictor, LSTMPredictor, SequencePredictor,
                        TransformerPredictor)

__all__ = ["SequencePredictor", "LSTMPredictor", "GRUPredictor", "TransformerPredictor", "DLinearPredictor"]
