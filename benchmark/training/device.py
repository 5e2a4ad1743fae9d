"""Where and in what precision a model runs (``train.device``, ``train.dtype``)."""

from __future__ import annotations

import torch

from benchmark.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    """``float32`` / ``float64`` -> the torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]
