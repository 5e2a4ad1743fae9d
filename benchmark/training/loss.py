"""The RMSE-combined training loss (Song et al. 2024, eqs. 35-36; SPEC.md section 5).

    L = (1 - alpha) * RMSE(Q, Q*) + alpha * RMSE(g(Q), g(Q*)),   g(q) = log10(sqrt(q + eps) + 0.1)

with Q the simulated and Q* the observed streamflow (mm/day). Both RMSEs are pooled over
every non-missing observation of the minibatch (all basins and days together, as the
authors' ``RmseLossComb``). Missing observations (NaN) are left out, never zero-filled.
"""

from __future__ import annotations

import torch

ALPHA = 0.25
EPS = 1e-6


def log_sqrt(q_mm_day: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``g(q) = log10(sqrt(q + eps) + 0.1)``.

    A negative simulated flow (possible with an unstable explicit scheme) enters as 0 here
    so the square root stays real; the plain RMSE term still sees its true value.
    """
    return torch.log10(torch.sqrt(q_mm_day.clamp_min(0.0) + eps) + 0.1)


def rmse_combined_loss(
    qsim: torch.Tensor, qobs: torch.Tensor, *, alpha: float = ALPHA, eps: float = EPS
) -> torch.Tensor:
    """Eqs. 35-36 over the non-missing entries of ``qobs``.

    Parameters
    ----------
    qsim
        Simulated streamflow (mm/day), any shape (e.g. ``[days, basins]``).
    qobs
        Observed streamflow (mm/day), same shape; NaN marks a missing observation.
    alpha
        Weight of the log-sqrt term.
    eps
        Offset inside the square root.

    Returns
    -------
    torch.Tensor
        The scalar loss. When no observation is present it is ``0 * sum(qsim)``: zero,
        with zero gradients, so the step changes nothing.
    """
    if qsim.shape != qobs.shape:
        raise ValueError(f"qsim shape {tuple(qsim.shape)} differs from qobs shape {tuple(qobs.shape)}")
    mask = torch.isfinite(qobs)
    if not bool(mask.any()):
        return qsim.sum() * 0.0
    sim = qsim[mask]
    obs = qobs[mask]
    rmse = torch.sqrt(torch.mean((sim - obs) ** 2))
    rmse_log = torch.sqrt(torch.mean((log_sqrt(sim, eps) - log_sqrt(obs, eps)) ** 2))
    return (1.0 - alpha) * rmse + alpha * rmse_log
