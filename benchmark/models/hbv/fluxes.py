"""HBV's storages and flux rates: the right-hand side dS/dt = f(S) (Song et al. 2024, eqs. 3-20).

This module says *what* the model is: five storages and the flux rates between them (see
docs/model.md). *How* it is stepped through time lives in :mod:`benchmark.solvers`; the
closed-form Jacobian in :mod:`benchmark.models.hbv.jacobian` differentiates the intermediates
computed here (:class:`Inner`), so the fluxes are written once.

Shapes: every function is elementwise over arbitrary leading batch dimensions (typically
``[basins, nmul]``). Storages are stacked on the last axis in the order of :data:`STORAGES`
(the Newton solver uses a storage-first layout: ``axis=0``). Units: storages in mm, flux
rates in mm/day, temperature in degC.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from benchmark.models.base import Forcing, Params
from benchmark.models.snow import snow_forcing, snow_rates, snow_tendency

STORAGES: tuple[str, ...] = ("SNOW", "MELT", "SM", "SUZ", "SLZ")
"""Snowpack, liquid water in the snowpack, soil moisture, upper and lower subsurface zone (mm)."""

N_STORAGES = len(STORAGES)
SM_FLOOR = 1e-8
"""Soil moisture is clipped from below at this value (mm) inside the RHS, to keep powers finite."""

REPORTED_FLUXES: tuple[str, ...] = ("Q0", "Q1", "Q2", "ET", "recharge", "excess", "perc", "capillary")
"""Daily fluxes every scheme returns (mm/day)."""


class Fluxes(NamedTuple):
    """All flux rates of the RHS (mm/day). ``capillary`` is None inside the kernel when the flux is off."""

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


class DayConstants(NamedTuple):
    """Storage-independent pieces of f, broadcastable to the batch (one day, or all days)."""

    snowfall: torch.Tensor
    rain: torch.Tensor
    melt_pot: torch.Tensor  # max(CFMAX (T - TT), 0), mm/day
    refreeze_pot: torch.Tensor  # max(CFR CFMAX (TT - T), 0), mm/day
    CWH: torch.Tensor
    FC: torch.Tensor
    BETA: torch.Tensor
    LP: torch.Tensor
    BETAET: torch.Tensor
    PET: torch.Tensor
    PERC: torch.Tensor
    UZL: torch.Tensor
    K0: torch.Tensor
    K1: torch.Tensor
    K2: torch.Tensor
    C: torch.Tensor
    NDC: torch.Tensor | float  # 1 when absent
    LPFC: torch.Tensor | None = None  # LP * FC (mm) when formed ahead (Newton), else None
    NDCFC: torch.Tensor | None = None  # NDC * FC (mm) likewise


def day_constants(x: Forcing, p: Params, capillary_rise: bool, *, products: bool = False) -> DayConstants:
    """The storage-independent terms of f from forcing and physical parameters.

    ``products``: form LP FC and NDC FC here, once for a sequence that evaluates f many times
    (Newton); otherwise they are formed where the fluxes use them. Either way the values are
    the same; the choice fixes the order in which autograd meets the uses of FC.
    """
    snow = snow_forcing(x.P, x.T, p["TT"], p["CFMAX"], p["CFR"])
    fc = p["FC"]
    if capillary_rise:
        c, ndc = p["C"], p["NDC"] if "NDC" in p else 1.0
    else:
        c = ndc = fc  # unused
    lpfc = ndcfc = None
    if products:
        ndcfc = (p["NDC"] * fc if "NDC" in p else fc) if capillary_rise else None
        lpfc = p["LP"] * fc
    return DayConstants(*snow, p["CWH"], fc, p["BETA"], p["LP"], p["BETAET"], x.PET, p["PERC"], p["UZL"],
                        p["K0"], p["K1"], p["K2"], c, ndc, lpfc, ndcfc)


def lp_fc(c: DayConstants) -> torch.Tensor:
    """LP FC (mm): the soil moisture above which ET runs at its potential rate."""
    return c.LP * c.FC if c.LPFC is None else c.LPFC


def ndc_fc(c: DayConstants) -> torch.Tensor:
    """NDC FC (mm): the soil moisture above which capillary rise stops."""
    return c.NDC * c.FC if c.NDCFC is None else c.NDCFC


class SoilTerms(NamedTuple):
    """The soil-moisture-dependent loss terms at clipped SM (mm, mm/day)."""

    w_raw: torch.Tensor  # (SM / FC)^BETA
    w: torch.Tensor  # its clip to [0, 1]: the share of the inflow recharging the upper zone
    excess_arg: torch.Tensor  # SM - FC
    excess: torch.Tensor
    e_raw: torch.Tensor  # (SM / (LP FC))^BETAET
    et_pot: torch.Tensor  # PET min(e_raw, 1)
    ET: torch.Tensor


def soil_terms(sm: torch.Tensor, c: DayConstants) -> SoilTerms:
    """Recharge share, excess over FC and ET at the clipped soil moisture ``sm`` (mm)."""
    w_raw = (sm / c.FC).pow(c.BETA)
    w = w_raw.clamp(0.0, 1.0)
    excess_arg = sm - c.FC
    excess = excess_arg.clamp_min(0.0)
    e_raw = (sm / lp_fc(c)).pow(c.BETAET)
    et_pot = c.PET * e_raw.clamp(0.0, 1.0)
    return SoilTerms(w_raw, w, excess_arg, excess, e_raw, et_pot, torch.minimum(sm, et_pot))


class Inner(NamedTuple):
    """Intermediate values of f at S that the closed-form Jacobian reuses."""

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


def clip_storages(S: torch.Tensor, axis: int = -1) -> tuple[torch.Tensor, ...]:
    """Storages as the RHS sees them: non-negative, soil moisture at least :data:`SM_FLOOR` (mm)."""
    snow, meltwater, sm, suz, slz = S.unbind(axis)
    return (snow.clamp_min(0.0), meltwater.clamp_min(0.0), sm.clamp_min(SM_FLOOR), suz.clamp_min(0.0),
            slz.clamp_min(0.0))


def flux_terms(S: torch.Tensor, c: DayConstants, capillary_rise: bool, axis: int = -1) -> tuple[Fluxes, Inner]:
    """Every flux rate (mm/day) at storages ``S`` (storage axis ``axis``) and the intermediates.

    Parameters
    ----------
    S
        Storages (mm); clipped with :func:`clip_storages` before use.
    c
        The day's constants (:func:`day_constants`), broadcastable to the batch.
    capillary_rise
        Whether the capillary-rise flux (eq. 14) is on; when off ``capillary`` is None.
    axis
        The storage axis of ``S``.
    """
    clipped = clip_storages(S, axis)
    snow, meltwater, sm, suz, slz = clipped
    snow_flux = snow_rates(snow, meltwater, c.melt_pot, c.refreeze_pot, c.CWH)
    inflow = c.rain + snow_flux.to_soil
    soil = soil_terms(sm, c)
    recharge = inflow * soil.w
    perc = torch.minimum(suz, c.PERC)
    q0_arg = suz - c.UZL
    q0 = c.K0 * q0_arg.clamp_min(0.0)
    q1 = c.K1 * suz
    q2 = c.K2 * slz
    cr_ratio = cr_frac = capillary = None
    if capillary_rise:
        c_slz = c.C * slz
        cr_ratio = sm / ndc_fc(c)
        cr_frac = 1.0 - torch.clamp(cr_ratio, max=1.0)
        capillary = c_slz * cr_frac
    f = Fluxes(c.snowfall, c.rain, snow_flux.melt, snow_flux.refreeze, snow_flux.to_soil, recharge, soil.excess,
               soil.ET, perc, q0, q1, q2, capillary)
    inner = Inner(S, clipped, snow_flux.to_soil_arg, soil.w_raw, soil.w, inflow, soil.excess_arg, soil.e_raw,
                  soil.et_pot, q0_arg, cr_ratio, cr_frac)
    return f, inner


def storage_tendency(f: Fluxes, axis: int = -1) -> torch.Tensor:
    """dS/dt (mm/day) from flux rates, stacked on ``axis``; conserves mass: sum = P - ET - Q'."""
    d_snow, d_meltwater = snow_tendency(f.snowfall, f.melt, f.refreeze, f.to_soil)
    d_sm = f.to_soil + f.rain - f.recharge - f.excess - f.ET
    d_suz = f.recharge + f.excess - f.perc - f.Q0 - f.Q1
    d_slz = f.perc - f.Q2
    if f.capillary is not None:
        d_sm = d_sm + f.capillary
        d_slz = d_slz - f.capillary
    return torch.stack((d_snow, d_meltwater, d_sm, d_suz, d_slz), dim=axis)


