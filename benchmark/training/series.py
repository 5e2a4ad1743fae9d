"""The data of a training or evaluation as tensors: series of a set of basins, day indices, windows.

:func:`series_tensors` turns the processed dataset into normalized network inputs, physical
forcing (P mm/day, T degC, PET mm/day) and observed flow (mm/day), day axis first;
:func:`window_bounds`, :func:`validation_bounds` and :func:`day_index` place the profile's
periods on that axis; :func:`gather` cuts a minibatch's windows; :func:`first_non_finite`
finds the first basin-day a simulation flagged non-finite and :func:`non_finite_message`
names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from benchmark.config import Params, ProfileConfig
from benchmark.errors import DataError
from benchmark.training.normalization import FORCING_VARIABLES, NormalizationStats, normalized_inputs
from benchmark.training.sampler import Batch


@dataclass
class SeriesTensors:
    """The data of a set of basins on the model's device, day axis first."""

    dates: pd.DatetimeIndex
    basins: tuple[str, ...]
    inputs: torch.Tensor  # [days, basins, n_inputs], normalized
    forcing: torch.Tensor  # [days, basins, 3]: P mm/day, T degC, PET mm/day
    qobs: torch.Tensor  # [days, basins] mm/day, NaN missing


def series_tensors(ds: xr.Dataset, stats: NormalizationStats, device: torch.device, dtype: torch.dtype) -> SeriesTensors:
    """Normalized inputs, physical forcing and observed flow of ``ds`` as tensors."""
    forcing = np.stack(
        [np.asarray(ds[name].transpose("date", "basin").values, dtype=np.float64) for name in FORCING_VARIABLES], axis=-1
    )
    qobs = np.asarray(ds["qobs"].transpose("date", "basin").values, dtype=np.float64)
    return SeriesTensors(
        dates=pd.DatetimeIndex(ds["date"].values),
        basins=tuple(str(b) for b in ds["basin"].values),
        inputs=torch.as_tensor(normalized_inputs(ds, stats), dtype=dtype, device=device),
        forcing=torch.as_tensor(forcing, dtype=dtype, device=device),
        qobs=torch.as_tensor(qobs, dtype=dtype, device=device),
    )


def check_forcing(data: SeriesTensors, first_day: int, last_day: int, where: str) -> None:
    """Raise DataError naming the basins whose forcing has gaps in ``[first_day, last_day]``."""
    window = data.forcing[first_day : last_day + 1]
    bad = (~torch.isfinite(window)).any(dim=-1).any(dim=0)
    if bool(bad.any()):
        names = [data.basins[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise DataError(f"forcing (prcp/tmean/pet) has missing values in the {where} for basins {names}")


def day_index(dates: pd.DatetimeIndex, day: Any, what: str) -> int:
    """Index of ``day`` in ``dates`` (DataError when outside the data)."""
    stamp = pd.Timestamp(day)
    if stamp < dates[0] or stamp > dates[-1]:
        raise DataError(f"{what} {stamp.date()} is outside the processed data ({dates[0].date()}..{dates[-1].date()}); "
                        "re-run `hbvbench prepare` for this profile")
    return int(dates.get_indexer([stamp])[0])


def window_bounds(dates: pd.DatetimeIndex, profile: ProfileConfig) -> tuple[int, int]:
    """First and last allowed start index of a scored window inside the training period.

    A window's warm-up may reach before the training period (forcing only) but not before
    the start of the data.
    """
    first = max(day_index(dates, profile.train.start, "training start"), profile.warmup_days)
    last = day_index(dates, profile.train.end, "training end") - profile.window_days + 1
    return first, last


def validation_bounds(dates: pd.DatetimeIndex, params: Params) -> tuple[int, int, int] | None:
    """First warm-up day, first and last day of the profile's validation period (None if unset).

    The warm-up is ``train.test_warmup_days``, clipped at the start of the data, as for the test.
    """
    period = params.active.validation
    if period is None:
        return None
    start = day_index(dates, period.start, "validation start")
    end = day_index(dates, period.end, "validation end")
    return max(0, start - params.train.test_warmup_days), start, end


def gather(series: torch.Tensor, batch: Batch, length: int) -> torch.Tensor:
    """Windows ``[length, batch, ...]`` of ``series [days, basins, ...]`` at the batch's starts."""
    starts = torch.as_tensor(batch.sequence_start, device=series.device)
    days = starts[None, :] + torch.arange(length, device=series.device)[:, None]
    basins = torch.as_tensor(batch.basins, device=series.device)[None, :]
    return series[days, basins]


def first_non_finite(stats: Any) -> tuple[int, int, int] | None:
    """``(day, basin column, count)`` of the first basin-day ``simulate`` flagged non-finite
    (``stats["non_finite"]``, bool ``[days, basins]``); None when every day is finite."""
    flags = stats.get("non_finite") if isinstance(stats, dict) else None
    if flags is None or not bool(flags.any()):
        return None
    bad = flags.detach().cpu().numpy()
    day, column = (int(i) for i in np.argwhere(bad)[0])  # row-major: the earliest day first
    return day, column, int(bad.sum())


def non_finite_message(where: str, basin: str, day: pd.Timestamp, count: int) -> str:
    """The error of a simulation that produced NaN/inf, naming basin and date."""
    return (f"{where}: the simulation became non-finite (NaN or infinite storage or flow) for basin {basin} on "
            f"{day.date()} (first of {count} such basin-days); lower train.learning_rate, or check this basin's "
            "forcing and attributes")
