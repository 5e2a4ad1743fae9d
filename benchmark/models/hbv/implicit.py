"""HBV's structured backward-Euler solves: the fast path of :mod:`benchmark.solvers.implicit`.

The scheme's generic Newton loop and adjoint recursion call the methods of
:class:`HBVImplicitSystem`, which use HBV's closed-form Jacobian and its block-triangular
structure (:mod:`benchmark.models.hbv.jacobian`) instead of dense solves, and an *eliminated*
day solve (see :meth:`HBVImplicitSystem.eliminated`), with or without capillary rise. The
tests check every piece against the generic dense path (torch.func Jacobian, LU solves).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple, Sequence

import torch

from benchmark.models.base import Forcing, Params
from benchmark.models.hbv.fluxes import (
    SM_FLOOR, DayConstants, Inner, SoilTerms, day_constants, flux_terms, ndc_fc, soil_terms, storage_tendency,
)
from benchmark.models.hbv.jacobian import jacobian_entries, solve_newton_system
from benchmark.models.snow import SnowForcing, backward_euler_snow
from benchmark.solvers.fused import day_table, fused_or_eager, unpack_day
from benchmark.solvers.newton import DT, NewtonOptions, NewtonStart, march_days, newton_start, scalar_newton


def per_day(consts: NamedTuple) -> Callable[[int], NamedTuple]:
    """Indexer giving day t's constants; entries with a leading axis of 1 (and numbers) are static."""
    timed = [isinstance(v, torch.Tensor) and v.shape[0] != 1 for v in consts]
    static = [v[0] if isinstance(v, torch.Tensor) and v.shape[0] == 1 else v for v in consts]
    kind = type(consts)

    def day(t: int) -> NamedTuple:
        return kind(*(v[t] if is_timed else sv for is_timed, sv, v in zip(timed, static, consts)))

    return day


def time_constants(x: Forcing, p: Params, capillary_rise: bool, n_batch_dims: int) -> DayConstants:
    """Day constants for all days: every entry ``[T, *batch]`` or ``[1, *batch]`` (static)."""
    def timed(v: torch.Tensor) -> torch.Tensor:
        return v if v.dim() == n_batch_dims + 1 else v.unsqueeze(0)

    return day_constants(Forcing(*(timed(v) for v in x)), {k: timed(v) for k, v in p.items()}, capillary_rise,
                         products=True)


