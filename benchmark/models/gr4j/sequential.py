"""GR4J's operator-split daily update: the classic daily GR4J, with Nash-cascade unit hydrographs.

Per day, in this order (see docs/gr4j.md): HBV's snow routine (shared); interception; the
production store filled by Ps, emptied by Es, then drained by Perc, each sub-step the exact
solution over one day of its own ODE (GR4J's tanh formulas); the effective rainfall through the
two cascades, each solved exactly over the day for the day's constant inflow
(:func:`cascade_exact`); the routing store gains the exchange F at the start-of-day level, then
drains over the day by the exact solution of dR/dt = -Qr(R). Gradients: autograd through the
daily loop (no hand-written reverse pass).
"""

from __future__ import annotations

from typing import Mapping

import torch

from benchmark.models.base import Forcing, SplitDays
from benchmark.models.gr4j.fluxes import (
    I_MELT, I_PROD, I_ROUT, I_SNOW, REPORTED_FLUXES, UH1, UH2, cascade_rates, interception,
)
from benchmark.models.gr4j.parameters import EXCHANGE_EXPONENT, N_UH1, N_UH2, UH1_SHARE
from benchmark.models.snow import SnowForcing, snow_forcing, split_snow_day


_FORCING_TERMS = 5  # snowfall, rain, melt_pot, refreeze_pot, PET
_PARAMETERS = ("X1", "X2", "X3", "CWH")


def _production_day(prod: torch.Tensor, pn: torch.Tensor, en: torch.Tensor, X1: torch.Tensor):
    """GR4J's daily production store: (S, Ps, Es, Perc) after the day (mm, mm/day)."""
    s = (prod / X1).clamp(max=1.0)
    tp = torch.tanh(pn / X1)
    ps = X1 * (1.0 - s * s) * tp / (1.0 + s * tp)
    te = torch.tanh(en / X1)
    es = prod * (2.0 - s) * te / (1.0 + (1.0 - s) * te)
    prod = prod + ps - es
    perc = prod * (1.0 - (1.0 + (4.0 / 9.0 * prod / X1).pow(4)).pow(-0.25))
    return prod - perc, ps, es, perc


def cascade_exact(k: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact one-day solution of a cascade of ``n`` linear stores of rate ``k`` (1/day).

    With a constant inflow q (mm/day) into store 1, the stores after one day are
    ``H(1) = E H(0) + g q``: E_ij = e^-k k^(i-j) / (i-j)! (i >= j; the matrix exponential of
    the chain) and g_i = P(Poisson(k) > i) / k, i = 0..n-1 (the inflow's share still in store
    i + 1 at the end of the day). Returns ``(E [..., n, n], g [..., n])``.
    """
    steps = torch.arange(n, device=k.device)
    lag = steps.unsqueeze(-1) - steps  # i - j
    log_k = torch.log(k).unsqueeze(-1)
    m = steps.to(k.dtype)
    poisson = torch.exp(-k.unsqueeze(-1) + m * log_k - torch.lgamma(m + 1.0))  # P(Poisson(k) = m), [..., n]
    later = lag.clamp_min(0)
    E = torch.where(lag >= 0, poisson[..., later], torch.zeros((), dtype=k.dtype, device=k.device))
    g = (1.0 - torch.cumsum(poisson, dim=-1)) / k.unsqueeze(-1)
    return E, g


def _cascade(stores: torch.Tensor, inflow: torch.Tensor, E: torch.Tensor, g: torch.Tensor):
    """A cascade after one exact day: (stores, the day's outflow of its last store in mm/day)."""
    after = (E @ stores.unsqueeze(-1)).squeeze(-1) + g * inflow.unsqueeze(-1)
    return after, stores.sum(-1) + inflow - after.sum(-1)


def _step(state, day):
    """One day: (state, fluxes in the order of the structure's reported fluxes)."""
    snow, meltwater, prod, uh1, uh2, rout = state
    snowfall, rain, melt_pot, refreeze_pot, pet, X1, X2, X3, cwh, e1, g1, e2, g2 = day
    snow, meltwater, released, _ = split_snow_day(snow, meltwater, SnowForcing(snowfall, rain, melt_pot, refreeze_pot),
                                                  cwh)
    pn, en, ei = interception(rain + released, pet)
    prod, ps, es, perc = _production_day(prod, pn, en, X1)
    pr = pn - ps + perc
    uh1, q9 = _cascade(uh1, UH1_SHARE * pr, e1, g1)
    uh2, q1 = _cascade(uh2, (1.0 - UH1_SHARE) * pr, e2, g2)
    exchange = X2 * (rout / X3).pow(EXCHANGE_EXPONENT)
    filled = torch.relu(rout + q9 + exchange)
    qr = filled * (1.0 - (1.0 + (filled / X3).pow(4)).pow(-0.25))
    qd = torch.relu(q1 + exchange)
    gained = (filled - rout - q9) + (qd - q1)
    return (snow, meltwater, prod, uh1, uh2, filled - qr), (qr, qd, ei + es, ps, perc, gained)


def _unpack(S0: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (S0[..., I_SNOW], S0[..., I_MELT], S0[..., I_PROD], S0[..., UH1], S0[..., UH2], S0[..., I_ROUT])


def _pack(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
    snow, meltwater, prod, uh1, uh2, rout = state
    return torch.cat((torch.stack((snow, meltwater, prod), dim=-1), uh1, uh2, rout.unsqueeze(-1)), dim=-1)


def _stack(state_hist: list) -> torch.Tensor:
    return torch.stack([_pack(state) for state in state_hist], dim=0)


def split_days(x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor) -> SplitDays:
    """The operator-split update over the days of ``x`` (parameters static ``[...]`` or dynamic ``[T, ...]``)."""
    n_days = x.P.shape[0]
    rank = S0.dim()
    params = {k: torch.as_tensor(v, dtype=S0.dtype, device=S0.device) for k, v in p.items()}
    forcing = snow_forcing(x.P, x.T, params["TT"], params["CFMAX"], params["CFR"])
    full = (n_days,) + tuple(S0.shape[:-1])
    terms = [torch.broadcast_to(v, torch.broadcast_shapes(v.shape, full)) for v in (*forcing, x.PET)]
    k1, k2 = cascade_rates(params["X4"])
    x4_dynamic = params["X4"].dim() == rank
    inputs = terms + [params[name] for name in _PARAMETERS]
    inputs += [*cascade_exact(k1, N_UH1), *cascade_exact(k2, N_UH2)]
    dynamic = [True] * _FORCING_TERMS + [params[name].dim() == rank for name in _PARAMETERS] + [x4_dynamic] * 4
    return SplitDays(step=_step, inputs=inputs, dynamic=dynamic, flux_names=REPORTED_FLUXES, unpack=_unpack, stack=_stack)
