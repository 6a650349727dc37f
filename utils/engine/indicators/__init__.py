"""Technical indicators with TA-Lib's definitions, and the feature-name registry over them."""
from utils.engine.indicators.features import (FeaturePlan, FeatureSpec, MissingInputError,
                                              UnknownFeatureError, compute_features, latest_values,
                                              list_features, parse_feature)
from utils.engine.indicators.kernels import bollinger, ema, macd, rsi, sma

__all__ = ["FeaturePlan", "FeatureSpec", "MissingInputError", "UnknownFeatureError", "bollinger",
           "compute_features", "ema", "latest_values", "list_features", "macd", "parse_feature", "rsi",
           "sma"]
