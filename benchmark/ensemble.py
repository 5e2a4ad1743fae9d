"""The seed ensemble of a model: the mean over its training seeds of the daily simulated
series, scored like any single run.

A model trained with several seeds has one ``predictions.nc`` per seed. Its ensemble-mean
prediction is, per basin and day, the arithmetic mean over the seeds of ``qsim`` (and of
``Q2``, ``Q_unrouted`` and ``ET`` where every seed has them, so the ensemble's baseflow index
and ET score follow from the mean flows); ``qobs`` is the seeds' common observation. A day
where any seed's value is NaN is NaN in the mean, so a failed seed shows as a missing score,
never as a better one. The ensemble is scored by
:func:`benchmark.evaluation.score_predictions`, the metric code of every single run (see
docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from benchmark.errors import DataError
from benchmark.evaluation import score_predictions

AVERAGED_VARIABLES: tuple[str, ...] = ("qsim", "Q2", "Q_unrouted", "ET")
"""(basin, date) variables averaged over the seeds (mm/day)."""


def _basins(ds: xr.Dataset) -> list[str]:
    return [b.decode() if isinstance(b, bytes) else str(b) for b in ds["basin"].values]


def _check_alignment(predictions: Sequence[xr.Dataset], names: Sequence[str]) -> None:
    """Raise DataError unless every prediction covers the same basins, dates and observations."""
    first, first_name = predictions[0], names[0]
    for ds, name in zip(predictions, names):
        for variable in ("qsim", "qobs"):
            if variable not in ds:
                raise DataError(f"{name}: variable {variable!r} missing (expected qsim and qobs over (basin, date))")
    for ds, name in zip(predictions[1:], names[1:]):
        if _basins(ds) != _basins(first):
            raise DataError(f"cannot average seeds: {name} holds basins {_basins(ds)}, {first_name} holds {_basins(first)}")
        if not np.array_equal(ds["date"].values, first["date"].values):
            raise DataError(f"cannot average seeds: the dates of {name} differ from those of {first_name}")
        if not np.array_equal(ds["qobs"].transpose("basin", "date").values,
                              first["qobs"].transpose("basin", "date").values, equal_nan=True):
            raise DataError(f"cannot average seeds: the observed flow qobs of {name} differs from that of {first_name}")


def mean_prediction(predictions: Sequence[xr.Dataset], names: Sequence[str] | None = None) -> xr.Dataset:
    """The ensemble-mean prediction of several seeds of one model.

    Parameters
    ----------
    predictions
        One ``predictions.nc`` Dataset per seed (``qsim``, ``qobs`` over ``(basin, date)``
        in mm/day; optional ``Q2``, ``Q_unrouted``, ``ET``).
    names
        How to name each prediction in an error message (default ``seed run 1``...).

    Returns
    -------
    xarray.Dataset
        ``qobs`` and the mean over seeds of each of :data:`AVERAGED_VARIABLES` that every
        seed has (float64); attrs ``model`` and ``ensemble_size``.

    Raises
    ------
    DataError
        No prediction, or the seeds differ in basins, dates or observations.
    """
    if not predictions:
        raise DataError("an ensemble needs at least one prediction")
    names = list(names) if names is not None else [f"seed run {i + 1}" for i in range(len(predictions))]
    _check_alignment(predictions, names)
    first = predictions[0]
    data_vars = {"qobs": first["qobs"].transpose("basin", "date").astype(np.float64)}
    for variable in AVERAGED_VARIABLES:
        if all(variable in ds for ds in predictions):
            stacked = np.stack([ds[variable].transpose("basin", "date").values.astype(np.float64) for ds in predictions])
            data_vars[variable] = (("basin", "date"), stacked.mean(axis=0), {"units": "mm/day"})
    coords = {"basin": _basins(first), "date": pd.DatetimeIndex(first["date"].values)}
    attrs = {"model": str(first.attrs.get("model", "ensemble")), "ensemble_size": len(predictions)}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def score_ensemble(predictions: Sequence[xr.Dataset], dataset: xr.Dataset,
                   names: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Score the ensemble-mean prediction of several seeds with the metric code of a single run.

    Parameters
    ----------
    predictions, names
        As :func:`mean_prediction`.
    dataset
        The processed CAMELS dataset (``baseflow_index``; optional ``et_modis``), as for
        :func:`benchmark.evaluation.score_predictions`.

    Returns
    -------
    per_basin, summary
        As :func:`benchmark.evaluation.score_predictions`.
    """
    return score_predictions(mean_prediction(predictions, names), dataset)
