"""The degree-day snow routine of HBV, shared by every structure that needs snow (HBV, GR4J).

Two storages: SNOW (the frozen pack) and MELT (liquid water held in the pack), both mm.
Parameters: TT (degC), CFMAX (mm/degC/day), CFR and CWH (-). See docs/model.md.

- precipitation falls as snow below TT: ``snowfall = P [T < TT]``, ``rain = P - snowfall``;
- melt ``min(CFMAX max(T - TT, 0), SNOW)`` moves SNOW to MELT;
- refreezing ``min(CFR CFMAX max(TT - T, 0), MELT)`` moves MELT back to SNOW;
- the pack holds liquid water up to ``CWH SNOW``; the rest, ``max(MELT - CWH SNOW, 0)``,
  leaves the pack (``to_soil``) and is the snow routine's output to the structure below.

This module holds the routine in the three forms the time schemes need, each written once:
the flux rates of the ODE (:func:`snow_rates`), the operator-split daily update with its
hand-written reverse pass (:func:`split_snow_day`, :func:`split_snow_day_reverse`), and the
exact backward-Euler day (:func:`backward_euler_snow`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from benchmark.models.base import ParameterSpec, parameter_table
from benchmark.models.reverse import where_else_zero, zero_where

SNOW_STORAGES: tuple[str, ...] = ("SNOW", "MELT")

SNOW_PARAMETERS: dict[str, ParameterSpec] = parameter_table(
    ParameterSpec("TT", -2.5, 2.5, "degC", "threshold temperature for snowfall"),
    ParameterSpec("CFMAX", 0.5, 10.0, "mm/degC/d", "degree-day factor"),
    ParameterSpec("CFR", 0.0, 0.1, "-", "refreezing coefficient"),
    ParameterSpec("CWH", 0.0, 0.2, "-", "water-holding capacity of the snowpack"),
)


class SnowForcing(NamedTuple):
    """The storage-independent part of the snow routine (mm/day)."""

    snowfall: torch.Tensor
    rain: torch.Tensor
    melt_pot: torch.Tensor  # CFMAX max(T - TT, 0)
    refreeze_pot: torch.Tensor  # CFR CFMAX max(TT - T, 0)


def snow_forcing(P: torch.Tensor, T: torch.Tensor, TT: torch.Tensor, CFMAX: torch.Tensor,
                 CFR: torch.Tensor) -> SnowForcing:
    """Snowfall, rain, potential melt and potential refreezing (mm/day) from P (mm/day) and T (degC)."""
    snowfall = P * (T < TT).to(P.dtype)
    rain = P - snowfall
    melt_pot = (CFMAX * (T - TT)).clamp_min(0.0)
    refreeze_pot = (CFR * CFMAX * (TT - T)).clamp_min(0.0)
    return SnowForcing(snowfall, rain, melt_pot, refreeze_pot)


class SnowRates(NamedTuple):
    """Snow flux rates (mm/day) at given storages."""

    melt: torch.Tensor
    refreeze: torch.Tensor
    to_soil_arg: torch.Tensor  # MELT - CWH SNOW, the release before its floor at 0 (mm)
    to_soil: torch.Tensor


def snow_rates(snow: torch.Tensor, meltwater: torch.Tensor, melt_pot: torch.Tensor,
               refreeze_pot: torch.Tensor, cwh: torch.Tensor) -> SnowRates:
    """Melt, refreezing and release rates (mm/day) at non-negative storages SNOW, MELT (mm)."""
    melt = torch.minimum(melt_pot, snow)
    refreeze = torch.minimum(refreeze_pot, meltwater)
    to_soil_arg = meltwater - cwh * snow
    return SnowRates(melt, refreeze, to_soil_arg, to_soil_arg.clamp_min(0.0))


def snow_tendency(snowfall: torch.Tensor, melt: torch.Tensor, refreeze: torch.Tensor, to_soil: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """dSNOW/dt and dMELT/dt (mm/day) from the snow flux rates (mm/day)."""
    return snowfall + refreeze - melt, melt - refreeze - to_soil


# ---------------------------------------------------------------------------------------------
# Operator splitting: one day, each process applied to the storages left by the previous one.


class SnowDaySaved(NamedTuple):
    """What the reverse pass of :func:`split_snow_day` needs."""

    melt_from_pot: torch.Tensor  # melt = potential (else the whole pack)
    refreeze_from_pot: torch.Tensor
    releases: torch.Tensor  # MELT > CWH SNOW after refreezing
    snow: torch.Tensor  # the pack after refreezing (mm)


def split_snow_day(snow: torch.Tensor, meltwater: torch.Tensor, f: SnowForcing, cwh: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, SnowDaySaved]:
    """One operator-split day: snowfall, melt, refreezing, release, in this order.

    Returns the new SNOW and MELT (mm), the water released to the structure below (mm/day)
    and the intermediates of the reverse pass. ``min(a, b)`` is ``where(a <= b, a, b)``, which
    sends the gradient to ``a`` on a tie, as ``a.clamp(max=b)`` does.
    """
    s1 = snow + f.snowfall
    melt_from_pot = f.melt_pot <= s1
    melt = torch.where(melt_from_pot, f.melt_pot, s1)
    w1 = meltwater + melt
    s2 = s1 - melt
    refreeze_from_pot = f.refreeze_pot <= w1
    refreeze = torch.where(refreeze_from_pot, f.refreeze_pot, w1)
    s3 = s2 + refreeze
    w2 = w1 - refreeze
    excess = w2 - cwh * s3
    releases = excess > 0
    to_soil = torch.relu(excess)
    return s3, w2 - to_soil, to_soil, SnowDaySaved(melt_from_pot, refreeze_from_pot, releases, s3)


class SnowDayGrads(NamedTuple):
    """Gradients the reverse of :func:`split_snow_day` returns."""

    snow: torch.Tensor  # previous SNOW
    meltwater: torch.Tensor  # previous MELT
    snowfall: torch.Tensor
    melt_pot: torch.Tensor
    refreeze_pot: torch.Tensor
    cwh: torch.Tensor


def split_snow_day_reverse(g_snow: torch.Tensor, g_meltwater: torch.Tensor, g_to_soil: torch.Tensor,
                           saved: SnowDaySaved, cwh: torch.Tensor) -> SnowDayGrads:
    """The chain rule of :func:`split_snow_day` written out.

    ``g_snow``, ``g_meltwater``: gradients of the new storages; ``g_to_soil``: gradient of the
    released water through everything downstream of the snow routine.
    """
    g_w2 = g_meltwater
    g_release = where_else_zero(saved.releases, g_to_soil - g_meltwater)
    g_w2 = g_w2 + g_release
    g_s3 = g_snow - g_release * cwh
    g_cwh = -g_release * saved.snow
    g_w1 = g_w2
    g_refreeze = g_s3 - g_w2
    g_refreeze_pot = where_else_zero(saved.refreeze_from_pot, g_refreeze)
    g_w1 = g_w1 + zero_where(saved.refreeze_from_pot, g_refreeze)
    g_s1 = g_s3
    g_melt = g_w1 - g_s3
    g_melt_pot = where_else_zero(saved.melt_from_pot, g_melt)
    g_s1 = g_s1 + zero_where(saved.melt_from_pot, g_melt)
    return SnowDayGrads(g_s1, g_w1, g_s1, g_melt_pot, g_refreeze_pot, g_cwh)


# ---------------------------------------------------------------------------------------------
# Backward Euler: the day's SNOW and MELT solved exactly.


def backward_euler_snow(prev_snow: torch.Tensor, prev_melt: torch.Tensor, f: SnowForcing, cwh: torch.Tensor,
                        any_refreeze: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact backward-Euler SNOW and MELT (mm) of one day (previous storages >= 0, dt = 1 day).

    The two equations are piecewise linear and do not depend on any other storage. With
    refreezing potential R = 0: SNOW + min(M, SNOW) = a (a = SNOW_prev + snowfall) gives
    SNOW = max(a - M, a / 2); then MELT + max(MELT - CWH SNOW, 0) = b (b = MELT_prev + melt)
    gives MELT = min(b, (b + CWH SNOW) / 2). With R > 0 (then M = 0) the two are coupled
    through min(R, MELT); the root of the monotone piecewise-linear MELT equation lies above
    R (refreezing saturated) or below it (all meltwater refreezes, released or not).
    ``any_refreeze`` False skips the second case (no system has R > 0 on this day).
    """
    a = prev_snow + f.snowfall
    snow = torch.maximum(a - f.melt_pot, 0.5 * a)
    b = prev_melt + (a - snow)
    melt = torch.minimum(b, 0.5 * (b + cwh * snow))
    if not any_refreeze:
        return snow, melt
    r = f.refreeze_pot
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
