"""The differentiable HBV family: flux model, routing, registry and the simulation API."""

from benchmark.models.registry import MODEL_NAMES, ModelSpec, get_model_spec
from benchmark.models.simulate import SCHEMES, simulate

__all__ = ["MODEL_NAMES", "ModelSpec", "SCHEMES", "get_model_spec", "simulate"]