def fluxes(S: torch.Tensor, x: Forcing, p: Params, *, capillary_rise: bool) -> Fluxes:
    """Flux rates (mm/day) for storages ``S`` (mm, last axis :data:`STORAGES`).

    Parameters
    ----------
    S
        Storages, shape ``[..., 5]``; clipped with :func:`clip_storages` before use.
    x
        Forcing broadcastable to ``S.shape[:-1]``.
    p
        Physical parameters by name (docs/model.md), each broadcastable to ``S.shape[:-1]``.
        ``NDC`` defaults to 1 when absent (the sequential improved model).
    capillary_rise
        Whether to include the capillary rise from the lower zone (eq. 14); when off the
        ``capillary`` rate is zeros.
    """
    f, inner = flux_terms(S, day_constants(x, p, capillary_rise), capillary_rise)
    return f if f.capillary is not None else f._replace(capillary=torch.zeros_like(inner.clipped[4]))


def rhs(S: torch.Tensor, x: Forcing, p: Params, *, capillary_rise: bool) -> torch.Tensor:
    """The ODE right-hand side f(S) = dS/dt (mm/day), shape ``[..., 5]``."""
    f, _ = flux_terms(S, day_constants(x, p, capillary_rise), capillary_rise)
    return storage_tendency(f)
