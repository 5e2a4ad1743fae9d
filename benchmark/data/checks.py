"""The data half of hbvbench's one validation layer (the configuration half is :mod:`benchmark.config`).

``hbvbench prepare`` runs :func:`check_plausible` and :func:`check_observed` on every basin
before anything is written (``train``, ``evaluate`` and ``tune`` then check their periods
against the processed record and the forcing for gaps before any work,
:mod:`benchmark.training.trainer`). Each check raises :class:`~benchmark.errors.DataError`
naming the file (and line), the basin and the variable, with the offending value and date.

Plausible ranges (:data:`PLAUSIBLE_RANGES`) are physical limits, not climatology: a value
outside them cannot be a measurement of the variable in the unit the file declares, so it is
a corrupt file, a unit mix-up or a missing-value code the reader does not know. The limits:

* ``prcp`` 0 .. 1,825 mm/day: the world-record 24-hour rainfall (1,825 mm, Foc-Foc, La
  Reunion, 7-8 January 1966, WMO); a basin mean cannot exceed the point record.
* ``tmax``, ``tmin`` -90 .. 60 degC: the world records are -89.2 degC (Vostok, 1983) and
  56.7 degC (Death Valley, 1913). (``tmin`` may exceed ``tmax`` by a fraction of a degree in
  real Daymet basin means, so the two are not compared.)
* ``dayl`` 0 .. 86,400 s: a day has 86,400 seconds.
* ``srad`` 0 .. 1,361 W/m2: Daymet's shortwave radiation is a daylight-hours mean at the
  ground, which cannot exceed the solar constant at the top of the atmosphere.
* ``vp`` 0 .. 7,500 Pa: saturation vapour pressure at 40 degC (7.4 kPa), above that of the
  world-record dew point (35 degC, 5.6 kPa).
* ``swe`` 0 .. 20,000 mm: 20 m of water, several times the deepest snowpacks measured.
* ``pet`` (Hargreaves, computed) 0 .. 25 mm/day: above the highest observed daily potential
  evaporation (about 15-20 mm/day in hot deserts); a larger value means a bad latitude or
  temperature.
* ``qobs`` 0 .. 2,000 mm/day: daily basin runoff cannot exceed the world-record daily
  rainfall plus snowmelt; the real 35 basins peak at 144 mm/day. In the raw USGS file any
  negative discharge other than the missing-value code -999 is an error.
* ``gauge_lat`` -90 .. 90 degrees (the attribute PET is computed from).

Every embedded basin (``data/camels_us``, 35 basins, 1980-2014) passes all of them
(``tests/test_bad_inputs.py``).

A basin with no streamflow observation at all in the training, validation or test period
cannot be trained on or scored there: :func:`check_observed` raises, or, when
``data.unobserved_basins`` is ``warn``, returns a warning that ``prepare`` prints and records
in ``manifest.json`` (and that training and evaluation copy into their MLflow runs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.errors import DataError


@dataclass(frozen=True)
class PlausibleRange:
    """Closed physical range of one variable (see the module docstring for the reasoning)."""

    low: float
    high: float
    unit: str


PLAUSIBLE_RANGES: dict[str, PlausibleRange] = {
    "prcp": PlausibleRange(0.0, 1825.0, "mm/day"),
    "tmax": PlausibleRange(-90.0, 60.0, "degC"),
    "tmin": PlausibleRange(-90.0, 60.0, "degC"),
    "dayl": PlausibleRange(0.0, 86400.0, "s"),
    "srad": PlausibleRange(0.0, 1361.0, "W/m2"),
    "vp": PlausibleRange(0.0, 7500.0, "Pa"),
    "swe": PlausibleRange(0.0, 20000.0, "mm"),
    "pet": PlausibleRange(0.0, 25.0, "mm/day"),
    "qobs": PlausibleRange(0.0, 2000.0, "mm/day"),
    "gauge_lat": PlausibleRange(-90.0, 90.0, "degrees_north"),
}


def first_implausible(values: pd.Series, name: str) -> tuple[pd.Timestamp, float] | None:
    """Date and value of the first entry of ``values`` outside :data:`PLAUSIBLE_RANGES` (or
    not finite); None when all are plausible. NaN counts as implausible unless ``name`` is
    ``qobs`` (gaps in the streamflow record are missing observations, not errors)."""
    bounds = PLAUSIBLE_RANGES[name]
    array = values.to_numpy(dtype=np.float64)
    finite = np.isfinite(array)
    bad = (finite & ((array < bounds.low) | (array > bounds.high))) | (np.isinf(array))
    if name != "qobs":
        bad |= ~finite
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return values.index[i], float(array[i])


def check_plausible(values: pd.Series, name: str, *, basin: str, source: object) -> None:
    """DataError when a value of ``values`` (date-indexed) is outside its physical range.

    Parameters
    ----------
    values
        One variable of one basin, indexed by date.
    name
        Its key in :data:`PLAUSIBLE_RANGES`.
    basin
        Gauge id (named in the message).
    source
        The file the values come from (named in the message).
    """
    found = first_implausible(values, name)
    if found is None:
        return
    day, value = found
    bounds = PLAUSIBLE_RANGES[name]
    raise DataError(
        f"{source}: basin {basin}, {day.date()}: {name} = {value:g} {bounds.unit} is not physically plausible "
        f"(allowed {bounds.low:g}..{bounds.high:g} {bounds.unit}); the file is corrupt or not in CAMELS units"
    )


def check_plausible_value(value: float, name: str, *, basin: str, source: object) -> None:
    """DataError when one static value (e.g. an attribute) is outside its physical range."""
    bounds = PLAUSIBLE_RANGES[name]
    if not (np.isfinite(value) and bounds.low <= value <= bounds.high):
        raise DataError(
            f"{source}: basin {basin}: {name} = {value:g} {bounds.unit} is not physically plausible "
            f"(allowed {bounds.low:g}..{bounds.high:g} {bounds.unit})"
        )


def unobserved_periods(qobs: pd.Series, periods: dict[str, tuple[dt.date, dt.date]]) -> list[str]:
    """Names of the ``periods`` in which ``qobs`` (date-indexed, NaN = missing) has no value at all."""
    empty = []
    for name, (start, end) in periods.items():
        window = qobs.loc[pd.Timestamp(start) : pd.Timestamp(end)]
        if not np.isfinite(window.to_numpy(dtype=np.float64)).any():
            empty.append(f"{name} {start}..{end}")
    return empty


def check_observed(
    qobs: pd.Series, periods: dict[str, tuple[dt.date, dt.date]], *, basin: str, source: object, on_missing: str
) -> str | None:
    """Error (``on_missing="error"``) or warning text when a period has no flow observation.

    Returns
    -------
    str or None
        The warning for ``on_missing="warn"``; None when every period has observations.

    Raises
    ------
    DataError
        With ``on_missing="error"``, naming the basin, the file and the periods.
    """
    empty = unobserved_periods(qobs, periods)
    if not empty:
        return None
    message = f"basin {basin} has no streamflow observation in the {', '.join(empty)} period ({source})"
    if on_missing == "error":
        raise DataError(
            f"{message}: it can be neither trained on nor scored there; remove it from the profile's basins, or "
            "set data.unobserved_basins: warn to keep it (the warning is recorded in manifest.json and MLflow)"
        )
    return message
