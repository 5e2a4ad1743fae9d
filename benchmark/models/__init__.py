"""Model structures (HBV, GR4J), the gamma routing, the registry of benchmark models and ``simulate``.

See docs/model.md and docs/adding-a-model.md: :mod:`~benchmark.models.base` defines what a
structure provides; each structure lives in its own package; :mod:`~benchmark.models.registry`
holds one row per benchmark model.
"""

from benchmark.models.registry import MODEL_NAMES, ModelSpec, get_model_spec
from benchmark.models.simulate import SCHEMES, simulate

__all__ = ["MODEL_NAMES", "ModelSpec", "SCHEMES", "get_model_spec", "simulate"]
