"""Hargreaves (1994) potential evapotranspiration, as docs/data.md#hargreaves-pet states it.

Extraterrestrial radiation follows FAO-56 (Allen et al. 1998, eqs. 21-25); the PET formula
is the authors' form ``0.0023 (T + 17.8) sqrt(tmax - tmin) 0.408 Ra`` in mm/day, with
``T = (tmax + tmin) / 2`` and negative results clipped to 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SOLAR_CONSTANT = 0.0820  # Gsc, MJ m-2 min-1
MJ_TO_MM = 0.408  # MJ m-2 d-1 of latent heat -> mm/day of evaporated water


def extraterrestrial_radiation(latitude_deg: np.ndarray | float, day_of_year: np.ndarray | int) -> np.ndarray:
    """Daily extraterrestrial radiation Ra in MJ m-2 day-1 (FAO-56 eq. 21).

    Parameters
    ----------
    latitude_deg
        Latitude in decimal degrees (south negative); broadcasts against ``day_of_year``.
    day_of_year
        Day of the year J, 1..365 (366 on 31 December of a leap year).

    Returns
    -------
    numpy.ndarray
        Ra in MJ m-2 day-1 (float64).
    """
    phi = np.deg2rad(np.asarray(latitude_deg, dtype=np.float64))
    angle = 2.0 * np.pi * np.asarray(day_of_year, dtype=np.float64) / 365.0
    declination = 0.409 * np.sin(angle - 1.39)
    inverse_distance = 1.0 + 0.033 * np.cos(angle)
    sunset_angle = np.arccos(np.clip(-np.tan(phi) * np.tan(declination), -1.0, 1.0))
    return (24.0 * 60.0 / np.pi) * SOLAR_CONSTANT * inverse_distance * (
        sunset_angle * np.sin(phi) * np.sin(declination)
        + np.cos(phi) * np.cos(declination) * np.sin(sunset_angle)
    )


def hargreaves_pet(
    tmax_c: np.ndarray,
    tmin_c: np.ndarray,
    latitude_deg: np.ndarray | float,
    day_of_year: np.ndarray,
) -> np.ndarray:
    """Hargreaves PET in mm/day.

    Parameters
    ----------
    tmax_c, tmin_c
        Daily maximum and minimum air temperature, degC (same shape, e.g. [T] or [T, B]).
    latitude_deg
        Latitude in degrees (CAMELS ``gauge_lat``); scalar or broadcastable, e.g. [B].
    day_of_year
        Day of year J of each day, broadcastable against the temperatures (e.g. [T, 1]).

    Returns
    -------
    numpy.ndarray
        ``max(0.0023 (T + 17.8) sqrt(max(tmax - tmin, 0)) 0.408 Ra, 0)`` mm/day; NaN where a
        temperature is NaN.
    """
    tmax_c = np.asarray(tmax_c, dtype=np.float64)
    tmin_c = np.asarray(tmin_c, dtype=np.float64)
    ra = extraterrestrial_radiation(latitude_deg, day_of_year)
    tmean = 0.5 * (tmax_c + tmin_c)
    pet = 0.0023 * (tmean + 17.8) * np.sqrt(np.maximum(tmax_c - tmin_c, 0.0)) * MJ_TO_MM * ra
    return np.where(np.isnan(pet), np.nan, np.maximum(pet, 0.0))


def hargreaves_pet_series(forcing: pd.DataFrame, latitude_deg: float) -> pd.Series:
    """Hargreaves PET (mm/day) for a daily table with ``tmax``/``tmin`` columns and a date index."""
    doy = pd.DatetimeIndex(forcing.index).dayofyear.to_numpy()
    values = hargreaves_pet(forcing["tmax"].to_numpy(), forcing["tmin"].to_numpy(), latitude_deg, doy)
    return pd.Series(values, index=forcing.index, name="pet")
