"""HBV's Jacobian df/dS in closed form and the structured Newton solve (see docs/schemes.md).

The Jacobian dG/dS = I/dt - df/dS of the backward-Euler residual is block lower triangular: the
snow block (SNOW, MELT) does not depend on the soil states, and (SM, SUZ, SLZ) depend on the
snow states only through the water released by the snowpack. Within the soil block only the
capillary rise couples SLZ back to SM. The 5x5 Newton system is therefore solved by a 2x2
Cramer solve and a 3x3 elimination written out elementwise: no batched LAPACK calls.

f is non-smooth (min, max, clip): the Jacobian uses the subgradient autograd would pick for the
branch taken (``minimum`` splits ties in half, ``clamp`` passes the gradient at the bound), so
it equals autograd's Jacobian of :func:`benchmark.models.hbv.fluxes.rhs` everywhere (tested).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from benchmark.models.base import Forcing, Params
from benchmark.models.hbv.fluxes import (
    SM_FLOOR, DayConstants, Inner, day_constants, flux_terms, ndc_fc, storage_tendency,
)
from benchmark.solvers.newton import DT


class Jac(NamedTuple):
    """Non-zero entries of df/dS (row = tendency, column = storage; 0..4 = SNOW..SLZ)."""

    d00: torch.Tensor
    d01: torch.Tensor
    d10: torch.Tensor
    d11: torch.Tensor
    d20: torch.Tensor
    d21: torch.Tensor
    d22: torch.Tensor
    d24: torch.Tensor | float
    d30: torch.Tensor
    d31: torch.Tensor
    d32: torch.Tensor
    d33: torch.Tensor
    d42: torch.Tensor | float
    d43: torch.Tensor
    d44: torch.Tensor


_LOWER: dict[tuple, torch.Tensor] = {}


def _lower_bounds(S: torch.Tensor, axis: int) -> torch.Tensor:
    """Clipping bounds (0, 0, SM_FLOOR, 0, 0) shaped to broadcast along storage axis ``axis`` of S."""
    trailing = S.dim() - axis - 1
    key = (S.dtype, S.device, trailing)
    if key not in _LOWER:
        low = torch.tensor([0.0, 0.0, SM_FLOOR, 0.0, 0.0], dtype=S.dtype, device=S.device)
        _LOWER[key] = low.reshape((5,) + (1,) * trailing)
    return _LOWER[key]


def _step(a: torch.Tensor) -> torch.Tensor:
    """Indicator a >= 0 as a float tensor (autograd's clamp passes the gradient at the bound)."""
    a = a.detach()
    return torch.heaviside(a, torch.ones((), dtype=a.dtype, device=a.device))


def _dmin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d min(a, b) / da as autograd defines it: 1 if a < b, 1/2 on a tie, else 0."""
    return torch.sign(b.detach() - a.detach()).add_(1.0).mul_(0.5)


def jacobian_entries(inner: Inner, c: DayConstants, capillary_rise: bool, axis: int = 0) -> Jac:
    """Non-zero entries of df/dS (1/day) at the point of ``inner``.

    Derivative masks follow autograd (see :func:`_step`, :func:`_dmin`), including the
    clipping of the storages.
    """
    snow_c, meltw_c, sm_c, suz_c, slz_c = inner.clipped
    k_snow, k_meltw, k_sm, k_suz, k_slz = _step(inner.S - _lower_bounds(inner.S, axis)).unbind(axis)
    dmelt = _dmin(snow_c, c.melt_pot).mul_(k_snow)  # d melt / d SNOW
    drefr = _dmin(meltw_c, c.refreeze_pot).mul_(k_meltw)  # d refreeze / d MELT
    k_tosoil = _step(inner.to_soil_arg)
    dts_m = k_tosoil * k_meltw  # d to_soil / d MELT
    dts_s = (k_tosoil * k_snow).mul_(c.CWH).neg_()  # d to_soil / d SNOW
    w_raw, e_raw = inner.w_raw, inner.e_raw
    drech_sm = (inner.inflow * c.BETA) * _step(1.0 - w_raw) * w_raw / sm_c * k_sm  # d recharge / d SM
    dex = _step(inner.excess_arg).mul_(k_sm)
    dmin_et = _dmin(sm_c, inner.et_pot)
    det_pot = (c.PET * c.BETAET) * _step(1.0 - e_raw) * e_raw / sm_c
    det = (dmin_et + (1.0 - dmin_et) * det_pot).mul_(k_sm)
    dperc = _dmin(suz_c, c.PERC).mul_(k_suz)
    dq = (c.K0 * _step(inner.q0_arg) + c.K1).mul_(k_suz)  # d(Q0 + Q1) / d SUZ
    w = inner.w
    one_minus_w = 1.0 - w

    d22 = -drech_sm - dex - det
    d24: torch.Tensor | float = 0.0
    d42: torch.Tensor | float = 0.0
    d44 = -c.K2 * k_slz
    if capillary_rise:
        dcap_sm = -(c.C * slz_c * _step(1.0 - inner.cr_ratio) / ndc_fc(c)) * k_sm
        dcap_slz = c.C * inner.cr_frac * k_slz
        d22 = d22 + dcap_sm
        d24 = dcap_slz
        d42 = -dcap_sm
        d44 = d44 - dcap_slz

    return Jac(
        d00=-dmelt, d01=drefr,
        d10=dmelt - dts_s, d11=-drefr - dts_m,
        d20=dts_s * one_minus_w, d21=dts_m * one_minus_w, d22=d22, d24=d24,
        d30=dts_s * w, d31=dts_m * w, d32=drech_sm + dex, d33=-(dperc + dq),
        d42=d42, d43=dperc, d44=d44,
    )


def rhs_and_jacobian(S: torch.Tensor, x: Forcing, p: Params, *,
                     capillary_rise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """f(S) and the dense Jacobian df/dS in closed form.

    Parameters
    ----------
    S
        Storages ``[..., 5]`` (mm).
    x, p
        Forcing and physical parameters broadcastable to ``S.shape[:-1]``.
    capillary_rise
        Whether the capillary-rise flux is on.

    Returns
    -------
    f : torch.Tensor
        ``[..., 5]`` (mm/day), equal to :func:`benchmark.models.hbv.fluxes.rhs`.
    jac : torch.Tensor
        ``[..., 5, 5]`` (1/day), ``jac[..., i, j] = d f_i / d S_j``, with autograd's choice of
        subgradient at kinks.
    """
    c = day_constants(x, p, capillary_rise, products=True)
    fluxes, inner = flux_terms(S.movedim(-1, 0), c, capillary_rise, axis=0)
    f = storage_tendency(fluxes, axis=0)
    j = jacobian_entries(inner, c, capillary_rise)
    zero = torch.zeros_like(S[..., 0])

    def full(v: torch.Tensor | float) -> torch.Tensor:
        return zero + v

    rows = (
        (j.d00, j.d01, zero, zero, zero),
        (j.d10, j.d11, zero, zero, zero),
        (j.d20, j.d21, j.d22, zero, j.d24),
        (j.d30, j.d31, j.d32, j.d33, zero),
        (zero, zero, j.d42, j.d43, j.d44),
    )
    jac = torch.stack([torch.stack([full(v) for v in row], dim=-1) for row in rows], dim=-2)
    return f.movedim(0, -1), jac


def solve_newton_system(j: Jac, b: tuple[torch.Tensor, ...], capillary_rise: bool) -> tuple[torch.Tensor, ...]:
    """Solve A delta = b, A = I/dt - J (block lower triangular)."""
    inv_dt = 1.0 / DT
    a00, a01, a10, a11 = inv_dt - j.d00, -j.d01, -j.d10, inv_dt - j.d11
    det = a00 * a11 - a01 * a10
    x0 = (b[0] * a11 - a01 * b[1]) / det
    x1 = (a00 * b[1] - a10 * b[0]) / det
    r2 = b[2] + j.d20 * x0 + j.d21 * x1
    r3 = b[3] + j.d30 * x0 + j.d31 * x1
    a22, a33, a44 = inv_dt - j.d22, inv_dt - j.d33, inv_dt - j.d44
    if not capillary_rise:
        x2 = r2 / a22
        x3 = (r3 + j.d32 * x2) / a33
        x4 = (b[4] + j.d43 * x3) / a44
        return x0, x1, x2, x3, x4
    # x2 = p - q x4 ; x3 = u + v x4 ; row 4 gives x4
    p = r2 / a22
    q = -j.d24 / a22
    u = (r3 + j.d32 * p) / a33
    v = -j.d32 * q / a33
    x4 = (b[4] + j.d42 * p + j.d43 * u) / (a44 + j.d42 * q + j.d43 * v)
    return x0, x1, p - q * x4, u + v * x4, x4


