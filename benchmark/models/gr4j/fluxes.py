"""GR4J in continuous state-space form: storages, flux rates and the right-hand side (docs/gr4j.md).

After Santos et al. (2018, GMD 11:1591, "State-Space GR4"): the production store S and the
routing store R are ODEs whose rates are the derivatives of GR4J's daily formulas, and the two
unit hydrographs are Nash cascades (chains of linear stores). HBV's snow routine
(:mod:`benchmark.models.snow`) sits in front, so that the structure works on snowy basins.

Storages (mm), last axis: SNOW, MELT, PROD (S), UH1_1..UH1_11, UH2_1..UH2_8, ROUT (R).
Rates (mm/day), with liquid input Pl = rain + snowpack release and PET E:

- interception: Pn = max(Pl - E, 0), En = max(E - Pl, 0), Ei = Pl - Pn;
- production store, s = min(max(S/X1, 0), 1): Ps = Pn (1 - s²), Es = En s (2 - s),
  Perc = PERC_COEF X1 s⁵; dS/dt = Ps - Es - Perc;
- effective rainfall Pr = Pn - Ps + Perc, 90 % into UH1, 10 % into UH2;
- each cascade: store i drains at k·H_i into store i + 1, k = N / (mean travel time); the last
  store's outflow is Q9 (UH1) or Q1 (UH2);
- routing store, r = max(R, 0)/X3: exchange F = X2 r^3.5, outflow Qr = X3/4 r⁵,
  dR/dt = Q9 + F - Qr;
- direct flow Qd = max(Q1 + F, 0); streamflow Q = Qr + Qd; ET = Ei + Es;
- water exchanged with the outside: F + (Qd - Q1), so dΣS/dt = P - ET - Q + exchange.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from benchmark.models.base import Forcing, Params
from benchmark.models.gr4j.parameters import (
    EXCHANGE_EXPONENT, N_UH1, N_UH2, PERC_COEF, ROUTING_EXPONENT, UH1_MEAN, UH1_SHARE, UH2_MEAN,
)
from benchmark.models.snow import snow_forcing, snow_rates, snow_tendency

STORAGES: tuple[str, ...] = (
    "SNOW", "MELT", "PROD", *(f"UH1_{i + 1}" for i in range(N_UH1)), *(f"UH2_{i + 1}" for i in range(N_UH2)), "ROUT",
)
I_SNOW, I_MELT, I_PROD = 0, 1, 2
UH1 = slice(3, 3 + N_UH1)
UH2 = slice(UH1.stop, UH1.stop + N_UH2)
I_ROUT = UH2.stop

REPORTED_FLUXES: tuple[str, ...] = ("Qr", "Qd", "ET", "Ps", "Perc", "exchange")
"""Daily fluxes every scheme returns (mm/day): routing-store outflow, direct flow, actual ET,
rain entering the production store, percolation, water gained from (+) or lost to (-) outside."""


def cascade_rates(X4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drainage rates (1/day) of the UH1 and UH2 cascades for a time base X4 (days).

    Each cascade has the mean travel time of the unit hydrograph it stands for (5/7 X4 for UH1,
    X4 for UH2); with N stores of rate k the mean is N/k.
    """
    return N_UH1 / (UH1_MEAN * X4), N_UH2 / (UH2_MEAN * X4)


