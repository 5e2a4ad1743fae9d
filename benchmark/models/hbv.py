"""The HBV model as fluxes and storages (Song et al. 2024, eqs. 3-20; docs/model.md#fluxes).

This module says *what* the model is: five storages and the flux rates between them.
*How* it is integrated in time (sequential operator splitting, explicit Euler, RK4,
backward Euler) lives in :mod:`benchmark.solvers`.

Shapes: every function is elementwise over arbitrary leading batch dimensions (typically
``[basins, nmul]``). Storages are stacked on the last axis in the order of :data:`STORAGES`.
Units: storages in mm, flux rates in mm/day, temperature in degC.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch

STORAGES: tuple[str, ...] = ("SNOW", "MELT", "SM", "SUZ", "SLZ")
"""Snowpack, liquid water in the snowpack, soil moisture, upper and lower subsurface zone (mm)."""

N_STORAGES = len(STORAGES)
SM_FLOOR = 1e-8
"""Soil moisture is clipped from below at this value (mm) inside the RHS, to keep powers finite."""

Params = Mapping[str, torch.Tensor]


class Forcing(NamedTuple):
    """Daily forcing of one time step: precipitation (mm/d), mean temperature (degC), PET (mm/d)."""

    P: torch.Tensor
    T: torch.Tensor
    PET: torch.Tensor


class Fluxes(NamedTuple):
    """All flux rates of the RHS (mm/day)."""

    snowfall: torch.Tensor
    rain: torch.Tensor
    melt: torch.Tensor
    refreeze: torch.Tensor
    to_soil: torch.Tensor
    recharge: torch.Tensor
    excess: torch.Tensor
    ET: torch.Tensor
    perc: torch.Tensor
    Q0: torch.Tensor
    Q1: torch.Tensor
    Q2: torch.Tensor
    capillary: torch.Tensor


def clip_storages(S: torch.Tensor) -> torch.Tensor:
    """Storages as seen by the RHS: non-negative, soil moisture at least :data:`SM_FLOOR` (mm)."""
    snow, melt, sm, suz, slz = S.unbind(-1)
    return torch.stack(
        (snow.clamp_min(0.0), melt.clamp_min(0.0), sm.clamp_min(SM_FLOOR), suz.clamp_min(0.0), slz.clamp_min(0.0)),
        dim=-1,
    )


def fluxes(S: torch.Tensor, x: Forcing, p: Params, *, capillary_rise: bool) -> Fluxes:
    """Flux rates (mm/day) for storages ``S`` (mm, last axis :data:`STORAGES`).

    Parameters
    ----------
    S
        Storages, shape ``[..., 5]``; clipped with :func:`clip_storages` before use.
    x
        Forcing broadcastable to ``S.shape[:-1]``.
    p
        Physical parameters by name (docs/model.md#parameters), each broadcastable to ``S.shape[:-1]``.
        ``NDC`` defaults to 1 when absent (the sequential improved model).
    capillary_rise
        Whether to include the capillary rise from the lower zone (eq. 14).
    """
    snow, meltwater, sm, suz, slz = clip_storages(S).unbind(-1)
    is_snow = (x.T < p["TT"]).to(x.P.dtype)
    snowfall = x.P * is_snow
    rain = x.P - snowfall
    melt = torch.minimum((p["CFMAX"] * (x.T - p["TT"])).clamp_min(0.0), snow)
    refreeze = torch.minimum((p["CFR"] * p["CFMAX"] * (p["TT"] - x.T)).clamp_min(0.0), meltwater)
    to_soil = (meltwater - p["CWH"] * snow).clamp_min(0.0)
    fc = p["FC"]
    recharge = (rain + to_soil) * (sm / fc).pow(p["BETA"]).clamp(0.0, 1.0)
    excess = (sm - fc).clamp_min(0.0)
    et = torch.minimum(sm, x.PET * (sm / (p["LP"] * fc)).pow(p["BETAET"]).clamp(0.0, 1.0))
    perc = torch.minimum(suz, p["PERC"] * torch.ones_like(suz))
    q0 = p["K0"] * (suz - p["UZL"]).clamp_min(0.0)
    q1 = p["K1"] * suz
    q2 = p["K2"] * slz
    if capillary_rise:
        ndc = p["NDC"] if "NDC" in p else 1.0
        capillary = p["C"] * slz * (1.0 - torch.clamp(sm / (ndc * fc), max=1.0))
    else:
        capillary = torch.zeros_like(slz)
    return Fluxes(snowfall, rain, melt, refreeze, to_soil, recharge, excess, et, perc, q0, q1, q2, capillary)


def storage_tendency(f: Fluxes) -> torch.Tensor:
    """dS/dt (mm/day) from flux rates, stacked ``[..., 5]``; conserves mass: sum = P - ET - Q'."""
    d_snow = f.snowfall + f.refreeze - f.melt
    d_melt = f.melt - f.refreeze - f.to_soil
    d_sm = f.to_soil + f.rain - f.recharge - f.excess - f.ET + f.capillary
    d_suz = f.recharge + f.excess - f.perc - f.Q0 - f.Q1
    d_slz = f.perc - f.Q2 - f.capillary
    return torch.stack((d_snow, d_melt, d_sm, d_suz, d_slz), dim=-1)


def rhs(S: torch.Tensor, x: Forcing, p: Params, *, capillary_rise: bool) -> torch.Tensor:
    """The ODE right-hand side f(S) = dS/dt (mm/day), shape ``[..., 5]``."""
    return storage_tendency(fluxes(S, x, p, capillary_rise=capillary_rise))
