"""Scoring of a predictions file: per-basin metrics, BFI, ET NSE, summaries, metrics.json.

Inputs are the predictions Dataset of :func:`benchmark.training.evaluate.predictions_dataset` (dims ``basin``, ``date`` over the test
period; ``qsim``, ``qobs`` mm/day; optional ``Q2`` and ``Q_unrouted`` for the baseflow index,
``ET`` for the ET score) and the processed CAMELS Dataset (``baseflow_index(basin)``,
optional ``et_modis(basin, date)`` and ``et_window``).

Per basin (rows of the DataFrame :func:`score_predictions` returns, index ``basin``):

* the streamflow metrics of :func:`benchmark.metrics.basin_metrics` on ``qsim`` vs ``qobs``;
* ``BFI = sum(Q2) / sum(Q_unrouted)`` over the test period (simulated slow-flow share of the
  unrouted runoff; docs/metrics.md#baseflow-index) and ``BFI_camels``, the CAMELS ``baseflow_index``;
* ``ET_NSE``: NSE of simulated vs MODIS ET totals per 8-day composite (see
  :func:`et_window_nse`), with ``ET_windows`` the number of composites scored.

NaN in the DataFrame (and ``None`` in the summary and metrics.json, ``n/a`` in the CSV)
means "not available": no ET data, no Q2/Q_unrouted, too few valid observations. The
``status`` column says why a basin has no streamflow metrics: ``ok``; ``failed: <reason>``
for a basin whose simulation cannot be trusted (passed in by the caller, e.g. a solver
failure, or found here: a simulated flow that is not finite on a scored day), whose metrics
are then all left empty rather than computed from broken numbers; or ``not scored: ...`` for
too few observations. Failed basins are counted (``n_basins_failed``), listed
(``failed_basins``, space-separated) and left out of every median and mean.

MODIS composite windows: MOD16A2 composites start on day-of-year 1, 9, ..., 361 of every
year; the last one of a year has 5 (6 in leap years) days. The processed dataset stores
``et_modis`` as mm/day on each day of its composite (composite total / composite length),
so a window's total in mm is the sum of its daily values. Windows are identified from the
calendar (values are never used as a key: two neighbouring composites can hold equal
values). If the dataset carries an integer variable ``et_window`` (``(basin, date)`` or
``(date,)``, negative or NaN = no window) it is used instead, with window lengths counted
on the dataset's date axis. A window is scored only if all its days lie in the predictions'
period and have an ``et_modis`` value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from benchmark import atomic, metrics
from benchmark.artifacts import METRICS_JSON, PER_BASIN_CSV  # noqa: F401 - the names writers and readers of scores use
from benchmark.errors import DataError

MODIS_COMPOSITE_DAYS = 8
"""Length of a MOD16A2 composite; the last of a year is cut at 31 December."""

MIN_BASINS_FOR_CORRELATION = 3
"""BFI_r needs at least this many basins with a simulated and a CAMELS BFI."""

NOT_AGGREGATED: tuple[str, ...] = ("n_obs", "BFI_camels", "ET_windows", "status")
"""Per-basin columns that are bookkeeping, not model skill: no median/mean in the summary."""

STATUS_OK = "ok"



# ---------------------------------------------------------------------------------------
# baseflow index
# ---------------------------------------------------------------------------------------
def baseflow_index(q2: np.ndarray, q_unrouted: np.ndarray) -> float:
    """Simulated baseflow index ``BFI = sum(Q2) / sum(Q_unrouted)`` of one basin.

    Parameters
    ----------
    q2, q_unrouted : array_like
        Daily slow (groundwater) flow and total unrouted runoff (mm/day) over the test period.

    Returns
    -------
    float
        The ratio; NaN if either series is not finite everywhere or the total flow is zero.
    """
    q2 = np.asarray(q2, dtype=np.float64)
    total = np.asarray(q_unrouted, dtype=np.float64)
    if not (np.all(np.isfinite(q2)) and np.all(np.isfinite(total))):
        return float("nan")
    denominator = float(total.sum())
    return float(q2.sum()) / denominator if denominator > 0 else float("nan")


def bfi_correlation(bfi_sim: np.ndarray, bfi_camels: np.ndarray) -> float | None:
    """Spatial Pearson correlation of simulated and CAMELS BFI across basins.

    Only basins where both are finite count; ``None`` (n/a) with fewer than
    :data:`MIN_BASINS_FOR_CORRELATION` of them or when either set is constant.
    """
    sim = np.asarray(bfi_sim, dtype=np.float64)
    ref = np.asarray(bfi_camels, dtype=np.float64)
    keep = np.isfinite(sim) & np.isfinite(ref)
    if np.count_nonzero(keep) < MIN_BASINS_FOR_CORRELATION:
        return None
    r = metrics.pearson_r(sim[keep], ref[keep])
    return r if np.isfinite(r) else None


# ---------------------------------------------------------------------------------------
# ET against MODIS 8-day composites
# ---------------------------------------------------------------------------------------
def modis_window_ids(dates: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Calendar MOD16A2 composite of each date, as ``year * 100 + (day_of_year - 1) // 8``."""
    index = pd.DatetimeIndex(dates)
    return (index.year * 100 + (index.dayofyear - 1) // MODIS_COMPOSITE_DAYS).to_numpy(np.int64)


def modis_window_lengths(window_ids: np.ndarray) -> np.ndarray:
    """Number of days of each calendar composite in ``window_ids`` (8, or 5/6 at year end)."""
    ids = np.asarray(window_ids, dtype=np.int64)
    year, k = ids // 100, ids % 100
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days_in_year = np.where(leap, 366, 365)
    return np.minimum(MODIS_COMPOSITE_DAYS, days_in_year - k * MODIS_COMPOSITE_DAYS)


def et_window_nse(
    sim_et: np.ndarray,
    obs_et: np.ndarray,
    window_ids: np.ndarray,
    window_lengths: np.ndarray,
) -> tuple[float, int]:
    """NSE of simulated vs observed ET totals per composite window.

    ``NSE = 1 - sum_w (S_w - O_w)^2 / sum_w (O_w - mean O)^2`` with ``S_w``, ``O_w`` the sums
    (mm per window) of the daily values (mm/day) over window ``w``.

    Parameters
    ----------
    sim_et, obs_et : array_like
        Daily simulated and observed (MODIS, mm/day per day of its composite) ET on the same
        consecutive days; NaN obs = no data.
    window_ids : array_like of int
        Window of each day; negative = none.
    window_lengths : array_like of int
        Full length (days) of each day's window. A window is scored only if all of its days
        are present here and have an observation.

    Returns
    -------
    tuple
        ``(nse, n_windows)``: NaN and 0 when no window is complete; NaN if the simulated ET is
        not finite in a scored window or fewer than two windows exist.
    """
    sim = np.asarray(sim_et, dtype=np.float64)
    obs = np.asarray(obs_et, dtype=np.float64)
    ids = np.asarray(window_ids, dtype=np.int64)
    lengths = np.asarray(window_lengths, dtype=np.int64)
    in_window = ids >= 0
    if not np.any(in_window):
        return float("nan"), 0
    unique, inverse = np.unique(ids[in_window], return_inverse=True)
    days_present = np.bincount(inverse)
    obs_present = np.bincount(inverse, weights=np.isfinite(obs[in_window]).astype(np.float64))
    expected = np.zeros(unique.size, dtype=np.int64)
    expected[inverse] = lengths[in_window]
    complete = (days_present == expected) & (obs_present == expected)
    if not np.any(complete):
        return float("nan"), 0
    obs_total = np.bincount(inverse, weights=np.nan_to_num(obs[in_window]))[complete]
    sim_total = np.bincount(inverse, weights=sim[in_window])[complete]
    return metrics.nse(sim_total, obs_total), int(np.count_nonzero(complete))


def _dataset_windows(dataset: xr.Dataset, basin: str, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Window ids and full window lengths of ``dates`` for one basin (see module docstring)."""
    if "et_window" not in dataset:
        ids = modis_window_ids(dates)
        return ids, modis_window_lengths(ids)
    window = dataset["et_window"]
    if "basin" in window.dims:
        window = window.sel(basin=basin)
    all_ids = np.nan_to_num(window.values.astype(np.float64), nan=-1).astype(np.int64)
    counts = pd.Series(all_ids).value_counts()
    ids_here = pd.Series(all_ids, index=pd.DatetimeIndex(window["date"].values)).reindex(dates, fill_value=-1)
    ids = ids_here.to_numpy(np.int64)
    return ids, counts.reindex(ids).fillna(0).to_numpy(np.int64)


def basin_et_nse(pred_basin: xr.Dataset, dataset: xr.Dataset, basin: str) -> tuple[float, int]:
    """ET NSE of one basin against ``et_modis``; ``(NaN, 0)`` where there is no ET data."""
    if "ET" not in pred_basin or "et_modis" not in dataset:
        return float("nan"), 0
    dates = pd.DatetimeIndex(pred_basin["date"].values)
    obs = dataset["et_modis"].sel(basin=basin).reindex(date=dates).values
    if not np.any(np.isfinite(obs)):
        return float("nan"), 0
    ids, lengths = _dataset_windows(dataset, basin, dates)
    return et_window_nse(pred_basin["ET"].values, obs, ids, lengths)


# ---------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------
def _check_predictions(pred: xr.Dataset) -> None:
    """Raise DataError unless ``pred`` has the variables and dims of a predictions file."""
    source = pred.attrs.get("model", "predictions")
    for name in ("qsim", "qobs"):
        if name not in pred:
            raise DataError(f"{source}: predictions lack variable '{name}' (mm/day over basin x date)")
        if set(pred[name].dims) != {"basin", "date"}:
            raise DataError(f"{source}: '{name}' has dims {pred[name].dims}, expected ('basin', 'date')")
    if ("Q2" in pred) != ("Q_unrouted" in pred):
        raise DataError(f"{source}: predictions hold only one of 'Q2' and 'Q_unrouted'; BFI needs both")
    if not np.issubdtype(pred["date"].dtype, np.datetime64):
        raise DataError(f"{source}: coordinate 'date' must be datetime64, got {pred['date'].dtype}")


def _basin_ids(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _check_dataset(dataset: xr.Dataset, basins: list[str]) -> None:
    if "baseflow_index" not in dataset:
        raise DataError("processed dataset lacks 'baseflow_index(basin)' (CAMELS camels_hydro.txt)")
    known = set(_basin_ids(dataset["basin"].values))
    missing = [b for b in basins if b not in known]
    if missing:
        raise DataError(f"basins {missing} of the predictions are not in the processed dataset")


def basin_status(pred_basin: xr.Dataset, failure: str | None) -> str:
    """``ok``, ``failed: <reason>`` (``failure``, or a non-finite simulated flow on a scored
    day) or ``not scored: ...`` (fewer than :data:`benchmark.metrics.MIN_OBS` observations)."""
    if failure:
        return f"failed: {failure}"
    qsim = np.asarray(pred_basin["qsim"].values, dtype=np.float64)
    observed = np.isfinite(np.asarray(pred_basin["qobs"].values, dtype=np.float64))
    broken = observed & ~np.isfinite(qsim)
    if broken.any():
        day = pd.Timestamp(pred_basin["date"].values[int(np.argmax(broken))]).date()
        return f"failed: simulated flow is not finite on {day} ({int(broken.sum())} scored days)"
    if int(observed.sum()) < metrics.MIN_OBS:
        return f"not scored: {int(observed.sum())} valid observations, fewer than {metrics.MIN_OBS}"
    return STATUS_OK


def score_basin(pred_basin: xr.Dataset, dataset: xr.Dataset, basin: str, failure: str | None = None) -> dict[str, object]:
    """All per-basin values of one basin (one row of :func:`score_predictions`); a failed
    basin (:func:`basin_status`) gets its status and empty metrics."""
    status = basin_status(pred_basin, failure)
    if status.startswith("failed"):
        row: dict[str, object] = {name: float("nan") for name in metrics.METRIC_NAMES}
        row.update(BFI=float("nan"), BFI_camels=float(dataset["baseflow_index"].sel(basin=basin)),
                   ET_NSE=float("nan"), ET_windows=0.0, status=status)
        return row
    row = metrics.basin_metrics(pred_basin["qsim"].values, pred_basin["qobs"].values)
    if "Q2" in pred_basin:
        row["BFI"] = baseflow_index(pred_basin["Q2"].values, pred_basin["Q_unrouted"].values)
    else:
        row["BFI"] = float("nan")
    row["BFI_camels"] = float(dataset["baseflow_index"].sel(basin=basin))
    row["ET_NSE"], n_windows = basin_et_nse(pred_basin, dataset, basin)
    row["ET_windows"] = float(n_windows)
    row["status"] = status
    return row


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def summarize(per_basin: pd.DataFrame) -> dict[str, float | int | None]:
    """Median and mean across basins of every skill column, plus ``BFI_r`` and counts.

    Keys: ``<column>_median``, ``<column>_mean`` (over basins where the value is finite;
    ``None`` if there is none), ``BFI_r`` (:func:`bfi_correlation`), ``n_basins``,
    ``n_basins_scored`` (finite NSE), ``n_basins_ET`` (finite ET_NSE), and from the
    ``status`` column ``n_basins_failed`` and ``failed_basins`` (space-separated ids).
    """
    summary: dict[str, float | int | str | None] = {}
    for column in per_basin.columns:
        if column in NOT_AGGREGATED or not pd.api.types.is_numeric_dtype(per_basin[column]):
            continue
        values = per_basin[column].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        summary[f"{column}_median"] = float(np.median(values)) if values.size else None
        summary[f"{column}_mean"] = float(np.mean(values)) if values.size else None
    summary["BFI_r"] = bfi_correlation(per_basin["BFI"].to_numpy(), per_basin["BFI_camels"].to_numpy())
    summary["n_basins"] = int(len(per_basin))
    summary["n_basins_scored"] = int(np.isfinite(per_basin["NSE"].to_numpy(np.float64)).sum())
    summary["n_basins_ET"] = int(np.isfinite(per_basin["ET_NSE"].to_numpy(np.float64)).sum())
    status = per_basin["status"] if "status" in per_basin else pd.Series(STATUS_OK, index=per_basin.index)
    failed = sorted(str(b) for b in status.index[status.astype(str).str.startswith("failed")])
    summary["n_basins_failed"] = len(failed)
    summary["failed_basins"] = " ".join(failed)
    return summary


def score_predictions(
    pred: xr.Dataset, dataset: xr.Dataset, *, failed: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, dict]:
    """Score a predictions Dataset against observations and CAMELS signatures.

    Parameters
    ----------
    pred : xarray.Dataset
        Predictions file contents (``predictions.nc``): ``qsim``, ``qobs`` (basin, date) in mm/day,
        optional ``Q2`` + ``Q_unrouted`` and ``ET`` (mm/day).
    dataset : xarray.Dataset
        Processed CAMELS data with ``baseflow_index(basin)`` for every predicted basin and,
        optionally, ``et_modis(basin, date)`` (mm/day) and ``et_window``.
    failed : mapping, optional
        Basin -> reason, for basins the caller knows to have failed (e.g. the solver's
        health, :func:`benchmark.training.evaluate.failed_basins`).

    Returns
    -------
    per_basin : pandas.DataFrame
        Index ``basin`` (str); columns :data:`benchmark.metrics.METRIC_NAMES` + ``BFI``,
        ``BFI_camels``, ``ET_NSE``, ``ET_windows``, ``status``. NaN = not available (the
        status says why when the streamflow metrics are missing).
    summary : dict
        Flat dict of :func:`summarize`; ``None`` = not available.

    Raises
    ------
    DataError
        If variables are missing or a basin is unknown to the processed dataset.
    """
    _check_predictions(pred)
    basins = _basin_ids(pred["basin"].values)
    _check_dataset(dataset, basins)
    dataset = dataset.assign_coords(basin=_basin_ids(dataset["basin"].values))
    pred = pred.assign_coords(basin=basins).transpose("basin", "date", ...)
    failed = dict(failed or {})
    rows = {basin: score_basin(pred.sel(basin=basin), dataset, basin, failed.get(basin)) for basin in basins}
    per_basin = pd.DataFrame.from_dict(rows, orient="index")
    per_basin.index.name = "basin"
    return per_basin, summarize(per_basin)


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
def _json_value(value: object) -> object:
    """Plain JSON value: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite_or_none(float(value))
    return value


def write_metrics(
    out_dir: str | os.PathLike, per_basin: pd.DataFrame, summary: Mapping[str, object]
) -> dict[str, Path]:
    """Write ``metrics.json`` (flat summary, DVC metrics) and ``per_basin_metrics.csv``.

    Both files are written atomically (temporary file + rename), so a crash never leaves a
    half-written file. In the JSON, unavailable values are ``null``; in the CSV ``n/a``
    (which pandas reads back as NaN; read the ``basin`` column with ``dtype=str`` to keep
    leading zeros).

    Returns
    -------
    dict
        ``{"metrics": path_of_json, "per_basin": path_of_csv}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat = {str(key): _json_value(value) for key, value in summary.items()}
    bad = [k for k, v in flat.items() if not isinstance(v, (int, float, str, bool, type(None)))]
    if bad:
        raise DataError(f"metrics summary values must be scalars; not scalar: {bad}")
    json_path, csv_path = out / METRICS_JSON, out / PER_BASIN_CSV
    atomic.write_text(json_path, json.dumps(flat, indent=2) + "\n")
    atomic.write_text(csv_path, per_basin.to_csv(na_rep="n/a", index_label="basin"))
    return {"metrics": json_path, "per_basin": csv_path}


def load_predictions(path: str | os.PathLike) -> xr.Dataset:
    """Open a ``predictions.nc`` file, raising DataError naming the file if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"predictions file {path} does not exist (run the evaluate stage first)")
    try:
        pred = xr.load_dataset(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"predictions file {path} cannot be read as netCDF: {exc}") from exc
    pred.attrs.setdefault("model", str(path))
    _check_predictions(pred)
    return pred
