"""Implicit backward Euler for HBV with Newton's method and an exact discrete adjoint.

Song et al. 2024, eqs. 28-34; docs/schemes.md#implicit-backward-euler. For each day t the storages solve

    G(S_t) = (S_t - S_{t-1}) / dt - f(S_t, theta_t, x_t) = 0,      dt = 1 day,

where f is :func:`benchmark.models.hbv.rhs`. Newton's method runs batched over every basin and
component, each system deciding its own convergence (a converged system is frozen, so basins
never change each other's iteration counts), with the Jacobian in closed form.

The Jacobian dG/dS = I/dt - df/dS is block lower triangular: the snow block (SNOW, MELT) does
not depend on the soil states, and (SM, SUZ, SLZ) depend on the snow states only through the
water released by the snowpack. Within the soil block only the capillary rise couples SLZ back
to SM. The 5x5 Newton system is therefore solved by a 2x2 Cramer solve and a 3x3 elimination
written out elementwise: no batched LAPACK calls and no host synchronisation in the time loop
(apart from the "all converged?" check per Newton iteration, one per batch).

Gradients:

- ``gradient="adjoint"`` (discretize-then-optimize): a single custom autograd function for
  the whole sequence. Forward runs Newton without recording a graph. Backward evaluates the
  Jacobians at the converged states for all days in one vectorised call, solves
  (dG/dS_t)^T lam_t = dL/dS_t + lam_{t+1}/dt backwards in time (the only sequential part),
  then obtains dL/dtheta_t = lam_t^T df/dtheta_t for all days in one vector-Jacobian product,
  and dL/dS_0 = lam_1/dt.
- ``gradient="autograd"``: autograd unrolled through every Newton iteration (reference for the
  adjoint and a demonstration of its memory cost).

f is non-smooth (min, max, clip): the Jacobian uses the subgradient autograd would pick for the
branch taken (``minimum`` splits ties in half, ``clamp`` passes the gradient at the bound), so
the adjoint is the exact derivative of the discrete solution wherever autograd's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple

import torch

from benchmark.errors import SolverError
from benchmark.models import hbv
from benchmark.models.hbv import SM_FLOOR, Forcing

DT = 1.0
"""Time step of the implicit scheme (days); forcing and parameters are daily."""

GRADIENT_METHODS = ("adjoint", "autograd")

_STATIC_NAMES = ("TT", "CFMAX", "CFR", "CWH", "FC", "BETA", "LP", "BETAET", "PERC", "UZL", "K0", "K1", "K2")


@dataclass(frozen=True)
class NewtonOptions:
    """Newton settings for the daily backward-Euler solve.

    A system (one basin x component on one day) has converged when every storage satisfies
    ``|G_i| <= tol + rtol * |S_i| / dt`` (G in mm/day). The relative part lets float32 runs,
    whose rounding error grows with the storage size, converge as far as float32 allows.

    Attributes
    ----------
    tol
        Absolute tolerance on the max-norm residual (mm/day); ``None``: 1e-8 in float64,
        1e-5 in float32.
    rtol
        Relative tolerance; ``None``: 0 in float64, 1e-6 in float32.
    max_iter
        Maximum Newton updates per day; systems still above tolerance after it are counted
        as not converged (``stats["n_not_converged"]``).
    check_every
        Check "all systems converged?" (a host synchronisation) every this many iterations;
        ``None``: every iteration on CPU, every 2 on CUDA.
    compile
        Run the Newton update through ``torch.compile`` (fuses the elementwise work into a
        few kernels; first call pays the compilation). Uses the full-vector Newton.
    eliminate
        Without capillary rise, solve the piecewise-linear storages exactly and run Newton
        on soil moisture only (same solution, a third of the work); the full-vector Newton
        is used otherwise (capillary rise, unrolled autograd, ``compile``).
    """

    tol: float | None = None
    rtol: float | None = None
    max_iter: int = 20
    check_every: int | None = None
    compile: bool = False
    eliminate: bool = True

    def resolved(self, dtype: torch.dtype, device: torch.device) -> "NewtonOptions":
        """These options with the dtype/device-dependent defaults filled in."""
        single = dtype in (torch.float32, torch.float16, torch.bfloat16)
        if self.max_iter < 1:
            raise SolverError(f"NewtonOptions.max_iter must be >= 1, got {self.max_iter}")
        return NewtonOptions(
            tol=self.tol if self.tol is not None else (1e-5 if single else 1e-8),
            rtol=self.rtol if self.rtol is not None else (1e-6 if single else 0.0),
            max_iter=self.max_iter,
            check_every=self.check_every if self.check_every is not None else (1 if device.type == "cpu" else 2),
            compile=self.compile,
            eliminate=self.eliminate,
        )


# ----------------------------------------------------------------------------------------------
# Day constants: everything in f that does not depend on the storages.


class _Constants(NamedTuple):
    """Storage-independent pieces of f for one day (or all days), broadcastable to the batch."""

    snowfall: torch.Tensor
    rain: torch.Tensor
    melt_pot: torch.Tensor  # max(CFMAX (T - TT), 0), mm/day
    refreeze_pot: torch.Tensor  # max(CFR CFMAX (TT - T), 0), mm/day
    CWH: torch.Tensor
    FC: torch.Tensor
    BETA: torch.Tensor
    LPFC: torch.Tensor  # LP * FC, mm
    BETAET: torch.Tensor
    PET: torch.Tensor
    PERC: torch.Tensor
    UZL: torch.Tensor
    K0: torch.Tensor
    K1: torch.Tensor
    K2: torch.Tensor
    C: torch.Tensor
    NDCFC: torch.Tensor  # NDC * FC, mm


def _constants(x: Forcing, p: Mapping[str, torch.Tensor], capillary_rise: bool) -> _Constants:
    """Storage-independent terms of f, with the same floating-point operations as hbv.fluxes."""
    is_snow = x.T < p["TT"]
    snowfall = x.P * is_snow.to(x.P.dtype)
    rain = x.P - snowfall
    melt_pot = (p["CFMAX"] * (x.T - p["TT"])).clamp_min(0.0)
    refreeze_pot = (p["CFR"] * p["CFMAX"] * (p["TT"] - x.T)).clamp_min(0.0)
    fc = p["FC"]
    if capillary_rise:
        c = p["C"]
        ndcfc = p["NDC"] * fc if "NDC" in p else fc
    else:
        c = ndcfc = fc  # unused
    return _Constants(snowfall, rain, melt_pot, refreeze_pot, p["CWH"], fc, p["BETA"], p["LP"] * fc,
                      p["BETAET"], x.PET, p["PERC"], p["UZL"], p["K0"], p["K1"], p["K2"], c, ndcfc)


# ----------------------------------------------------------------------------------------------
# f and its Jacobian, storage by storage.


class _Jac(NamedTuple):
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


class _Inner(NamedTuple):
    """Intermediate values of f at S that its Jacobian reuses."""

    S: torch.Tensor
    clipped: tuple[torch.Tensor, ...]
    to_soil_arg: torch.Tensor
    w_raw: torch.Tensor
    w: torch.Tensor
    inflow: torch.Tensor
    excess_arg: torch.Tensor
    e_raw: torch.Tensor
    et_pot: torch.Tensor
    q0_arg: torch.Tensor
    cr_ratio: torch.Tensor | None
    cr_frac: torch.Tensor | None


def _rhs(S: torch.Tensor, c: _Constants, capillary_rise: bool, axis: int = 0
         ) -> tuple[torch.Tensor, _Inner]:
    """f(S) (mm/day) stacked along ``axis`` like S, and the intermediates for the Jacobian.

    The flux formulas repeat :func:`benchmark.models.hbv.fluxes` operation for operation, so
    a converged Newton solution satisfies G = 0 for ``hbv.rhs`` itself.
    """
    clipped = torch.maximum(S, _lower_bounds(S, axis)).unbind(axis)
    snow_c, meltw_c, sm_c, suz_c, slz_c = clipped

    melt = torch.minimum(c.melt_pot, snow_c)
    refreeze = torch.minimum(c.refreeze_pot, meltw_c)
    to_soil_arg = meltw_c - c.CWH * snow_c
    to_soil = to_soil_arg.clamp_min(0.0)
    w_raw = (sm_c / c.FC).pow(c.BETA)
    w = w_raw.clamp(0.0, 1.0)
    inflow = c.rain + to_soil
    recharge = inflow * w
    excess_arg = sm_c - c.FC
    excess = excess_arg.clamp_min(0.0)
    e_raw = (sm_c / c.LPFC).pow(c.BETAET)
    et_pot = c.PET * e_raw.clamp(0.0, 1.0)
    et = torch.minimum(sm_c, et_pot)
    perc = torch.minimum(suz_c, c.PERC)
    q0_arg = suz_c - c.UZL
    q0 = c.K0 * q0_arg.clamp_min(0.0)
    q1 = c.K1 * suz_c
    q2 = c.K2 * slz_c

    f_snow = c.snowfall + refreeze - melt
    f_meltw = melt - refreeze - to_soil
    f_sm = to_soil + c.rain - recharge - excess - et
    f_suz = recharge + excess - perc - q0 - q1
    f_slz = perc - q2
    cr_ratio = cr_frac = None
    if capillary_rise:
        cr_ratio = sm_c / c.NDCFC
        cr_frac = 1.0 - torch.clamp(cr_ratio, max=1.0)
        cap = c.C * slz_c * cr_frac
        f_sm = f_sm + cap
        f_slz = f_slz - cap
    f = torch.stack((f_snow, f_meltw, f_sm, f_suz, f_slz), dim=axis)
    inner = _Inner(S, clipped, to_soil_arg, w_raw, w, inflow, excess_arg, e_raw, et_pot, q0_arg, cr_ratio, cr_frac)
    return f, inner


def _jac(inner: _Inner, c: _Constants, capillary_rise: bool, axis: int = 0) -> _Jac:
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
        dcap_sm = -(c.C * slz_c * _step(1.0 - inner.cr_ratio) / c.NDCFC) * k_sm
        dcap_slz = c.C * inner.cr_frac * k_slz
        d22 = d22 + dcap_sm
        d24 = dcap_slz
        d42 = -dcap_sm
        d44 = d44 - dcap_slz

    return _Jac(
        d00=-dmelt, d01=drefr,
        d10=dmelt - dts_s, d11=-drefr - dts_m,
        d20=dts_s * one_minus_w, d21=dts_m * one_minus_w, d22=d22, d24=d24,
        d30=dts_s * w, d31=dts_m * w, d32=drech_sm + dex, d33=-(dperc + dq),
        d42=d42, d43=dperc, d44=d44,
    )


def rhs_and_jacobian(S: torch.Tensor, x: Forcing, p: Mapping[str, torch.Tensor], *,
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
        ``[..., 5]`` (mm/day), equal to :func:`benchmark.models.hbv.rhs`.
    jac : torch.Tensor
        ``[..., 5, 5]`` (1/day), ``jac[..., i, j] = d f_i / d S_j``, with autograd's choice of
        subgradient at kinks.
    """
    c = _constants(x, p, capillary_rise)
    S5 = S.movedim(-1, 0)
    f, inner = _rhs(S5, c, capillary_rise)
    j = _jac(inner, c, capillary_rise)
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


