"""GR4J's backward-Euler day solved by elimination: the fast path of :mod:`benchmark.solvers.implicit`.

The day's equations G(S) = S - S_prev - f(S) = 0 are block lower triangular in the order
snow -> production store -> cascades -> routing store, and only two of them are nonlinear
in a single unknown:

1. SNOW, MELT: the piecewise-linear snow block solved exactly (:mod:`benchmark.models.snow`);
2. PROD: scalar safeguarded Newton, G_PROD increasing in S (the liquid input is now known);
3. the cascades: linear given the effective rainfall, solved exactly (:func:`cascade_day`; a
   cascade of stores with time constants 1/k << 1 day is smoothed by backward Euler's
   numerical diffusion, see docs/gr4j.md);
4. ROUT: scalar safeguarded Newton (the inflow Q9 is now known).

This is Newton's method on the reduced system, with the same solution as Newton on all 23
storages (a test checks it against the dense solve). Everything else — the full residual for
the statistics, the Newton iterations of unrolled autograd, the adjoint — is the generic dense
system with the ``torch.func`` Jacobian: GR4J has no closed-form Jacobian.
"""

from __future__ import annotations

import torch

from benchmark.models.gr4j.fluxes import (
    I_MELT, I_PROD, I_ROUT, I_SNOW, UH1, UH2, cascade_rates, interception, production_rates, routing_rates,
)
from benchmark.models.gr4j.parameters import (
    EXCHANGE_EXPONENT, N_UH1, N_UH2, PERC_COEF, ROUTING_EXPONENT, UH1_SHARE,
)
from benchmark.models.snow import backward_euler_snow, snow_forcing
from benchmark.solvers.dense import DenseSystem
from benchmark.solvers.newton import NewtonOptions, march_days, scalar_newton


def cascade_matrix(k: torch.Tensor, n: int) -> torch.Tensor:
    """The backward-Euler day of a cascade of ``n`` stores of rate ``k`` (1/day) as a matrix ``[..., n, n]``.

    Store i after the day: H_i = (H_i,prev + k H_(i-1)) / (1 + k) (the first store takes the
    day's inflow instead of k H_0): lower triangular, M_ij = r^(i-j) / (1 + k), r = k / (1 + k).
    """
    steps = torch.arange(n, device=k.device)
    lag = steps.unsqueeze(-1) - steps  # i - j
    r = (k / (1.0 + k)).unsqueeze(-1).unsqueeze(-1)
    powers = r.pow(lag.clamp_min(0).to(k.dtype)) / (1.0 + k).unsqueeze(-1).unsqueeze(-1)
    return torch.where(lag >= 0, powers, torch.zeros((), dtype=k.dtype, device=k.device))


