"""Masked selections for hand-written reverse passes (the chain rule of ``where``, ``relu``, ``min``)."""

from __future__ import annotations

import torch

_ZEROS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A cached 0-d zero (``where`` with a tensor operand skips a scalar conversion per call)."""
    key = (like.dtype, like.device)
    if key not in _ZEROS:
        _ZEROS[key] = torch.zeros((), dtype=like.dtype, device=like.device)
    return _ZEROS[key]


def where_else_zero(mask: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``a`` where ``mask`` else 0."""
    return torch.where(mask, a, _zero(a))


def zero_where(mask: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``a`` where not ``mask`` else 0."""
    return torch.where(mask, _zero(a), a)