# ----------------------------------------------------------------------------------------------
# Structured linear solves with A = dG/dS = I/dt - df/dS.


def _solve(j: _Jac, b: tuple[torch.Tensor, ...], capillary_rise: bool) -> tuple[torch.Tensor, ...]:
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


def _solve_transposed(j: _Jac, r: tuple[torch.Tensor, ...], capillary_rise: bool) -> tuple[torch.Tensor, ...]:
    """Solve A^T lam = r, A = I/dt - J (block upper triangular: soil block first)."""
    inv_dt = 1.0 / DT
    a22, a33, a44 = inv_dt - j.d22, inv_dt - j.d33, inv_dt - j.d44
    if not capillary_rise:
        l4 = r[4] / a44
        l3 = (r[3] + j.d43 * l4) / a33
        l2 = (r[2] + j.d32 * l3) / a22
    else:
        # l3 = (r3 + d43 l4)/a33 ; l2 = alpha + beta l4 ; column 4 gives l4
        alpha = (r[2] + j.d32 * r[3] / a33) / a22
        beta = (j.d32 * j.d43 / a33 + j.d42) / a22
        l4 = (r[4] + j.d24 * alpha) / (a44 - j.d24 * beta)
        l3 = (r[3] + j.d43 * l4) / a33
        l2 = alpha + beta * l4
    s0 = r[0] + j.d20 * l2 + j.d30 * l3
    s1 = r[1] + j.d21 * l2 + j.d31 * l3
    a00, a01, a10, a11 = inv_dt - j.d00, -j.d01, -j.d10, inv_dt - j.d11
    det = a00 * a11 - a01 * a10
    l0 = (a11 * s0 - a10 * s1) / det
    l1 = (a00 * s1 - a01 * s0) / det
    return l0, l1, l2, l3, l4


