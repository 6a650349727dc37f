"""Model type name -> known predictor class. Requests name a type; we never import or build
anything a request names beyond what was registered here (Qlib-style dynamic class loading is
exactly what we avoid)."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from .base import BasePredictor, ModelConfig
from .errors import UnknownModelError

PredictorClass = TypeVar("PredictorClass", bound=type[BasePredictor])


class ModelRegistry:
    def __init__(self) -> None:
        self._classes: dict[str, type[BasePredictor]] = {}

    def register(self, name: str, predictor_class: type[BasePredictor]) -> None:
        if not issubclass(predictor_class, BasePredictor):
            raise TypeError(f"{predictor_class!r} is not a BasePredictor")
        existing = self._classes.get(name)
        if existing is not None and existing is not predictor_class:
            raise ValueError(f"model type {name!r} is already registered to {existing.__name__}")
        self._classes[name] = predictor_class

    def get(self, name: str) -> type[BasePredictor]:
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            valid = ", ".join(self.names()) or "(none registered)"
            raise UnknownModelError(f"unknown model_type {name!r}; valid model types: {valid}") from None

    def validated_params(self, config: ModelConfig) -> dict[str, Any]:
        """The params ``config`` would train with, checked by its model type without building a
        model (what a service validates at submission); raises ``InvalidModelParams``."""
        return self.get(config.model_type).validated_params(config)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


MODEL_REGISTRY = ModelRegistry()


def register_model(name: str,
                   registry: ModelRegistry = MODEL_REGISTRY) -> Callable[[PredictorClass], PredictorClass]:
    """Class decorator: ``@register_model("random_forest")``."""

    def decorate(predictor_class: PredictorClass) -> PredictorClass:
        predictor_class.model_type = name
        registry.register(name, predictor_class)
        return predictor_class

    return decorate
