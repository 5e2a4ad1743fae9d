"""Input normalization of the parameterization network (docs/training.md#network-inputs-and-normalization).

The network sees three daily forcings and the 35 static attributes of Table A1:

* precipitation P (mm/day) transformed by ``log10(sqrt(P) + 0.1)``, then z-scored;
* mean temperature T (degC) and PET (mm/day), z-scored;
* the 35 attributes, z-scored across basins.

Statistics use the population standard deviation (``ddof=0``); a standard deviation below
:data:`MIN_STD` is replaced by 1 so that a constant input stays finite. They are computed
from the TRAINING period (and the training basins) only and saved next to the model as
``normalization.json``; evaluation reuses them unchanged. After normalization a missing
value (NaN) becomes 0, i.e. the training mean.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from benchmark import atomic
from benchmark.errors import DataError

MIN_STD = 1e-3
"""Standard deviations below this are replaced by 1."""

FORCING_VARIABLES: tuple[str, ...] = ("prcp", "tmean", "pet")
"""Dataset variables fed to the network (and the physical model), in input order."""


def precipitation_transform(prcp_mm_day: np.ndarray) -> np.ndarray:
    """``log10(sqrt(P) + 0.1)`` of precipitation in mm/day (NaN stays NaN)."""
    return np.log10(np.sqrt(np.clip(prcp_mm_day, 0.0, None)) + 0.1)


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    mean = float(finite.mean(dtype=np.float64))
    std = float(finite.std(dtype=np.float64))
    return mean, (std if std >= MIN_STD else 1.0)


@dataclass(frozen=True)
class NormalizationStats:
    """Means and (population) standard deviations of every network input.

    Attributes
    ----------
    forcing_names
        Dataset variable names of the forcings, in input order.
    forcing_mean, forcing_std
        Per forcing; precipitation statistics are of the transformed value.
    attribute_names
        The static attributes, in input order.
    attribute_mean, attribute_std
        Per attribute, across the training basins.
    train_start, train_end
        The ISO dates of the period the statistics come from.
    basins
        The basins the statistics come from.
    """

    forcing_names: tuple[str, ...]
    forcing_mean: tuple[float, ...]
    forcing_std: tuple[float, ...]
    attribute_names: tuple[str, ...]
    attribute_mean: tuple[float, ...]
    attribute_std: tuple[float, ...]
    train_start: str
    train_end: str
    basins: tuple[str, ...]

    @property
    def n_inputs(self) -> int:
        """Number of network inputs per day (forcings + attributes)."""
        return len(self.forcing_names) + len(self.attribute_names)

    def save(self, path: Path | str) -> None:
        """Write the statistics as JSON (atomically: temp file, then rename)."""
        atomic.write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path | str) -> "NormalizationStats":
        """Read statistics written by :meth:`save`.

        Raises
        ------
        DataError
            If the file is missing or not a statistics file.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in raw.items()})
        except FileNotFoundError:
            raise DataError(f"normalization statistics {path} do not exist; train the model first") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise DataError(f"normalization statistics {path} are not valid: {exc}") from None


def _check_variables(ds: xr.Dataset) -> None:
    missing = [name for name in (*FORCING_VARIABLES, "attributes") if name not in ds]
    if missing:
        raise DataError(f"the processed dataset lacks {missing}; re-run `hbvbench prepare`")


def fit_normalization(ds: xr.Dataset, train_start: str, train_end: str) -> NormalizationStats:
    """Compute the input statistics from the training period of ``ds``.

    Parameters
    ----------
    ds
        The processed dataset (:func:`benchmark.data.prepare.build_dataset`), already restricted to the training
        basins.
    train_start, train_end
        ISO dates of the training period, both included. Nothing outside it is read.

    Returns
    -------
    NormalizationStats
    """
    _check_variables(ds)
    train = ds.sel(date=slice(train_start, train_end))
    if train.sizes["date"] == 0:
        raise DataError(f"the processed dataset has no days in the training period {train_start}..{train_end}")
    means, stds = [], []
    for name in FORCING_VARIABLES:
        values = np.asarray(train[name].values, dtype=np.float64)
        if name == "prcp":
            values = precipitation_transform(values)
        mean, std = _mean_std(values)
        means.append(mean)
        stds.append(std)
    attrs = np.asarray(ds["attributes"].values, dtype=np.float64)
    attr_stats = [_mean_std(attrs[:, j]) for j in range(attrs.shape[1])]
    return NormalizationStats(
        forcing_names=FORCING_VARIABLES,
        forcing_mean=tuple(means),
        forcing_std=tuple(stds),
        attribute_names=tuple(str(a) for a in ds["attribute"].values),
        attribute_mean=tuple(m for m, _ in attr_stats),
        attribute_std=tuple(s for _, s in attr_stats),
        train_start=str(train_start),
        train_end=str(train_end),
        basins=tuple(str(b) for b in ds["basin"].values),
    )


def normalized_inputs(ds: xr.Dataset, stats: NormalizationStats) -> np.ndarray:
    """Network inputs for every day and basin of ``ds``, shape ``[date, basin, n_inputs]``.

    The forcings come first (in ``stats.forcing_names`` order), then the attributes repeated
    over time. Missing values become 0 after normalization. float32.
    """
    _check_variables(ds)
    names = tuple(str(a) for a in ds["attribute"].values)
    if names != stats.attribute_names:
        raise DataError(
            f"the dataset's attributes {list(names)} differ from the ones the model was trained on "
            f"{list(stats.attribute_names)}"
        )
    n_days, n_basins = ds.sizes["date"], ds.sizes["basin"]
    out = np.empty((n_days, n_basins, stats.n_inputs), dtype=np.float32)
    for k, name in enumerate(stats.forcing_names):
        values = np.asarray(ds[name].transpose("date", "basin").values, dtype=np.float64)
        if name == "prcp":
            values = precipitation_transform(values)
        out[:, :, k] = (values - stats.forcing_mean[k]) / stats.forcing_std[k]
    attrs = np.asarray(ds["attributes"].transpose("basin", "attribute").values, dtype=np.float64)
    attrs = (attrs - np.asarray(stats.attribute_mean)) / np.asarray(stats.attribute_std)
    out[:, :, len(stats.forcing_names):] = attrs[None, :, :]
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out