def interception(liquid: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Net rainfall Pn, net PET En and interception evaporation Ei (mm/day) from liquid input and PET."""
    pn = torch.relu(liquid - pet)
    en = torch.relu(pet - liquid)
    return pn, en, liquid - pn


class ProductionRates(NamedTuple):
    s: torch.Tensor  # S / X1 in [0, 1]
    Ps: torch.Tensor
    Es: torch.Tensor
    Perc: torch.Tensor


def production_rates(prod: torch.Tensor, pn: torch.Tensor, en: torch.Tensor, X1: torch.Tensor) -> ProductionRates:
    """Rain into, evaporation from and percolation out of the production store (mm/day) at S = ``prod`` (mm)."""
    s = (prod / X1).clamp(0.0, 1.0)
    return ProductionRates(s, pn * (1.0 - s * s), en * s * (2.0 - s), PERC_COEF * X1 * s.pow(5))


class RoutingRates(NamedTuple):
    r: torch.Tensor  # max(R, 0) / X3
    F: torch.Tensor
    Qr: torch.Tensor


def routing_rates(rout: torch.Tensor, X2: torch.Tensor, X3: torch.Tensor) -> RoutingRates:
    """Groundwater exchange F and outflow Qr of the routing store (mm/day) at R = ``rout`` (mm)."""
    r = rout.clamp_min(0.0) / X3
    return RoutingRates(r, X2 * r.pow(EXCHANGE_EXPONENT), 0.25 * X3 * r.pow(ROUTING_EXPONENT))


def fluxes(S: torch.Tensor, x: Forcing, p: Params) -> dict[str, torch.Tensor]:
    """Every flux rate (mm/day) at storages ``S`` ``[..., 23]``; cascade outflows ``[..., N]``."""
    snow = snow_forcing(x.P, x.T, p["TT"], p["CFMAX"], p["CFR"])
    sr = snow_rates(S[..., I_SNOW].clamp_min(0.0), S[..., I_MELT].clamp_min(0.0), snow.melt_pot, snow.refreeze_pot,
                    p["CWH"])
    pn, en, ei = interception(snow.rain + sr.to_soil, x.PET)
    prod = production_rates(S[..., I_PROD].clamp_min(0.0), pn, en, p["X1"])
    k1, k2 = cascade_rates(p["X4"])
    uh1_out = k1.unsqueeze(-1) * S[..., UH1].clamp_min(0.0)
    uh2_out = k2.unsqueeze(-1) * S[..., UH2].clamp_min(0.0)
    rout = routing_rates(S[..., I_ROUT], p["X2"], p["X3"])
    q1 = uh2_out[..., -1]
    qd = torch.relu(q1 + rout.F)
    return {
        "snowfall": snow.snowfall, "rain": snow.rain, "melt": sr.melt, "refreeze": sr.refreeze, "to_soil": sr.to_soil,
        "Pn": pn, "En": en, "Ei": ei, "Ps": prod.Ps, "Es": prod.Es, "Perc": prod.Perc,
        "Pr": pn - prod.Ps + prod.Perc, "uh1_out": uh1_out, "uh2_out": uh2_out, "Q9": uh1_out[..., -1], "Q1": q1,
        "F": rout.F, "Qr": rout.Qr, "Qd": qd, "ET": ei + prod.Es, "exchange": rout.F + (qd - q1),
    }


def _cascade_tendency(inflow: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """d/dt of a cascade's stores: each receives the previous store's outflow (the first: ``inflow``)."""
    return torch.cat((inflow.unsqueeze(-1), out[..., :-1]), dim=-1) - out


def tendency(f: dict[str, torch.Tensor]) -> torch.Tensor:
    """dS/dt (mm/day) ``[..., 23]`` from the flux rates of :func:`fluxes`."""
    d_snow, d_melt = snow_tendency(f["snowfall"], f["melt"], f["refreeze"], f["to_soil"])
    d_prod = f["Ps"] - f["Es"] - f["Perc"]
    d_uh1 = _cascade_tendency(UH1_SHARE * f["Pr"], f["uh1_out"])
    d_uh2 = _cascade_tendency((1.0 - UH1_SHARE) * f["Pr"], f["uh2_out"])
    d_rout = f["Q9"] + f["F"] - f["Qr"]
    return torch.cat((torch.stack((d_snow, d_melt, d_prod), dim=-1), d_uh1, d_uh2, d_rout.unsqueeze(-1)), dim=-1)


def rhs(S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
    """The ODE right-hand side f(S) = dS/dt (mm/day), ``[..., 23]``."""
    return tendency(fluxes(S, x, p))
