"""A small, kink-free backward-Euler problem for gradient tests of the implicit solver.

Three basins, six days alternating thaw and frost over a 60 mm snowpack: every process of
the RHS is active (snowfall, melt, refreezing, release of meltwater, recharge, ET,
percolation, Q0 above UZL, Q1, Q2, capillary rise) and every state stays away from the kinks
of f (melt < SNOW, refreezing < MELT, MELT > CWH * SNOW, SM < LP * FC < FC, SUZ > PERC and
SUZ > UZL, SM < NDC * FC), so the solution is a smooth function of every input and finite
differences are meaningful. Parameters and forcing get a seeded +-10 % jitter per basin.
"""

from __future__ import annotations

import torch

from benchmark.models.hbv import Forcing

N_BASINS = 3
TEMPERATURE_C = (3.0, -2.0, 4.0, -1.0, 5.0, -2.0)
PRECIP_MM = (4.0, 8.0, 1.0, 6.0, 2.0, 5.0)
PET_MM = (1.5, 0.5, 2.0, 1.0, 2.5, 0.8)
INITIAL_STATE_MM = (60.0, 6.0, 120.0, 25.0, 40.0)  # SNOW, MELT, SM, SUZ, SLZ
STATIC = {
    "TT": 0.0, "CFMAX": 2.0, "CFR": 0.02, "CWH": 0.01, "LP": 0.7, "PERC": 2.0, "UZL": 5.0,
    "K0": 0.1, "K1": 0.05, "K2": 0.05, "C": 0.2, "NDC": 0.6,
}
DYNAMIC = {"BETA": 2.0, "BETAET": 1.5, "FC": 300.0}


def problem(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu", n_days: int = 6,
            seed: int = 0) -> tuple[Forcing, dict[str, torch.Tensor], torch.Tensor]:
    """Forcing ``[T, B]``, parameters (static ``[B]``, BETA/BETAET/FC dynamic ``[T, B]``), S0 ``[B, 5]``."""
    g = torch.Generator().manual_seed(seed)

    def jitter(value: float, shape: tuple[int, ...]) -> torch.Tensor:
        return value * (1.0 + 0.1 * (2.0 * torch.rand(shape, generator=g, dtype=torch.float64) - 1.0))

    shape_t = (n_days, N_BASINS)
    temps = torch.tensor(TEMPERATURE_C[:n_days], dtype=torch.float64)[:, None]
    x = Forcing(
        torch.stack([jitter(v, (N_BASINS,)) for v in PRECIP_MM[:n_days]]),
        temps + 0.3 * (2.0 * torch.rand(shape_t, generator=g, dtype=torch.float64) - 1.0),
        torch.stack([jitter(v, (N_BASINS,)) for v in PET_MM[:n_days]]),
    )
    p = {name: jitter(v, (N_BASINS,)) for name, v in STATIC.items()}
    p["TT"] = 0.2 * (2.0 * torch.rand(N_BASINS, generator=g, dtype=torch.float64) - 1.0)
    p.update({name: jitter(v, shape_t) for name, v in DYNAMIC.items()})
    S0 = torch.stack([jitter(v, (N_BASINS,)) for v in INITIAL_STATE_MM], dim=-1)

    def to(v: torch.Tensor) -> torch.Tensor:
        return v.to(dtype=dtype, device=device)

    return Forcing(*(to(v) for v in x)), {k: to(v) for k, v in p.items()}, to(S0)
