"""The SAC-SMA baseline: the CAMELS SAC-SMA + Snow-17 simulations, scored like every model.

CAMELS ships calibrated SAC-SMA + Snow-17 runs (Newman et al. 2015) as
``model_output/flow_timeseries/{product}/{huc2}/{gauge}_{seed}_model_output.txt`` (one file
per calibration seed). For the active profile's basins and test period this module reads
them (``benchmark.data.sacsma``), writes ``predictions.nc`` with ``qsim`` = ``MOD_RUN``
(the mean over the basin's calibration seeds when there are several) and ``ET`` = the
model's ET, and scores it with the project's metric code against

- our observed flow ``qobs`` of the prepared dataset (the leaderboard row: the same
  observation every model is scored against), and
- CAMELS' own ``OBS_RUN`` column (``vs_obs_run/``: a cross-check, not the leaderboard row).

A basin without a SAC-SMA file is skipped and counted: the report row says "k of n basins"
(``summary["coverage"]``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from benchmark import atomic
from benchmark.config import Params, Period, resolve_path
from benchmark.data.dataset import profile_basins
from benchmark.errors import DataError

MODEL_NAME = "sacsma"


@dataclass
class SacsmaOutput:
    """SAC-SMA simulations of the basins that have output files."""

    predictions: xr.Dataset
    basins_selected: list[str]
    basins_with_output: list[str]
    runs_per_basin: dict[str, list[str]]

    @property
    def basins_without_output(self) -> list[str]:
        """Selected basins that have no SAC-SMA file."""
        have = set(self.basins_with_output)
        return [b for b in self.basins_selected if b not in have]

    @property
    def coverage(self) -> str:
        """``"k of n basins"`` for the report row."""
        return f"{len(self.basins_with_output)} of {len(self.basins_selected)} basins"


def _period_frame(path: Path, period: Period) -> pd.DataFrame:
    from benchmark.data.sacsma import read_sacsma_output

    frame = read_sacsma_output(path)
    dates = pd.date_range(period.start, period.end, freq="D")
    if frame.index[0] > dates[0] or frame.index[-1] < dates[-1]:
        raise DataError(
            f"{path}: SAC-SMA output covers {frame.index[0].date()}..{frame.index[-1].date()}, "
            f"which does not contain the period {period.start}..{period.end}"
        )
    return frame.reindex(dates)


def load_sacsma(
    raw_dir: Path | str,
    basins: Sequence[str],
    period: Period,
    product: str = "daymet",
    qobs: xr.DataArray | None = None,
) -> SacsmaOutput:
    """Read the SAC-SMA output of ``basins`` over ``period`` into the predictions layout.

    Parameters
    ----------
    raw_dir
        CAMELS-US folder (official layout) holding ``model_output/flow_timeseries/``.
    basins
        Gauge ids selected by the profile.
    period
        Test period (every day must be in the files).
    product
        Forcing product the SAC-SMA runs were driven by (``daymet`` for the paper).
    qobs
        Observed flow (mm/day) over (``basin``, ``date``) from the prepared dataset; it becomes
        the ``qobs`` variable. Without it, CAMELS' ``OBS_RUN`` is used as ``qobs``.

    Returns
    -------
    SacsmaOutput
        ``predictions`` over the basins that have a file: ``qsim`` (``MOD_RUN``, mean over
        calibration seeds), ``qobs``, ``qobs_camels`` (``OBS_RUN``), ``ET`` (mm/day), attrs
        ``model`` = ``sacsma`` and ``coverage``.

    Raises
    ------
    DataError
        No selected basin has SAC-SMA output, a file is malformed or does not cover the
        period, or a basin is missing from ``qobs``.
    """
    from benchmark.data.sacsma import sacsma_paths

    dates = pd.date_range(period.start, period.end, freq="D")
    sims, obs_run, et, found, runs = [], [], [], [], {}
    for basin in basins:
        paths = sacsma_paths(raw_dir, basin, product)
        if not paths:
            continue
        frames = [_period_frame(p, period) for p in paths]
        sims.append(np.mean([f["MOD_RUN"].to_numpy() for f in frames], axis=0))
        et.append(np.mean([f["ET"].to_numpy() for f in frames], axis=0))
        obs_run.append(frames[0]["OBS_RUN"].to_numpy())
        found.append(basin)
        runs[basin] = [p.name.split("_")[1] for p in paths]
    if not found:
        folder = Path(raw_dir) / "model_output" / "flow_timeseries" / product
        raise DataError(f"none of the {len(basins)} selected basins has SAC-SMA output under {folder}")
    qobs_camels = np.stack(obs_run)
    if qobs is None:
        observed, source = qobs_camels, "CAMELS SAC-SMA file OBS_RUN"
    else:
        missing = [b for b in found if b not in set(map(str, qobs["basin"].values))]
        if missing:
            raise DataError(f"basin {missing[0]} is not in the prepared dataset")
        observed, source = qobs.sel(basin=found).reindex(date=dates).values, "prepared dataset (qobs)"
    mm = {"units": "mm/day"}
    output = SacsmaOutput(
        predictions=xr.Dataset(
            {
                "qsim": (("basin", "date"), np.stack(sims).astype(np.float32), {**mm, "long_name": "SAC-SMA MOD_RUN"}),
                "qobs": (("basin", "date"), observed.astype(np.float32), {**mm, "long_name": "observed streamflow"}),
                "qobs_camels": (("basin", "date"), qobs_camels.astype(np.float32), {**mm, "long_name": "SAC-SMA file OBS_RUN"}),
                "ET": (("basin", "date"), np.stack(et).astype(np.float32), {**mm, "long_name": "SAC-SMA ET"}),
            },
            coords={"basin": np.array(found, dtype=str), "date": dates.values.astype("datetime64[ns]")},
        ),
        basins_selected=list(basins),
        basins_with_output=found,
        runs_per_basin=runs,
    )
    output.predictions.attrs.update({
        "model": MODEL_NAME,
        "qobs_source": source,
        "coverage": output.coverage,
        "basins_without_output": " ".join(output.basins_without_output),
        "calibration_runs": "; ".join(f"{b}: {','.join(r)}" for b, r in runs.items()),
        "created_by": "baselines.sacsma",
    })
    return output


@dataclass
class SacsmaBaselineResult:
    """Outputs of :func:`run_sacsma_baseline`."""

    out_dir: Path
    output: SacsmaOutput
    per_basin: pd.DataFrame
    summary: dict[str, Any]
    per_basin_vs_obs_run: pd.DataFrame
    summary_vs_obs_run: dict[str, Any]
    wall_seconds: float


def run_sacsma_baseline(
    params: Params, *, out_dir: Path | None = None, dataset: xr.Dataset | None = None
) -> SacsmaBaselineResult:
    """Score the CAMELS SAC-SMA runs for the active profile and write the artifacts.

    Writes ``<out_dir>/predictions.nc``, ``metrics.json`` and ``per_basin_metrics.csv``
    (vs our ``qobs``) and ``<out_dir>/vs_obs_run/`` (the same metrics vs ``OBS_RUN``);
    ``out_dir`` defaults to ``<baselines.out_dir>/sacsma``. ``metrics.json`` adds
    ``n_basins_selected`` and ``n_basins_with_output`` to the evaluation summary.

    Raises
    ------
    HbvbenchError
        Missing data or no basin with SAC-SMA output.
    """
    from benchmark.evaluation import score_predictions, write_metrics

    start = time.perf_counter()
    out_dir = Path(out_dir) if out_dir is not None else resolve_path(params.baselines.out_dir) / MODEL_NAME
    if dataset is None:
        from benchmark.data.dataset import load_dataset

        dataset = load_dataset(params=params)
    basins = profile_basins(params, dataset["basin"].values)
    output = load_sacsma(resolve_path(params.data.raw_dir), basins, params.active.test,
                         params.data.forcing_product, qobs=dataset["qobs"])
    per_basin, summary = score_predictions(output.predictions, dataset)
    counts = {"n_basins_selected": len(basins), "n_basins_with_output": len(output.basins_with_output)}
    summary = {**summary, **counts}
    vs_obs = output.predictions.drop_vars("ET").assign(qobs=output.predictions["qobs_camels"])
    per_basin_obs, summary_obs = score_predictions(vs_obs, dataset)
    summary_obs = {**summary_obs, **counts}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_netcdf(out_dir / "predictions.nc", output.predictions)
    write_metrics(out_dir, per_basin, summary)
    (out_dir / "vs_obs_run").mkdir(exist_ok=True)
    write_metrics(out_dir / "vs_obs_run", per_basin_obs, summary_obs)
    return SacsmaBaselineResult(out_dir=out_dir, output=output, per_basin=per_basin, summary=summary,
                                per_basin_vs_obs_run=per_basin_obs, summary_vs_obs_run=summary_obs,
                                wall_seconds=time.perf_counter() - start)
