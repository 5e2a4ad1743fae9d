"""Fixed-step explicit schemes on any structure's right-hand side: Euler with sub-daily steps and RK4.

The ODE dS/dt = f(S) (:meth:`~benchmark.models.base.Structure.rhs`) is integrated with a fixed
step Δt = 1/substeps day (explicit Euler, Table A2: 1 d, 4 h, 1 h) or with classical
fourth-order Runge-Kutta steps. Forcing and parameters are held constant within the day. A
day's flux is the step-weighted sum of the rates used in the update (Euler: Σ Δt·F(S_k); RK4:
(F1 + 2F2 + 2F3 + F4)/6), so the storages change by exactly the day's net flux: the scheme
conserves mass up to rounding, in the *unclipped* storages. See docs/schemes.md.

Storages are not clipped between steps (the RHS clips its own view of them), so a stiff
structure at a long step may produce negative storages — for HBV at 1-day Euler steps this is
the instability the paper reports.

Sub-daily rates: every flux of the RHS is a rate in mm/day evaluated at the current storages,
including limiters such as HBV's Perc = min(SUZ, PERC), ET = min(SM, ·) and melt = min(·, SNOW):
a limiter caps the *rate* by the storage value in mm, not by the storage divided by Δt. This
matches the cross-check run in ``tests/reference/explicit_hbv*.csv`` to ~1e-6 mm/day; the
alternative min(SUZ/Δt, PERC) at 4 h steps is off from it by up to 0.14 mm/day (measured on
basin 01022500), so it is not what the reference did. With capillary rise the reference used
θNDC = 0.5 (mid-range); NDC absent from the parameters means NDC = 1.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.base import Forcing, Structure
from benchmark.solvers._daily import as_tensor, is_dynamic, per_day, require
from benchmark.solvers.base import TimeScheme
from benchmark.solvers.fused import kernel

NEGATIVE_STORAGE_MM = 1e-6
"""Storages below minus this (mm) count as negative in the explicit schemes' stats."""



def _rates(structure: Structure, S, x, p):
    """Storage tendency and the stacked reported flux rates at ``S`` (mm/day)."""
    f = structure.fluxes(S, x, p)
    reported = torch.stack([f[name] for name in structure.reported_fluxes], dim=0)
    return structure.tendency(f), reported


def _euler_day(structure: Structure, S, x, p, substeps: int):
    """One day of explicit Euler with ``substeps`` equal steps; returns (S, day fluxes)."""
    dt = 1.0 / substeps
    total = None
    for _ in range(substeps):
        dS, rates = _rates(structure, S, x, p)
        S = S + dt * dS
        total = rates if total is None else total + rates
    return S, total * dt


def _rk4_day(structure: Structure, S, x, p, substeps: int):
    """One day of classical RK4 with ``substeps`` equal steps; returns (S, day fluxes)."""
    dt = 1.0 / substeps
    total = None
    for _ in range(substeps):
        k1, r1 = _rates(structure, S, x, p)
        k2, r2 = _rates(structure, S + (0.5 * dt) * k1, x, p)
        k3, r3 = _rates(structure, S + (0.5 * dt) * k2, x, p)
        k4, r4 = _rates(structure, S + dt * k3, x, p)
        S = S + (dt / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        rates = r1 + 2.0 * (r2 + r3) + r4
        total = rates if total is None else total + rates
    return S, total * (dt / 6.0)


class _FixedStep(TimeScheme):
    """A fixed-step explicit scheme with ``substeps`` equal steps per day.

    Parameters
    ----------
    substeps
        Equal steps per day (Euler 1 d / 4 h / 1 h: 1 / 6 / 24).
    compile
        Wrap the per-day update in ``torch.compile`` (off by default).
    """

    gradients = ("autograd",)
    _day: Callable

    def __init__(self, substeps: int = 1, *, compile: bool = False) -> None:
        if isinstance(substeps, bool) or not isinstance(substeps, int) or substeps < 1:
            raise ConfigError(f"explicit scheme: substeps must be a positive integer, got {substeps!r}")
        self.substeps = substeps
        self.compile = bool(compile)

    def integrate(self, structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor,
                  gradient: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        n_days = x.P.shape[0]
        rank = S0.dim()
        params = {name: as_tensor(p[name], S0) for name in structure.parameter_names}
        daily_params = {name: per_day(v, n_days, is_dynamic(v, rank)) for name, v in params.items()}
        daily_forcing = [per_day(v, n_days, True) for v in (x.P, x.T, x.PET)]

        day_fn = kernel(type(self)._day, type(self)._day, fullgraph=False) if self.compile else type(self)._day
        S = S0
        state_hist: list[torch.Tensor] = []
        flux_hist: list[torch.Tensor] = []
        for t in range(n_days):
            x_t = Forcing(daily_forcing[0][t], daily_forcing[1][t], daily_forcing[2][t])
            p_t = {name: seq[t] for name, seq in daily_params.items()}
            S, day_fluxes = day_fn(structure, S, x_t, p_t, self.substeps)
            state_hist.append(S)
            flux_hist.append(day_fluxes)
        states = torch.stack(state_hist, dim=0)
        stacked = torch.stack(flux_hist, dim=1)  # [n_fluxes, T, ...]
        # storages of an explicit scheme may go negative (the 1-day Euler instability): count the
        # basin-component-days with a storage below -NEGATIVE_STORAGE_MM (0-d tensor, no sync)
        stats = {"n_negative_storage": (states.detach().amin(-1) < -NEGATIVE_STORAGE_MM).sum()}
        return states, dict(zip(structure.reported_fluxes, stacked.unbind(0))), stats


class ExplicitEuler(_FixedStep):
    """Explicit (forward) Euler with ``substeps`` equal steps per day."""

    name = "euler"
    description = "explicit Euler"
    _day = staticmethod(_euler_day)


class RungeKutta4(_FixedStep):
    """Classical fourth-order Runge-Kutta with ``substeps`` equal steps per day."""

    name = "rk4"
    description = "explicit RK4"
    _day = staticmethod(_rk4_day)


METHODS = {"euler": ExplicitEuler, "rk4": RungeKutta4}


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
    """HBV through :class:`ExplicitEuler` (``method="euler"``) or :class:`RungeKutta4` (``"rk4"``).

    ``p`` holds HBV's parameters (``C``, and optionally ``NDC``, default 1, with
    ``capillary_rise``); returns the end-of-day storages ``[T, ..., 5]`` (mm, unclipped: may be
    negative) and the daily fluxes of :data:`benchmark.models.hbv.REPORTED_FLUXES` (mm/day).
    """
    from benchmark.models.hbv import HBV

    if method not in METHODS:
        raise ConfigError(f"explicit scheme: unknown method {method!r}; expected one of {tuple(METHODS)}")
    scheme = METHODS[method](substeps, compile=compile)
    structure = HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise and "NDC" in p)
    require(p, structure.parameter_names, f"explicit {method} scheme")
    states, fluxes, _ = scheme.integrate(structure, x, p, S0, scheme.check(structure, "autograd"))
    return states, fluxes
