"""Helpers shared by the time-stepping schemes: static vs dynamic parameters, per-day slicing.

Convention of every solver in this package: forcing tensors are ``[T, ...]``; storages are
``[..., n]``; a parameter is *static* when it has one dimension fewer than the storages
(``[...]``, or a 0-d tensor / float) and *dynamic* when it has the storages' rank with a
leading time axis (``[T, ...]``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from benchmark.errors import ConfigError


def is_dynamic(value: torch.Tensor, state_rank: int) -> bool:
    """Whether a parameter tensor carries a leading time axis.

    Parameters
    ----------
    value
        The parameter tensor.
    state_rank
        ``S0.dim()`` (the batch rank + 1 for the storage axis).
    """
    return value.dim() == state_rank


def as_tensor(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A parameter as a tensor of ``like``'s dtype and device (floats become 0-d tensors)."""
    if isinstance(value, torch.Tensor):
        return value if value.dtype == like.dtype and value.device == like.device else value.to(like)
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def require(p: Mapping[str, object], names: Sequence[str], context: str, model: str = "HBV") -> None:
    """Raise :class:`ConfigError` naming every parameter of ``names`` missing from ``p``."""
    missing = [name for name in names if name not in p]
    if missing:
        raise ConfigError(f"{context}: missing {model} parameter(s) {missing}; got {sorted(p)}")


def per_day(value: torch.Tensor, n_days: int, dynamic: bool) -> Sequence[torch.Tensor]:
    """A length-``n_days`` sequence of the daily values of ``value``.

    Dynamic tensors are split with ``unbind`` (its backward is a single ``stack``, unlike
    ``value[t]`` per day which would allocate a full-size gradient each day); static ones
    repeat the same tensor, so their gradient accumulates in place.
    """
    if dynamic:
        if value.shape[0] != n_days:
            raise ConfigError(
                f"dynamic parameter has {value.shape[0]} time steps, forcing has {n_days}"
            )
        return value.unbind(0)
    return [value] * n_days