def cascade_day(stores: torch.Tensor, inflow: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """A cascade's stores ``[..., n]`` (mm) after one backward-Euler day with ``inflow`` (mm/day) into store 1."""
    filled = torch.cat((stores[..., :1] + inflow.unsqueeze(-1), stores[..., 1:]), dim=-1)
    return (matrix @ filled.unsqueeze(-1)).squeeze(-1)


class GR4JImplicitSystem(DenseSystem):
    """The dense backward-Euler system of GR4J with an eliminated day solve."""

    can_eliminate = True

    def eliminated(self, S0: torch.Tensor, n_days: int, options: NewtonOptions
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """States ``[T, 23, *batch]``, Newton updates (the larger of the two scalar solves) and
        still-active masks ``[T, *batch]``."""
        x, p = self.x, self.p
        batch = S0.shape[:-1]
        device = S0.device
        snow = snow_forcing(x.P, x.T, p["TT"], p["CFMAX"], p["CFR"])
        any_refreeze = (snow.refreeze_pot > 0.0).flatten(1).any(1).expand(n_days).tolist()
        k1, k2 = cascade_rates(p["X4"])
        m1, m2 = cascade_matrix(k1, N_UH1), cascade_matrix(k2, N_UH2)

        def day(v: torch.Tensor, t: int) -> torch.Tensor:
            return v[0] if v.shape[0] == 1 else v[t]

        states = torch.empty((n_days, S0.shape[-1], *batch), dtype=S0.dtype, device=device)
        iterations = torch.empty((n_days, *batch), dtype=torch.int32, device=device)
        not_conv = torch.empty((n_days, *batch), dtype=torch.bool, device=device)
        zero_iters = torch.zeros(batch, dtype=torch.int32, device=device)
        all_active = torch.ones(batch, dtype=torch.bool, device=device)
        no_residual = torch.full(batch, torch.inf, dtype=S0.dtype, device=device)

        def day_step(t: int, prev: torch.Tensor, updates: int | None):
            sf = type(snow)(*(day(v, t) for v in snow))
            X1, X2, X3, cwh = (day(p[name], t) for name in ("X1", "X2", "X3", "CWH"))
            snow_t, melt_t = backward_euler_snow(prev[..., I_SNOW], prev[..., I_MELT], sf, cwh, any_refreeze[t])
            pn, en, _ = interception(sf.rain + (melt_t - cwh * snow_t).clamp_min(0.0), day(x.PET, t))
            prod, (_, ps, _, perc), it_prod, active_prod = _production_newton(
                prev[..., I_PROD], pn, en, X1, options, zero_iters, all_active, no_residual, updates)
            pr = pn - ps + perc
            uh1 = cascade_day(prev[..., UH1], UH1_SHARE * pr, day(m1, t))
            uh2 = cascade_day(prev[..., UH2], (1.0 - UH1_SHARE) * pr, day(m2, t))
            q9 = day(k1, t) * uh1[..., -1]
            rout, _, it_rout, active_rout = _routing_newton(prev[..., I_ROUT], q9, X2, X3, options, zero_iters,
                                                            all_active, no_residual, updates)
            new = torch.cat((torch.stack((snow_t, melt_t, prod), dim=-1), uh1, uh2, rout.unsqueeze(-1)), dim=-1)
            states[t] = new.movedim(-1, 0)
            return new, torch.maximum(it_prod, it_rout), active_prod | active_rout

        march_days(day_step, S0.clamp_min(0.0), n_days, options, iterations, not_conv)
        return states, iterations, not_conv


def _production_newton(prev, pn, en, X1, options, zero_iters, all_active, no_residual, updates=None):
    """S from S - S_prev - (Ps(S) - Es(S) - Perc(S)) = 0 (dt = 1 day), increasing in S."""
    def residual(prod: torch.Tensor):
        rates = production_rates(prod, pn, en, X1)
        return prod - prev - (rates.Ps - rates.Es - rates.Perc), rates

    def slope(prod: torch.Tensor, rates) -> torch.Tensor:
        s = rates.s
        inside = (prod >= 0.0) & (prod <= X1)  # where s = S / X1 is not clipped
        ds = 2.0 * pn * s + en * (2.0 - 2.0 * s) + 5.0 * PERC_COEF * X1 * s.pow(4)
        return 1.0 + torch.where(inside, ds / X1, 0.0)

    return scalar_newton(residual, slope, prev, options, zero_iters, all_active, no_residual, updates)


def _routing_newton(prev, q9, X2, X3, options, zero_iters, all_active, no_residual, updates=None):
    """R from R - R_prev - (Q9 + F(R) - Qr(R)) = 0 (dt = 1 day); increasing in R over GR4J's ranges."""
    def residual(rout: torch.Tensor):
        rates = routing_rates(rout, X2, X3)
        return rout - prev - (q9 + rates.F - rates.Qr), rates

    def slope(rout: torch.Tensor, rates) -> torch.Tensor:
        r = rates.r
        d = (0.25 * ROUTING_EXPONENT * r.pow(ROUTING_EXPONENT - 1.0)
             - EXCHANGE_EXPONENT * X2 * r.pow(EXCHANGE_EXPONENT - 1.0) / X3)
        return 1.0 + torch.where(rout > 0.0, d, 0.0)

    return scalar_newton(residual, slope, prev, options, zero_iters, all_active, no_residual, updates)
