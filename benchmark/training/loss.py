"""The RMSE-combined training loss (Song et al. 2024, eqs. 35-36; docs/training.md#loss).

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


def squared_error_sums(qsim: torch.Tensor, qobs: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``[sum (Q - Q*)^2, sum (g(Q) - g(Q*))^2, n]`` over the non-missing entries of ``qobs``.

    The pooled loss of a minibatch split into shards (one per process) is a function of the
    three sums added over the shards: see :func:`sharded_rmse_combined_loss`.
    """
    mask = torch.isfinite(qobs)
    sim, obs = qsim[mask], qobs[mask]
    n = mask.sum().to(qsim.dtype)
    return torch.stack(((sim - obs).square().sum(), (log_sqrt(sim, eps) - log_sqrt(obs, eps)).square().sum(), n))


def sharded_rmse_combined_loss(
    qsim: torch.Tensor, qobs: torch.Tensor, all_reduce_sum, world_size: int, *, alpha: float = ALPHA,
    eps: float = EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 35-36 pooled over a minibatch whose basins are split across ``world_size`` processes.

    With S, S_g and n the sums of :func:`squared_error_sums` over all shards and
    R = sqrt(S / n), R_g = sqrt(S_g / n), the loss is L = (1 - alpha) R + alpha R_g and its
    derivative with respect to this shard's S_r is (1 - alpha) / (2 n R) (likewise for
    S_g,r). So the shard's *surrogate*

        W [(1 - alpha) S_r / (2 n R) + alpha S_g,r / (2 n R_g)]      (n, R, R_g held fixed)

    has, averaged over the W shards as DistributedDataParallel averages gradients, exactly
    the gradient of the whole minibatch's L.

    Parameters
    ----------
    qsim, qobs
        This process's shard (mm/day); NaN marks a missing observation.
    all_reduce_sum
        Sums a tensor over the processes (e.g. ``torch.distributed.all_reduce``); identity
        on one process.
    world_size
        W, the number of processes.

    Returns
    -------
    loss
        The loss of the whole minibatch (detached, equal on every process).
    surrogate
        The tensor to call ``backward()`` on.
    """
    local = squared_error_sums(qsim, qobs, eps)
    total = local.detach().clone()
    all_reduce_sum(total)
    sse, sse_log, n = total.unbind(0)
    if float(n) == 0.0:
        zero = qsim.sum() * 0.0
        return zero.detach(), zero
    rmse, rmse_log = torch.sqrt(sse / n), torch.sqrt(sse_log / n)
    loss = (1.0 - alpha) * rmse + alpha * rmse_log
    tiny = torch.finfo(qsim.dtype).tiny  # a perfect fit has R = 0 and a zero gradient
    surrogate = world_size * ((1.0 - alpha) * local[0] / (2.0 * n * rmse.clamp_min(tiny))
                              + alpha * local[1] / (2.0 * n * rmse_log.clamp_min(tiny)))
    return loss, surrogate
