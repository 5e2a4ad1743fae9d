"""Fixed-step explicit schemes on the HBV right-hand side: Euler with sub-daily steps and RK4.

The ODE dS/dt = f(S) of docs/model.md#right-hand-side-and-mass-balance (:func:`benchmark.models.hbv.fluxes`) is
integrated with a fixed step Δt = 1/substeps day (explicit Euler, Table A2: 1 d, 4 h, 1 h)
or with one classical fourth-order Runge-Kutta step per day. Forcing and parameters are
held constant within the day. A day's flux is the step-weighted sum of the rates used in the
update (Euler: Σ Δt·F(S_k); RK4: (F1 + 2F2 + 2F3 + F4)/6), so the storages change by exactly
P − ET − Q' per day: the scheme conserves mass up to rounding, in the *unclipped* storages.

Storages are not clipped between steps (the RHS clips its own view of them), so the
1-day Euler scheme may produce negative storages — this is the instability the paper reports.

Sub-daily rates: every flux of the RHS is a rate in mm/day evaluated at the current storages,
including the limiters Perc = min(SUZ, PERC), ET = min(SM, ·) and melt = min(·, SNOW): a
limiter caps the *rate* by the storage value in mm, not by the storage divided by Δt. This
matches the cross-check run in ``tests/reference/explicit_hbv*.csv`` to ~1e-6 mm/day; the
alternative min(SUZ/Δt, PERC) at 4 h steps is off from it by up to 0.14 mm/day (measured on
basin 01022500), so it is not what the reference did. With capillary rise the reference used
θNDC = 0.5 (mid-range); NDC absent from the parameters means NDC = 1.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.hbv import Forcing, fluxes, storage_tendency
from benchmark.solvers._daily import as_tensor, is_dynamic, per_day, require

EXPLICIT_PARAMETERS: tuple[str, ...] = (
    "BETA", "FC", "K0", "K1", "K2", "LP", "PERC", "UZL", "TT", "CFMAX", "CFR", "CWH", "BETAET",
)

FLUX_NAMES: tuple[str, ...] = ("Q0", "Q1", "Q2", "ET", "recharge", "excess", "perc", "capillary")
"""Daily fluxes (mm/day) returned by :func:`integrate_explicit`, in this order."""

METHODS = ("euler", "rk4")


def _rates(S, x, p, capillary_rise):
    """Storage tendency and the stacked reported flux rates at ``S`` (mm/day)."""
    f = fluxes(S, x, p, capillary_rise=capillary_rise)
    reported = torch.stack((f.Q0, f.Q1, f.Q2, f.ET, f.recharge, f.excess, f.perc, f.capillary), dim=0)
    return storage_tendency(f), reported


def _euler_day(S, x, p, capillary_rise: bool, substeps: int):
    """One day of explicit Euler with ``substeps`` equal steps; returns (S, day fluxes)."""
    dt = 1.0 / substeps
    total = None
    for _ in range(substeps):
        dS, rates = _rates(S, x, p, capillary_rise)
        S = S + dt * dS
        total = rates if total is None else total + rates
    return S, total * dt


def _rk4_day(S, x, p, capillary_rise: bool, substeps: int):
    """One day of classical RK4 with ``substeps`` equal steps; returns (S, day fluxes)."""
    dt = 1.0 / substeps
    total = None
    for _ in range(substeps):
        k1, r1 = _rates(S, x, p, capillary_rise)
        k2, r2 = _rates(S + (0.5 * dt) * k1, x, p, capillary_rise)
        k3, r3 = _rates(S + (0.5 * dt) * k2, x, p, capillary_rise)
        k4, r4 = _rates(S + dt * k3, x, p, capillary_rise)
        S = S + (dt / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        rates = r1 + 2.0 * (r2 + r3) + r4
        total = rates if total is None else total + rates
    return S, total * (dt / 6.0)


_COMPILED: dict[tuple, Callable] = {}


def _day_function(method: str, compile: bool) -> Callable:
    day = _euler_day if method == "euler" else _rk4_day
    if not compile:
        return day
    if method not in _COMPILED:
        _COMPILED[method] = torch.compile(day, dynamic=False)
    return _COMPILED[method]


def integrate_explicit(
    x: Forcing,
    p: Mapping[str, torch.Tensor | float],
    S0: torch.Tensor,
    *,
    capillary_rise: bool,
    method: str = "euler",
    substeps: int = 1,
    compile: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Integrate the HBV ODE with fixed-step explicit Euler or RK4.

    Parameters
    ----------
    x
        Daily forcing, each ``[T, ...]`` broadcastable against the batch shape of ``S0``:
        P (mm/day), mean temperature (degC), PET (mm/day).
    p
        Physical parameters by name (docs/model.md#parameters); each static (``[...]`` or a float) or dynamic
        (``[T, ...]``). ``C`` (and optionally ``NDC``, default 1) with ``capillary_rise``.
    S0
        Initial storages ``[..., 5]`` (mm).
    capillary_rise
        Include the capillary-rise flux of the "improved" model.
    method
        ``"euler"`` or ``"rk4"``.
    substeps
        Equal steps per day (Euler 1 d / 4 h / 1 h: 1 / 6 / 24).
    compile
        Wrap the per-day update in ``torch.compile`` (off by default).

    Returns
    -------
    states
        End-of-day storages ``[T, ..., 5]`` (mm), unclipped (may be negative).
    fluxes
        Daily fluxes (mm/day) by the names of :data:`FLUX_NAMES`, each ``[T, ...]``.
    """
    if method not in METHODS:
        raise ConfigError(f"explicit scheme: unknown method {method!r}; expected one of {METHODS}")
    if not isinstance(substeps, int) or substeps < 1:
        raise ConfigError(f"explicit scheme: substeps must be a positive integer, got {substeps!r}")
    names = EXPLICIT_PARAMETERS + (("C",) if capillary_rise else ())
    require(p, names, f"explicit {method}")
    used = names + (("NDC",) if capillary_rise and "NDC" in p else ())
    n_days = x.P.shape[0]
    rank = S0.dim()
    params = {name: as_tensor(p[name], S0) for name in used}
    daily_params = {name: per_day(v, n_days, is_dynamic(v, rank)) for name, v in params.items()}
    daily_forcing = [per_day(v, n_days, True) for v in (x.P, x.T, x.PET)]

    day_fn = _day_function(method, compile)
    S = S0
    state_hist: list[torch.Tensor] = []
    flux_hist: list[torch.Tensor] = []
    for t in range(n_days):
        x_t = Forcing(daily_forcing[0][t], daily_forcing[1][t], daily_forcing[2][t])
        p_t = {name: seq[t] for name, seq in daily_params.items()}
        S, day_fluxes = day_fn(S, x_t, p_t, capillary_rise, substeps)
        state_hist.append(S)
        flux_hist.append(day_fluxes)
    states = torch.stack(state_hist, dim=0)
    stacked = torch.stack(flux_hist, dim=1)  # [n_fluxes, T, ...]
    return states, dict(zip(FLUX_NAMES, stacked.unbind(0)))