# ----------------------------------------------------------------------------------------------
# Newton's method, day by day.


def _residual(S: torch.Tensor, S_prev: torch.Tensor, active: torch.Tensor, c: _Constants, tol: float, rtol: float,
              capillary_rise: bool) -> tuple[torch.Tensor, _Inner, torch.Tensor, torch.Tensor]:
    """G at ``S`` (storage-first ``[5, *batch]``), its max norm, and ``active`` minus the converged systems."""
    f, inner = _rhs(S, c, capillary_rise)
    G = S - S_prev
    if DT != 1.0:
        G = G / DT
    G = G - f
    gabs = G.abs()
    gmax = gabs.amax(0)
    err = (gabs - (rtol / DT) * S.abs()).amax(0) if rtol > 0.0 else gmax
    return G, inner, gmax, active & ~(err <= tol)  # a NaN residual is not converged


def _update(S: torch.Tensor, G: torch.Tensor, inner: _Inner, gmax: torch.Tensor, S_acc: torch.Tensor,
            r_acc: torch.Tensor, active: torch.Tensor, iters: torch.Tensor, c: _Constants, capillary_rise: bool
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One masked, safeguarded Newton update.

    If the max-norm residual at ``S`` decreased relative to the last accepted iterate
    ``S_acc`` (residual ``r_acc``), ``S`` is accepted and the Newton step is taken from it;
    otherwise ``S`` is rejected and the next iterate is the midpoint of ``S_acc`` and ``S``
    (backtracking along the last Newton direction). The kinks of f can make plain Newton
    cycle between two points (e.g. soil moisture jumping across FC on a day of heavy rain);
    backtracking breaks such cycles at no extra evaluation. Converged systems
    (``active`` False) stay where they are.

    Returns
    -------
    S_new, S_acc, r_acc, iters
    """
    accept = gmax < r_acc
    step = torch.stack(_solve(_jac(inner, c, capillary_rise), G.unbind(0), capillary_rise))
    S_new = torch.where(accept, S - step, 0.5 * (S_acc + S))
    S_new = torch.where(active, S_new, S)
    return S_new, torch.where(accept, S, S_acc), torch.where(accept, gmax, r_acc), iters + active


def _polish(S: torch.Tensor, S_prev: torch.Tensor, c: _Constants, capillary_rise: bool) -> torch.Tensor:
    """One more plain Newton step for every system (unrolled-autograd mode only).

    The derivative of a Newton iterate lags the iterate itself by one step: at the point
    where a system stops, d S_n / d theta is off by about the residual of S_{n-1}. One extra
    step changes S by O(residual^2) and brings the unrolled derivative to the accuracy of
    the solution, so that it can serve as a reference for the adjoint.
    """
    f, inner = _rhs(S, c, capillary_rise)
    G = (S - S_prev) / DT - f
    return S - torch.stack(_solve(_jac(inner, c, capillary_rise), G.unbind(0), capillary_rise))


_COMPILED: dict[str, Callable] = {}


def _kernels(compile_: bool) -> tuple[Callable, Callable]:
    """The residual and update functions, optionally through ``torch.compile``."""
    if not compile_:
        return _residual, _update
    if not _COMPILED:
        _COMPILED["residual"] = torch.compile(_residual, dynamic=False)
        _COMPILED["update"] = torch.compile(_update, dynamic=False)
    return _COMPILED["residual"], _COMPILED["update"]


class _RawStats(NamedTuple):
    iterations: torch.Tensor  # [T, *batch] Newton updates per system-day
    residual: torch.Tensor  # [T, *batch] max |G_i| (mm/day) at the returned state
    not_converged: torch.Tensor  # [T, *batch] bool


def _per_day(consts: NamedTuple) -> Callable[[int], NamedTuple]:
    """Indexer giving day t's constants; entries with a leading axis of 1 are static."""
    static = [v[0] if v.shape[0] == 1 else None for v in consts]
    kind = type(consts)

    def day(t: int) -> NamedTuple:
        return kind(*(sv if sv is not None else v[t] for sv, v in zip(static, consts)))

    return day


def _newton_sequence(S0: torch.Tensor, consts: _Constants, n_days: int, options: NewtonOptions,
                     capillary_rise: bool) -> tuple[torch.Tensor, _RawStats]:
    """Integrate all days; returns storage-first states ``[T, 5, *batch]`` and raw stats.

    Per day: evaluate G (cheap, no Jacobian); stop when every system meets the tolerance;
    otherwise build the Jacobian from the same intermediates and update the active systems.
    Differentiable by autograd (unrolled through Newton) when grad mode is on and an input
    requires grad.
    """
    batch = S0.shape[:-1]
    record = torch.is_grad_enabled() and (S0.requires_grad or any(v.requires_grad for v in consts))
    if options.eliminate and not record and not capillary_rise and not options.compile:
        states5, iterations, _ = _eliminated_sequence(S0, consts, n_days, options)
        residual = _full_residual(S0, states5, consts, capillary_rise)
        err = residual if options.rtol == 0.0 else (
            residual - options.rtol / DT * states5.abs().amax(1))  # conservative: the largest storage
        return states5, _RawStats(iterations, residual, ~(err <= options.tol))  # NaN: not converged
    residual_fn, update_fn = _kernels(options.compile and not record)
    day = _per_day(consts)
    tol, rtol = float(options.tol), float(options.rtol)
    check_every = int(options.check_every)
    max_iter = int(options.max_iter)
    device = S0.device

    states = None if record else torch.empty((n_days, 5, *batch), dtype=S0.dtype, device=device)
    kept: list[torch.Tensor] = []
    iterations = torch.empty((n_days, *batch), dtype=torch.int32, device=device)
    residual = torch.empty((n_days, *batch), dtype=S0.dtype, device=device)
    not_conv = torch.empty((n_days, *batch), dtype=torch.bool, device=device)
    zero_iters = torch.zeros(batch, dtype=torch.int32, device=device)
    all_active = torch.ones(batch, dtype=torch.bool, device=device)
    no_residual = torch.full(batch, torch.inf, dtype=S0.dtype, device=device)

    S_prev = S0.movedim(-1, 0).contiguous()
    for t in range(n_days):
        c = day(t)
        S, S_acc, r_acc, active, iters = S_prev, S_prev, no_residual, all_active, zero_iters
        for k in range(max_iter + 1):
            G, inner, gmax, active = residual_fn(S, S_prev, active, c, tol, rtol, capillary_rise)
            if k == max_iter or (k % check_every == 0 and not bool(active.any())):
                break
            S, S_acc, r_acc, iters = update_fn(S, G, inner, gmax, S_acc, r_acc, active, iters, c, capillary_rise)
        iterations[t] = iters
        residual[t] = gmax.detach()
        not_conv[t] = active
        if record:
            S = _polish(S, S_prev, c, capillary_rise)
            kept.append(S)
        else:
            states[t] = S
        S_prev = S
    if record:
        states = torch.stack(kept, dim=0)
    return states, _RawStats(iterations, residual, not_conv)


# ----------------------------------------------------------------------------------------------
# Newton with the piecewise-linear storages eliminated (no capillary rise).
#
# Without capillary rise, G = 0 is block lower triangular and only the soil-moisture equation
# is nonlinear in a smooth way; the snow block (SNOW, MELT) and the response storages (SUZ,
# SLZ) are piecewise linear. Per day and system:
#   1. SNOW, MELT: the 2x2 piecewise-linear system solved exactly (case analysis below);
#   2. SM: scalar Newton on G_SM(SM) = 0, a monotone function, with the snow outflow known;
#   3. SUZ: the monotone piecewise-linear equation with breakpoints PERC and UZL, exactly;
#   4. SLZ: linear.
# This is Newton's method on the reduced (Schur-complement) system, with the same solution
# as Newton on all five storages, at a third of the elementwise work per day. The full
# residual G of every day is evaluated afterwards (vectorised over days) for the statistics.


def _snow_block(prev_snow: torch.Tensor, prev_melt: torch.Tensor, c: _Constants, any_refreeze: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact backward-Euler SNOW and MELT (mm) for one day (previous storages >= 0).

    With refreezing potential R = 0: SNOW + min(M, SNOW) = a (a = SNOW_prev + snowfall) gives
    SNOW = max(a - M, a / 2); then MELT + max(MELT - CWH SNOW, 0) = b (b = MELT_prev + melt)
    gives MELT = min(b, (b + CWH SNOW) / 2). With R > 0 (then M = 0) the two are coupled
    through min(R, MELT); the root of the monotone piecewise-linear MELT equation lies above
    R (refreezing saturated) or below it (all meltwater refreezes, released or not).
    """
    a = prev_snow + c.snowfall
    snow = torch.maximum(a - c.melt_pot, 0.5 * a)
    b = prev_melt + (a - snow)
    melt = torch.minimum(b, 0.5 * (b + c.CWH * snow))
    if not any_refreeze:
        return snow, melt
    r, cwh = c.refreeze_pot, c.CWH
    # (i) MELT >= R: refreeze = R
    q = prev_melt - r
    snow_i = a + r
    melt_i = torch.minimum(q, 0.5 * (q + cwh * snow_i))
    saturated = (2.0 * r + (r - cwh * (a + r)).clamp_min(0.0) - prev_melt) <= 0.0
    # (ii) MELT < R: refreeze = MELT; released water only above MELT = CWH a / (1 - CWH)
    m_break = cwh * a / (1.0 - cwh)
    melt_ii = torch.where(2.0 * m_break >= prev_melt, 0.5 * prev_melt, (prev_melt + cwh * a) / (3.0 - cwh))
    has_r = r > 0.0
    snow = torch.where(has_r, torch.where(saturated, snow_i, a + melt_ii), snow)
    melt = torch.where(has_r, torch.where(saturated, melt_i, melt_ii), melt)
    return snow, melt


def _soil_terms(sm: torch.Tensor, c: _Constants) -> tuple[torch.Tensor, ...]:
    """SM-dependent loss terms: clipped SM, w, excess, ET and their masks (mm, mm/day)."""
    sm_c = sm.clamp_min(SM_FLOOR)
    w_raw = (sm_c / c.FC).pow(c.BETA)
    w = w_raw.clamp(0.0, 1.0)
    excess_arg = sm_c - c.FC
    excess = excess_arg.clamp_min(0.0)
    e_raw = (sm_c / c.LPFC).pow(c.BETAET)
    et_pot = c.PET * e_raw.clamp(0.0, 1.0)
    et = torch.minimum(sm_c, et_pot)
    return sm_c, w_raw, w, excess_arg, excess, e_raw, et_pot, et


def _sm_newton(prev_sm: torch.Tensor, inflow: torch.Tensor, c: _Constants, options: NewtonOptions,
               zero_iters: torch.Tensor, all_active: torch.Tensor, no_residual: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Safeguarded scalar Newton for SM: x - SM_prev - (inflow - inflow w(x) - excess(x) - ET(x)) = 0.

    Returns SM, recharge + excess at SM (mm/day), Newton updates per system, still-active mask.
    """
    tol, rtol = float(options.tol), float(options.rtol)
    x = x_acc = prev_sm
    r_acc, active, iters = no_residual, all_active, zero_iters
    for k in range(options.max_iter + 1):
        sm_c, w_raw, w, excess_arg, excess, e_raw, et_pot, et = _soil_terms(x, c)
        recharge = inflow * w
        h = x - prev_sm - (inflow - recharge - excess - et)
        habs = h.abs()
        err = habs - rtol * x.abs() if rtol > 0.0 else habs
        active = active & ~(err <= tol)  # a NaN residual is not converged
        if k == options.max_iter or not bool(active.any()):
            break
        dw = torch.where(w_raw < 1.0, c.BETA * w / sm_c, 0.0)
        det_pot = torch.where(e_raw < 1.0, c.BETAET * et_pot / sm_c, 0.0)
        det = torch.where(sm_c < et_pot, 1.0, det_pot)
        dh = torch.where(x < SM_FLOOR, 1.0, 1.0 + inflow * dw + (excess_arg > 0.0) + det)
        accept = habs < r_acc
        x_new = torch.where(accept, x - h / dh, 0.5 * (x_acc + x))
        x_acc = torch.where(accept, x, x_acc)
        r_acc = torch.where(accept, habs, r_acc)
        x = torch.where(active, x_new, x)
        iters = iters + active
    return x, recharge + excess, iters, active


class _Response(NamedTuple):
    """Per-day constants of the exact SUZ solve: G_SUZ is piecewise linear in SUZ."""

    phi_perc: torch.Tensor  # value of SUZ (1 + K1) + min(SUZ, PERC) + K0 max(SUZ - UZL, 0) at SUZ = PERC
    phi_uzl: torch.Tensor  # ... at SUZ = UZL
    k0_uzl: torch.Tensor
    one_k1: torch.Tensor
    inv_one_k2: torch.Tensor


def _response_constants(c: _Constants) -> _Response:
    one_k1 = 1.0 + c.K1
    phi_perc = c.PERC * one_k1 + c.PERC + c.K0 * (c.PERC - c.UZL).clamp_min(0.0)
    phi_uzl = c.UZL * one_k1 + torch.minimum(c.UZL, c.PERC)
    return _Response(phi_perc, phi_uzl, c.K0 * c.UZL, one_k1, 1.0 / (1.0 + c.K2))


def _response(prev_suz: torch.Tensor, prev_slz: torch.Tensor, inflow: torch.Tensor, c: _Constants,
              r: _Response) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact SUZ and SLZ (mm) given the inflow recharge + excess (mm/day)."""
    y = prev_suz + inflow
    above_perc = y >= r.phi_perc
    above_uzl = y > r.phi_uzl
    num = torch.where(above_perc, y - c.PERC, y)
    num = torch.where(above_uzl, num + r.k0_uzl, num)
    den = torch.where(above_perc, r.one_k1, r.one_k1 + 1.0)
    den = torch.where(above_uzl, den + c.K0, den)
    suz = num / den
    slz = (prev_slz + torch.minimum(suz, c.PERC)) * r.inv_one_k2
    return suz, slz


def _eliminated_sequence(S0: torch.Tensor, consts: _Constants, n_days: int, options: NewtonOptions
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """States ``[T, 5, *batch]`` (no capillary rise), SM Newton updates and still-active masks ``[T, *batch]``."""
    batch = S0.shape[:-1]
    device = S0.device
    day = _per_day(consts)
    rconsts = _response_constants(consts)
    rday = _per_day(rconsts)  # type: ignore[arg-type]
    any_refreeze = (consts.refreeze_pot > 0.0).flatten(1).any(1).expand(n_days).tolist()
    states = torch.empty((n_days, 5, *batch), dtype=S0.dtype, device=device)
    iterations = torch.empty((n_days, *batch), dtype=torch.int32, device=device)
    not_conv = torch.empty((n_days, *batch), dtype=torch.bool, device=device)
    zero_iters = torch.zeros(batch, dtype=torch.int32, device=device)
    all_active = torch.ones(batch, dtype=torch.bool, device=device)
    no_residual = torch.full(batch, torch.inf, dtype=S0.dtype, device=device)
    prev = S0.movedim(-1, 0).clamp_min(0.0).unbind(0)
    for t in range(n_days):
        c, r = day(t), rday(t)
        snow, melt = _snow_block(prev[0], prev[1], c, any_refreeze[t])
        inflow = c.rain + (melt - c.CWH * snow).clamp_min(0.0)
        sm, to_suz, iters, active = _sm_newton(prev[2], inflow, c, options, zero_iters, all_active, no_residual)
        suz, slz = _response(prev[3], prev[4], to_suz, c, r)
        out = states[t]
        torch.stack((snow, melt, sm, suz, slz), out=out)
        iterations[t] = iters
        not_conv[t] = active
        prev = out.unbind(0)
    return states, iterations, not_conv


def _full_residual(S0: torch.Tensor, states5: torch.Tensor, consts: _Constants, capillary_rise: bool
                   ) -> torch.Tensor:
    """max_i |G_i| (mm/day) of every day and system, ``[T, *batch]``, in one vectorised pass."""
    prev = torch.cat((S0.movedim(-1, 0).unsqueeze(0), states5[:-1]), dim=0)
    f, _ = _rhs(states5, consts, capillary_rise, axis=1)
    G = (states5 - prev) / DT - f
    return G.abs().amax(1)


# ----------------------------------------------------------------------------------------------
# Inputs, the adjoint, the public entry point.


def _time_constants(x: Forcing, p: Mapping[str, torch.Tensor], capillary_rise: bool, n_batch_dims: int
                    ) -> _Constants:
    """Day constants for all days: every entry ``[T, *batch]`` or ``[1, *batch]`` (static)."""
    def timed(v: torch.Tensor) -> torch.Tensor:
        return v if v.dim() == n_batch_dims + 1 else v.unsqueeze(0)

    return _constants(Forcing(*(timed(v) for v in x)), {k: timed(v) for k, v in p.items()}, capillary_rise)


def _required_names(capillary_rise: bool, p: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    names = _STATIC_NAMES + (("C",) if capillary_rise else ())
    if capillary_rise and "NDC" in p:
        names = names + ("NDC",)
    return names


def _check_inputs(x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor, capillary_rise: bool
                  ) -> dict[str, torch.Tensor]:
    """Validate shapes; return the parameters the model uses, as tensors of S0's dtype/device."""
    if S0.dim() < 1 or S0.shape[-1] != 5:
        raise SolverError(f"initial state must have shape [..., 5] (SNOW, MELT, SM, SUZ, SLZ), got {tuple(S0.shape)}")
    n_batch = S0.dim() - 1
    n_days = x.P.shape[0] if x.P.dim() > 0 else 0
    for name, v in zip(Forcing._fields, x):
        if v.dim() != n_batch + 1 or v.shape[0] != n_days:
            raise SolverError(f"forcing {name} must have shape [T, ...] with {n_batch} batch axes "
                              f"(T = {n_days}) broadcastable to {tuple(S0.shape[:-1])}, got {tuple(v.shape)}")
    out: dict[str, torch.Tensor] = {}
    for name in _required_names(capillary_rise, p):
        if name not in p:
            raise SolverError(f"parameter {name} is missing (capillary_rise={capillary_rise})")
        v = torch.as_tensor(p[name], dtype=S0.dtype, device=S0.device)
        if v.dim() == n_batch + 1 and v.shape[0] != n_days:
            raise SolverError(f"dynamic parameter {name} has {v.shape[0]} days, forcing has {n_days}")
        if v.dim() > n_batch + 1:
            raise SolverError(f"parameter {name} has shape {tuple(v.shape)}; expected [...] (static) "
                              f"or [T, ...] (dynamic) for batch {tuple(S0.shape[:-1])}")
        out[name] = v
    return out


class _AdjointSequence(torch.autograd.Function):
    """Backward Euler over the whole sequence with the discrete adjoint as its backward."""

    @staticmethod
    def forward(ctx, setup: dict, S0: torch.Tensor, P: torch.Tensor, Tm: torch.Tensor, PET: torch.Tensor,
                *values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = Forcing(P, Tm, PET)
        p = dict(zip(setup["names"], values))
        cap = setup["capillary_rise"]
        consts = _time_constants(x, p, cap, S0.dim() - 1)
        states5, raw = _newton_sequence(S0, consts, P.shape[0], setup["options"], cap)
        setup["raw"] = raw
        ctx.setup = setup
        ctx.save_for_backward(states5, P, Tm, PET, *values)
        return states5.movedim(1, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states: torch.Tensor):  # type: ignore[override]
        states5, P, Tm, PET, *values = ctx.saved_tensors
        setup = ctx.setup
        cap = setup["capillary_rise"]
        names = setup["names"]
        x = Forcing(P, Tm, PET)
        lam5 = _adjoint_states(states5, x, dict(zip(names, values)), grad_states.movedim(-1, 1), cap)

        needs = ctx.needs_input_grad
        grad_S0 = lam5[0].movedim(0, -1) / DT if needs[1] else None
        inputs = list(x) + list(values)
        wanted = [i for i, flag in enumerate(needs[2:]) if flag]
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if wanted:
            # dL/dtheta_t = lam_t^T df/dtheta_t for all days at once (static parameters sum over t)
            with torch.enable_grad():
                leaves = [v.detach().requires_grad_(i in wanted) for i, v in enumerate(inputs)]
                f = hbv.rhs(states5.movedim(1, -1), Forcing(*leaves[:3]), dict(zip(names, leaves[3:])),
                            capillary_rise=cap)
                got = torch.autograd.grad(f, [leaves[i] for i in wanted], grad_outputs=lam5.movedim(1, -1),
                                          allow_unused=True)
            for i, g in zip(wanted, got):
                grads[i] = g
        return (None, grad_S0, *grads)


def _adjoint_states(states5: torch.Tensor, x: Forcing, p: Mapping[str, torch.Tensor], grad5: torch.Tensor,
                    capillary_rise: bool) -> torch.Tensor:
    """Adjoint states ``[T, 5, *batch]``: (dG/dS_t)^T lam_t = dL/dS_t + lam_{t+1}/dt, backwards in time.

    The Jacobians at the converged states of all days, and every coefficient of the
    block-triangular transposed solve that does not involve the right-hand side, are computed
    in one vectorised pass; the time loop is then a dozen fused multiply-adds per day.
    """
    n_days = states5.shape[0]
    consts = _time_constants(x, p, capillary_rise, states5.dim() - 2)
    _, inner = _rhs(states5, consts, capillary_rise, axis=1)
    j = _jac(inner, consts, capillary_rise, axis=1)
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
    table = torch.stack(torch.broadcast_tensors(*coef), dim=1)  # [T, n_coef, *batch]
    grad5 = grad5.contiguous()

    lam = torch.empty_like(states5)
    lam_next: torch.Tensor | None = None
    for t in range(n_days - 1, -1, -1):
        m00, m01, m10, m11, d20, d30, d21, d31, d32, d43, i22, i33, *rest = table[t].unbind(0)
        r = grad5[t] if lam_next is None else grad5[t] + lam_next * inv_dt
        r0, r1, r2, r3, r4 = r.unbind(0)
        if capillary_rise:
            e23, beta, d24, i_den = rest
            alpha = torch.addcmul(r2, e23, r3).mul_(i22)
            l4 = torch.addcmul(r4, d24, alpha).mul_(i_den)
            l3 = torch.addcmul(r3, d43, l4).mul_(i33)
            l2 = torch.addcmul(alpha, beta, l4)
        else:
            l4 = r4 * rest[0]
            l3 = torch.addcmul(r3, d43, l4).mul_(i33)
            l2 = torch.addcmul(r2, d32, l3).mul_(i22)
        s0 = torch.addcmul(torch.addcmul(r0, d20, l2), d30, l3)
        s1 = torch.addcmul(torch.addcmul(r1, d21, l2), d31, l3)
        out = lam[t]
        torch.addcmul(m00 * s0, m01, s1, out=out[0])
        torch.addcmul(m10 * s0, m11, s1, out=out[1])
        out[2], out[3], out[4] = l2, l3, l4
        lam_next = out
    return lam


def _summarise(raw: _RawStats, options: NewtonOptions) -> dict:
    """Solver statistics as plain Python numbers (one host synchronisation)."""
    iters = raw.iterations
    n_days = iters.shape[0]
    hist = torch.bincount(iters.reshape(-1).to(torch.int64), minlength=options.max_iter + 1)
    per_basin_day = raw.not_converged.reshape(n_days, iters.shape[1], -1).any(-1) if iters.dim() > 2 \
        else raw.not_converged
    return {
        "iterations_hist": hist.tolist(),
        "max_iterations": int(iters.max()) if iters.numel() else 0,
        "mean_iterations": float(iters.to(torch.float64).mean()) if iters.numel() else 0.0,
        "n_system_days": int(iters.numel()),
        "n_basin_days": int(per_basin_day.numel()),
        "n_not_converged": int(per_basin_day.sum()),
        "n_not_converged_systems": int(raw.not_converged.sum()),
        "max_residual": float(raw.residual.max()) if raw.residual.numel() else 0.0,
        "tol": options.tol,
        "rtol": options.rtol,
        "max_iter": options.max_iter,
        "iterations": iters,
        "not_converged": per_basin_day,
    }


def integrate_backward_euler(x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor, *,
                             capillary_rise: bool, gradient: str = "adjoint",
                             options: NewtonOptions | None = None) -> tuple[torch.Tensor, dict]:
    """Integrate HBV with implicit backward Euler (daily step), Newton per basin and day.

    Parameters
    ----------
    x
        Daily forcing, each ``[T, *batch]`` (or broadcastable per day, e.g. ``[T, B, 1]`` for a
        ``[B, nmul]`` batch): P (mm/day), mean T (degC), PET (mm/day).
    p
        Physical parameters by name (docs/model.md#parameters), each ``[*batch]`` (static; broadcastable) or
        ``[T, *batch]`` (dynamic). ``NDC`` is used when present and ``capillary_rise`` is on
        (otherwise fixed to 1).
    S0
        Storages before the first day, ``[*batch, 5]`` (mm).
    capillary_rise
        Include the capillary-rise flux (the "improved" model).
    gradient
        ``"adjoint"``: the discrete adjoint (one custom autograd function for the sequence);
        ``"autograd"``: autograd unrolled through the Newton iterations.
    options
        Newton settings; defaults depend on the dtype (see :class:`NewtonOptions`).

    Returns
    -------
    states : torch.Tensor
        Converged storages after each day, ``[T, *batch, 5]`` (mm).
    stats : dict
        ``iterations_hist`` (count of system-days per number of Newton updates),
        ``max_iterations``, ``mean_iterations``, ``n_not_converged`` (basin-days, the first
        batch axis being the basin, where any component missed the tolerance),
        ``n_not_converged_systems``, ``max_residual`` (mm/day), the tolerances used, and
        ``iterations``: the Newton updates of every system-day, an integer tensor ``[T, *batch]``,
        and ``not_converged``: a boolean tensor ``[T, B]`` of the basin-days counted in
        ``n_not_converged``. A non-finite residual (NaN or inf in a state or a flux) is never
        counted as converged.

    Raises
    ------
    SolverError
        On malformed inputs or an unknown ``gradient``.
    """
    if gradient not in GRADIENT_METHODS:
        raise SolverError(f"gradient must be one of {GRADIENT_METHODS}, got {gradient!r}")
    params = _check_inputs(x, p, S0, capillary_rise)
    opts = (options or NewtonOptions()).resolved(S0.dtype, S0.device)
    x = Forcing(*(torch.as_tensor(v, dtype=S0.dtype, device=S0.device) for v in x))
    if gradient == "adjoint":
        setup = {"names": tuple(params), "capillary_rise": capillary_rise, "options": opts}
        states = _AdjointSequence.apply(setup, S0, *x, *params.values())
        raw = setup["raw"]
    else:
        consts = _time_constants(x, params, capillary_rise, S0.dim() - 1)
        states5, raw = _newton_sequence(S0, consts, x.P.shape[0], opts, capillary_rise)
        states = states5.movedim(1, -1)
    return states, _summarise(raw, opts)