class HBVImplicitSystem:
    """HBV's backward-Euler kernels for one sequence (see :mod:`benchmark.solvers.implicit`).

    Parameters
    ----------
    x, p
        Forcing ``[T, *batch]`` and parameters (static ``[*batch]``, dynamic ``[T, *batch]``).
    capillary_rise
        Whether the capillary-rise flux is on.
    n_batch_dims
        Number of batch axes (``S0.dim() - 1``).
    """

    def __init__(self, x: Forcing, p: Params, capillary_rise: bool, n_batch_dims: int) -> None:
        self.capillary_rise = capillary_rise
        self.consts = time_constants(x, p, capillary_rise, n_batch_dims)
        self.day = per_day(self.consts)

    can_eliminate = True
    """:meth:`eliminated` applies to every configuration (with or without capillary rise)."""

    def residual_terms(self, S: torch.Tensor, c: DayConstants) -> tuple[torch.Tensor, Inner]:
        """f(S) (mm/day) storage-first like ``S`` ``[5, *batch]``, and the intermediates of the Jacobian."""
        f, inner = flux_terms(S, c, self.capillary_rise, axis=0)
        return storage_tendency(f, axis=0), inner

    def newton_step(self, inner: Inner, c: DayConstants, G: torch.Tensor) -> torch.Tensor:
        """The Newton step (I/dt - df/dS)^-1 G, storage-first."""
        j = jacobian_entries(inner, c, self.capillary_rise)
        return torch.stack(solve_newton_system(j, G.unbind(0), self.capillary_rise))

    def rhs_all_days(self, states5: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """f at the states of every day, ``[T, 5, *batch]`` (one vectorised pass; one compiled call with ``fused``)."""
        rhs = fused_or_eager(("hbv-rhs-all-days", self.capillary_rise), partial(_rhs_all_days, self.capillary_rise),
                             fused)
        return rhs(states5, self.consts)

    def adjoint_solver(self, states5: torch.Tensor, fused: bool = False
                       ) -> Callable[[int, torch.Tensor, torch.Tensor | None], torch.Tensor]:
        """``adjoint_day(t, g, lam_next)``: (dG/dS_t)^-T (g + lam_next / dt), storage-first.

        Unfused, the Jacobians of all days, and every coefficient of the block-triangular
        transposed solve that does not involve the right-hand side, are computed in one
        vectorised pass; each day's solve is then a dozen fused multiply-adds. Fused, each day is
        one compiled call that forms its own coefficients, its right-hand side and solves (no
        table of every day's coefficients goes through memory).
        """
        cap = self.capillary_rise
        if fused:
            c_table = day_table(self.consts, states5.shape[2:])
            c_rows = c_table.table.unbind(0) if c_table.table is not None else [None] * states5.shape[0]
            day_states = states5.unbind(0)
            no_next = torch.zeros_like(states5[0])
            day_kernel = fused_or_eager(("hbv-adjoint-day", c_table.layout, cap),
                                        partial(_adjoint_day, cap, c_table.layout), True)

            def adjoint_day_fused(t: int, g: torch.Tensor, lam_next: torch.Tensor | None) -> torch.Tensor:
                return day_kernel(day_states[t], c_rows[t], c_table.statics, g,
                                  no_next if lam_next is None else lam_next)

            return adjoint_day_fused
        rows = _adjoint_coefficients(cap, states5, self.consts, axis=1).unbind(0)  # per day [n_coef, *batch]

        def adjoint_day(t: int, g: torch.Tensor, lam_next: torch.Tensor | None) -> torch.Tensor:
            return transposed_day_solve(cap, rows[t], g if lam_next is None else g + lam_next / DT)

        return adjoint_day

    # ------------------------------------------------------------------ the eliminated solve
    #
    # G = 0 is block lower triangular: the snow block (SNOW, MELT) does not see the soil, and the
    # response storages (SUZ, SLZ) are piecewise linear given the soil's outflow. Per day and system:
    #   1. SNOW, MELT: the 2x2 piecewise-linear system solved exactly (benchmark.models.snow);
    #   2. SM: scalar Newton on G_SM(SM) = 0, a monotone function, with the snow outflow known;
    #      SUZ and SLZ enter it as exact functions of SM (capillary rise only: Cr = C SLZ (1 - ...)
    #      is linear in SLZ, so SLZ(SM) is one division);
    #   3. SUZ: the monotone piecewise-linear equation with breakpoints PERC and UZL, exactly;
    #   4. SLZ: linear.
    # This is Newton's method on the reduced (Schur-complement) system, with the same solution
    # as Newton on all five storages, at a third of the elementwise work per day.

    def eliminated(self, S0: torch.Tensor, n_days: int, options: NewtonOptions
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """States ``[T, 5, *batch]``, SM Newton updates and still-active masks ``[T, *batch]``.

        With ``options.compile`` each day of a block of :func:`march_days` is one fused call of
        :func:`eliminated_day` with a fixed number of Newton updates: the block's, rounded up to
        one of :data:`UPDATE_BUCKETS`, and ``max_iter`` for a day solved again (where the
        unfused path checks convergence after every update). Neither changes a result: a
        converged system is frozen.
        """
        batch = S0.shape[:-1]
        device = S0.device
        response = _response_constants(self.consts)  # type: ignore[arg-type]
        iterations = torch.empty((n_days, *batch), dtype=torch.int32, device=device)
        not_conv = torch.empty((n_days, *batch), dtype=torch.bool, device=device)
        days: list[torch.Tensor] = [S0] * n_days
        cap = self.capillary_rise
        if options.compile:
            c_table, r_table = day_table(self.consts, batch), day_table(response, batch)
            c_rows = c_table.table.unbind(0) if c_table.table is not None else [None] * n_days
            r_rows = r_table.table.unbind(0) if r_table.table is not None else [None] * n_days
            kernels: dict[int, Callable] = {}  # by update count: no kernel lookup per day

            def solve_day(t: int, prev: torch.Tensor, updates: int | None):
                count = options.max_iter if updates is None else updates
                if count not in kernels:
                    kernels[count] = eliminated_kernel(c_table.layout, r_table.layout, cap, options, count)
                return kernels[count](prev, c_rows[t], c_table.statics, r_rows[t], r_table.statics)
        else:
            any_refreeze = (self.consts.refreeze_pot > 0.0).flatten(1).any(1).expand(n_days).tolist()
            rday = per_day(response)
            start = newton_start(batch, S0.dtype, device)

            def solve_day(t: int, prev: torch.Tensor, updates: int | None):
                new, iters, active = eliminated_day(prev, self.day(t), rday(t), cap, options, start, any_refreeze[t],
                                                    updates)
                return torch.stack(new), iters, active

        def day_step(t: int, prev: torch.Tensor, updates: int | None):
            new5, iters, active = solve_day(t, prev, updates)
            days[t] = new5
            return new5, iters, active

        march_days(day_step, S0.movedim(-1, 0).clamp_min(0.0).contiguous(), n_days, options, iterations, not_conv)
        return torch.stack(days), iterations, not_conv


UPDATE_BUCKETS = (6, 8, 12, 16, 20)
"""Newton updates per day of the fused eliminated solve: a block's count is rounded up to one of
these (then capped at ``max_iter``), so that a handful of compiled variants serve every block."""


def eliminated_kernel(c_layout: tuple, r_layout: tuple, capillary_rise: bool, options: NewtonOptions,
                      updates: int) -> Callable:
    """The fused :func:`eliminated_day`: ``(prev5, c_row, c_statics, r_row, r_statics) -> (new5, iters, active)``.

    ``prev5``/``new5`` storage-first ``[5, *batch]`` (mm); the rows and statics are those of
    :func:`~benchmark.solvers.fused.day_table` for the day constants and the response constants.
    """
    updates = min(next((b for b in UPDATE_BUCKETS if b >= updates), updates), options.max_iter)

    def day(prev5: torch.Tensor, c_row: torch.Tensor | None, c_statics: torch.Tensor | None,
            r_row: torch.Tensor | None, r_statics: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = unpack_day(DayConstants, c_layout, c_row, c_statics)
        r = unpack_day(_Response, r_layout, r_row, r_statics)
        start = newton_start(prev5.shape[1:], prev5.dtype, prev5.device)
        new, iters, active = eliminated_day(prev5, c, r, capillary_rise, options, start, True, updates)
        return torch.stack(new), iters, active

    key = ("hbv-eliminated-day", c_layout, r_layout, capillary_rise, options.tol, options.rtol, updates)
    return fused_or_eager(key, day, True)


def _rhs_all_days(capillary_rise: bool, states5: torch.Tensor, consts: DayConstants) -> torch.Tensor:
    f, _ = flux_terms(states5, consts, capillary_rise, axis=1)
    return storage_tendency(f, axis=1)


def _adjoint_coefficients(capillary_rise: bool, states: torch.Tensor, consts: DayConstants, axis: int
                          ) -> torch.Tensor:
    """The coefficients of the transposed solve (see :func:`transposed_day_solve`) at storages ``states``.

    ``axis`` is the storage axis of ``states``: 1 for every day at once (``[T, 5, *batch]`` ->
    ``[T, n_coef, *batch]``), 0 for one day (``[5, *batch]`` -> ``[n_coef, *batch]``).
    """
    _, inner = flux_terms(states, consts, capillary_rise, axis=axis)
    j = jacobian_entries(inner, consts, capillary_rise, axis=axis)
    inv_dt = 1.0 / DT
    a00, a01, a10, a11 = inv_dt - j.d00, -j.d01, -j.d10, inv_dt - j.d11
    inv_det = 1.0 / (a00 * a11 - a01 * a10)
    i22, i33, i44 = 1.0 / (inv_dt - j.d22), 1.0 / (inv_dt - j.d33), 1.0 / (inv_dt - j.d44)
    coef = [a11 * inv_det, -a10 * inv_det, -a01 * inv_det, a00 * inv_det,  # inverse of the snow block^T
            j.d20, j.d30, j.d21, j.d31, j.d32, j.d43, i22, i33]
    if capillary_rise:
        beta = (j.d32 * j.d43 * i33 + j.d42) * i22
        coef += [j.d32 * i33, beta, j.d24, 1.0 / (inv_dt - j.d44 - j.d24 * beta)]
    else:
        coef += [i44]
    return torch.stack(torch.broadcast_tensors(*coef), dim=axis)


def _adjoint_day(capillary_rise: bool, layout: tuple, S5: torch.Tensor, c_row: torch.Tensor | None,
                 c_statics: torch.Tensor | None, g: torch.Tensor, lam_next: torch.Tensor) -> torch.Tensor:
    """One day's adjoint state from its storages, constants, dL/dS_t and the next day's adjoint (the fused form)."""
    c = unpack_day(DayConstants, layout, c_row, c_statics)
    r = g + lam_next / DT
    return transposed_day_solve(capillary_rise, _adjoint_coefficients(capillary_rise, S5, c, axis=0), r)


def transposed_day_solve(capillary_rise: bool, coef: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(dG/dS_t)^-T r for one day from its precomputed coefficients (see :meth:`HBVImplicitSystem.adjoint_solver`).

    ``coef`` ``[n_coef, *batch]``, ``r`` and the result storage-first ``[5, *batch]``. The
    transposed Jacobian is block upper triangular: the response storages first (SLZ, SUZ, SM,
    coupled through capillary rise when it is on), then the snow block from what they give it.
    """
    m00, m01, m10, m11, d20, d30, d21, d31, d32, d43, i22, i33, *rest = coef.unbind(0)
    r0, r1, r2, r3, r4 = r.unbind(0)
    if capillary_rise:
        e23, beta, d24, i_den = rest
        alpha = (r2 + e23 * r3) * i22
        l4 = (r4 + d24 * alpha) * i_den
        l3 = (r3 + d43 * l4) * i33
        l2 = alpha + beta * l4
    else:
        l4 = r4 * rest[0]
        l3 = (r3 + d43 * l4) * i33
        l2 = (r2 + d32 * l3) * i22
    s0 = r0 + d20 * l2 + d30 * l3
    s1 = r1 + d21 * l2 + d31 * l3
    return torch.stack((m00 * s0 + m01 * s1, m10 * s0 + m11 * s1, l2, l3, l4))


def eliminated_day(prev: Sequence[torch.Tensor], c: DayConstants, r: "_Response", capillary_rise: bool,
                   options: NewtonOptions, start: NewtonStart, any_refreeze: bool = True,
                   updates: int | None = None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    """One backward-Euler day of HBV solved by elimination (see :meth:`HBVImplicitSystem.eliminated`).

    Parameters
    ----------
    prev
        The previous day's storages (SNOW, MELT, SM, SUZ, SLZ; mm, non-negative).
    c, r
        The day's constants and the constants of the exact SUZ solve.
    capillary_rise
        Whether the capillary-rise flux is on.
    options, start
        Resolved Newton options and the batch-shaped starting values of the SM Newton.
    any_refreeze
        False when no system has a refreezing potential on this day (skips that branch of the
        snow solve; True is always correct).
    updates
        Newton updates of the SM solve (see :func:`~benchmark.solvers.newton.scalar_newton`).

    Returns
    -------
    storages, iterations, active
        The day's storages, SM Newton updates per system and the systems above tolerance.
    """
    snow, melt = backward_euler_snow(prev[0], prev[1], SnowForcing(*c[:4]), c.CWH, any_refreeze)
    inflow = c.rain + (melt - c.CWH * snow).clamp_min(0.0)
    sm, (suz, slz), iters, active = _sm_newton(prev[2], prev[3], prev[4], inflow, c, r, capillary_rise, options,
                                               start, updates)
    return (snow, melt, sm, suz, slz), iters, active


def _sm_newton(prev_sm: torch.Tensor, prev_suz: torch.Tensor, prev_slz: torch.Tensor, inflow: torch.Tensor,
               c: DayConstants, r: "_Response", capillary_rise: bool, options: NewtonOptions, start: NewtonStart,
               updates: int | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
    """SM from G_SM(x) = x - SM_prev - (inflow - recharge(x) - excess(x) - ET(x) + Cr(x)) = 0 (dt = 1 day).

    Without capillary rise the response storages do not feed back, and SUZ, SLZ are solved once
    from the converged SM. With it, Cr = C SLZ (1 - min(SM / (NDC FC), 1)) depends on SLZ, which
    is linear in itself given SM: SLZ(SM) = (SLZ_prev + min(SUZ(SM), PERC)) / (1 + K2 + C (1 - ...)),
    with SUZ(SM) the exact piecewise-linear SUZ solve. Newton's slope is the total derivative
    dG_SM/dSM through SUZ and SLZ; G_SM stays increasing (Cr falls with SM faster than the
    percolation it feeds can raise it).

    Returns SM, (SUZ, SLZ) (mm), Newton updates per system and still-active mask.
    """
    def soil(x: torch.Tensor):
        sm_c = x.clamp_min(SM_FLOOR)
        terms = soil_terms(sm_c, c)
        return sm_c, terms, inflow * terms.w

    def residual_plain(x: torch.Tensor):
        sm_c, terms, recharge = soil(x)
        return x - prev_sm - (inflow - recharge - terms.excess - terms.ET), (sm_c, terms)

    def residual_capillary(x: torch.Tensor):
        sm_c, terms, recharge = soil(x)
        suz, den = _upper_zone(prev_suz, recharge + terms.excess, c, r)
        ratio = sm_c / ndc_fc(c)
        frac = 1.0 - ratio.clamp_max(1.0)
        one_k2_cr = 1.0 + c.K2 + c.C * frac
        slz = (prev_slz + torch.minimum(suz, c.PERC)) / one_k2_cr
        capillary = c.C * slz * frac
        h = x - prev_sm - (inflow - recharge - terms.excess - terms.ET + capillary)
        return h, (sm_c, terms, suz, den, ratio, frac, one_k2_cr, slz)

    def slope_of_soil(sm_c: torch.Tensor, terms: SoilTerms) -> tuple[torch.Tensor, torch.Tensor]:
        """inflow dw/dSM (dw: the derivative of the recharge share) and dET/dSM."""
        dw = torch.where(terms.w_raw < 1.0, c.BETA * terms.w / sm_c, 0.0)
        det_pot = torch.where(terms.e_raw < 1.0, c.BETAET * terms.et_pot / sm_c, 0.0)
        return inflow * dw, torch.where(sm_c < terms.et_pot, 1.0, det_pot)

    def slope_plain(x: torch.Tensor, t) -> torch.Tensor:
        sm_c, terms = t
        d_recharge, det = slope_of_soil(sm_c, terms)
        return torch.where(x < SM_FLOOR, 1.0, 1.0 + d_recharge + (terms.excess_arg > 0.0) + det)

    def slope_capillary(x: torch.Tensor, t) -> torch.Tensor:
        sm_c, terms, suz, den, ratio, frac, one_k2_cr, slz = t
        d_recharge, det = slope_of_soil(sm_c, terms)
        d_to_suz = d_recharge + (terms.excess_arg > 0.0)
        d_perc = torch.where(suz < c.PERC, d_to_suz / den, 0.0)
        d_frac = torch.where(ratio < 1.0, -1.0 / ndc_fc(c), 0.0)
        d_slz = (d_perc - slz * c.C * d_frac) / one_k2_cr
        d_cap = c.C * (d_frac * slz + frac * d_slz)
        return torch.where(x < SM_FLOOR, 1.0, 1.0 + d_to_suz + det - d_cap)

    if capillary_rise:
        sm, t, iters, active = scalar_newton(residual_capillary, slope_capillary, prev_sm, options, *start, updates)
        return sm, (t[2], t[7]), iters, active
    sm, (_, terms), iters, active = scalar_newton(residual_plain, slope_plain, prev_sm, options, *start, updates)
    suz, _ = _upper_zone(prev_suz, inflow * terms.w + terms.excess, c, r)
    return sm, (suz, (prev_slz + torch.minimum(suz, c.PERC)) * r.inv_one_k2), iters, active


class _Response(NamedTuple):
    """Per-day constants of the exact SUZ solve: G_SUZ is piecewise linear in SUZ."""

    phi_perc: torch.Tensor  # value of SUZ (1 + K1) + min(SUZ, PERC) + K0 max(SUZ - UZL, 0) at SUZ = PERC
    phi_uzl: torch.Tensor  # ... at SUZ = UZL
    k0_uzl: torch.Tensor
    one_k1: torch.Tensor
    inv_one_k2: torch.Tensor


def _response_constants(c: DayConstants) -> _Response:
    one_k1 = 1.0 + c.K1
    phi_perc = c.PERC * one_k1 + c.PERC + c.K0 * (c.PERC - c.UZL).clamp_min(0.0)
    phi_uzl = c.UZL * one_k1 + torch.minimum(c.UZL, c.PERC)
    return _Response(phi_perc, phi_uzl, c.K0 * c.UZL, one_k1, 1.0 / (1.0 + c.K2))


def _upper_zone(prev_suz: torch.Tensor, inflow: torch.Tensor, c: DayConstants, r: _Response
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact SUZ (mm) given its inflow recharge + excess (mm/day), and dSUZ/d(inflow) as 1 / ``den``."""
    y = prev_suz + inflow
    above_perc = y >= r.phi_perc
    above_uzl = y > r.phi_uzl
    num = torch.where(above_perc, y - c.PERC, y)
    num = torch.where(above_uzl, num + r.k0_uzl, num)
    den = torch.where(above_perc, r.one_k1, r.one_k1 + 1.0)
    den = torch.where(above_uzl, den + c.K0, den)
    return num / den, den
