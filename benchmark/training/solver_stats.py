"""Solver statistics of ``simulate`` (Newton iterations, non-convergence counts ...) summed over batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def summarize_solver_stats(stats: Any) -> dict[str, float]:
    """Numeric scalars of ``simulate``'s ``stats`` as floats (other entries are skipped)."""
    out: dict[str, float] = {}
    if not isinstance(stats, dict):
        return out
    for key, value in stats.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
            out[key] = float(value.detach().cpu())
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


_SETTING_KEYS = ("tol", "rtol", "max_iter", "check_every")


def merge_solver_stats(total: dict[str, float], new: dict[str, float]) -> None:
    """Accumulate solver stats across batches in place.

    ``max*`` keys by maximum, ``mean*`` keys as a mean weighted by ``n_system_days`` (equal
    weights when absent), solver settings (``tol``, ``max_iter`` ...) kept as they are, and
    every other (count) key summed.
    """
    weight = new.get("n_system_days", 1.0)
    for key, value in new.items():
        if key in _SETTING_KEYS:
            total[key] = value
        elif key.startswith("max"):
            total[key] = max(total.get(key, value), value)
        elif key.startswith("mean"):
            seen = total.get(f"_weight_{key}", 0.0)
            total[key] = (total.get(key, 0.0) * seen + value * weight) / (seen + weight) if seen + weight else value
            total[f"_weight_{key}"] = seen + weight
        else:
            total[key] = total.get(key, 0.0) + value


def public_stats(total: dict[str, float]) -> dict[str, float]:
    """The stats of :func:`merge_solver_stats` without its bookkeeping entries."""
    return {key: value for key, value in total.items() if not key.startswith("_")}
