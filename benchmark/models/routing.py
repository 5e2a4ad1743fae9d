"""Gamma unit-hydrograph routing (Song et al. 2024, eqs. 21-22; docs/model.md#routing).

The unrouted flow Q' (mm/day, the component mean) is convolved with a gamma-shaped unit
hydrograph of ``length`` daily weights taken at t = 0.5, 1.5, ..., length - 0.5 days:

    w(t) ∝ t^(α-1) exp(-t/θ),  α = a + 0.1,  θ = b + 0.5,  Σ w = 1

and Q(t) = Σ_k w(k) Q'(t - k) with Q' = 0 before the first day (causal convolution).
The gamma normalising constant Γ(α) θ^α cancels in the normalisation, so the weights are
computed as a softmax of the log-density: stable for every (a, b) in range and differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

UH_LENGTH = 15
"""Length of the unit hydrograph (days)."""

SHAPE_OFFSET = 0.1
"""α = a + SHAPE_OFFSET (keeps the shape positive at a = 0)."""

SCALE_OFFSET = 0.5
"""θ = b + SCALE_OFFSET (days)."""


def gamma_kernel(a: torch.Tensor | float, b: torch.Tensor | float, length: int = UH_LENGTH,
                 *, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Normalised gamma unit-hydrograph weights.

    Parameters
    ----------
    a, b
        Physical routing parameters (a in [0, 2.9], b in [0, 6.5] days), tensors of any
        common broadcast shape ``[...]`` or floats.
    length
        Number of daily weights (days).
    dtype, device
        Used when both ``a`` and ``b`` are floats; otherwise taken from the tensors.

    Returns
    -------
    torch.Tensor
        Weights of shape ``[..., length]``; element ``k`` multiplies the flow of ``k`` days ago.
        Each row sums to 1.
    """
    ref = a if isinstance(a, torch.Tensor) else b if isinstance(b, torch.Tensor) else None
    if ref is not None:
        dtype, device = ref.dtype, ref.device
    dtype = dtype or torch.get_default_dtype()
    a_t = torch.as_tensor(a, dtype=dtype, device=device)
    b_t = torch.as_tensor(b, dtype=dtype, device=device)
    shape = (a_t + SHAPE_OFFSET).unsqueeze(-1)
    scale = (b_t + SCALE_OFFSET).unsqueeze(-1)
    t = torch.arange(length, dtype=dtype, device=device) + 0.5
    log_density = (shape - 1.0) * torch.log(t) - t / scale
    return torch.softmax(log_density, dim=-1)


def convolve_causal(q: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal convolution of per-basin series with per-basin kernels.

    Parameters
    ----------
    q
        Series ``[T, B]`` (mm/day).
    kernel
        Weights ``[B, L]`` or ``[L]`` (shared); ``kernel[..., k]`` multiplies ``q[t - k]``.

    Returns
    -------
    torch.Tensor
        ``[T, B]``, ``out[t] = Σ_{k ≤ t} kernel[k] q[t - k]``.
    """
    n_days, n_basins = q.shape
    if kernel.dim() == 1:
        kernel = kernel.expand(n_basins, -1)
    length = kernel.shape[-1]
    # conv1d is a cross-correlation: flip the kernel and pad on the left only.
    weight = kernel.flip(-1).unsqueeze(1)  # [B, 1, L]
    signal = F.pad(q.transpose(0, 1).unsqueeze(0), (length - 1, 0))  # [1, B, T + L - 1]
    out = F.conv1d(signal, weight.to(q.dtype), groups=n_basins)  # [1, B, T]
    return out.squeeze(0).transpose(0, 1)


def route(q: torch.Tensor, a: torch.Tensor | float, b: torch.Tensor | float,
          length: int = UH_LENGTH) -> torch.Tensor:
    """Route unrouted flow through the gamma unit hydrograph.

    Parameters
    ----------
    q
        Unrouted flow ``[T, B]`` (mm/day).
    a, b
        Routing parameters, each a float or a tensor of shape ``[B]`` (or ``[]``).
    length
        Unit-hydrograph length (days).

    Returns
    -------
    torch.Tensor
        Routed flow ``[T, B]`` (mm/day); conserves volume up to the flow still in transit.
    """
    kernel = gamma_kernel(a, b, length, dtype=q.dtype, device=q.device)
    if kernel.dim() == 1:
        kernel = kernel.expand(q.shape[1], -1)
    return convolve_causal(q, kernel)
