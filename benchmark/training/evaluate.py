"""Evaluation of a trained differentiable HBV variant on the test period (SPEC.md sections 5-6).

The trained network and HBV run over the test period with ``train.test_warmup_days`` (730)
days prepended (clipped at the start of the data) so the storages spin up; only the test
period is kept. The result is written as ``predictions.nc`` (:func:`predictions_dataset`: ``qsim``,
``qobs``, ``Q_unrouted``, ``Q2``, ``ET`` over ``(basin, date)``, plus the learned parameters
per basin as ``param_<NAME>`` — time mean over the test period and mean over the ``nmul``
components — and ``route_a``/``route_b``) and scored with :mod:`benchmark.evaluation`:
``metrics.json`` and ``per_basin_metrics.csv`` in ``<train.eval_dir>/<model>/``, plus a
hydrograph and a metric-CDF figure (PNG). Everything is logged to the (model, seed) MLflow
run opened by training.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from benchmark.config import Params
from benchmark.errors import ConfigError, TrainingError
from benchmark.training.normalization import NormalizationStats
from benchmark.training.trainer import (
    CHECKPOINT_NAME,
    NORMALIZATION_NAME,
    build_model,
    check_forcing,
    day_index,
    eval_dir,
    load_checkpoint,
    merge_solver_stats,
    public_stats,
    model_dir,
    readable_temp_file,
    peak_memory_mb,
    resolve_device,
    resolve_dtype,
    select_basins,
    series_tensors,
    summarize_solver_stats,
)

PREDICTIONS_NAME = "predictions.nc"
HYDROGRAPH_NAME = "hydrographs.png"
CDF_NAME = "metric_cdf.png"
OUTPUT_SERIES = ("Q", "Q_unrouted", "Q2", "ET")


def test_bounds(dates: pd.DatetimeIndex, params: Params) -> tuple[int, int, int]:
    """Index of the first warm-up day, the first test day and the last test day."""
    profile = params.active
    start = day_index(dates, profile.test.start, "test start")
    end = day_index(dates, profile.test.end, "test end")
    return max(0, start - params.train.test_warmup_days), start, end


@torch.no_grad()
def predict(
    model: Any, data: Any, first: int, start: int, end: int, chunk_basins: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Run ``model`` over days ``first..end`` in chunks of basins and keep days ``start..end``.

    Returns
    -------
    series
        ``Q``, ``Q_unrouted``, ``Q2``, ``ET``: arrays ``[test days, basins]`` (mm/day).
    parameters
        ``param_<NAME>`` and ``route_a``/``route_b``: arrays ``[basins]`` (physical units),
        time mean over the test days and mean over components.
    solver_stats
        ``simulate``'s numeric stats accumulated over the chunks.
    """
    model.eval()
    keep = slice(start - first, end - first + 1)
    series: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_SERIES}
    parameters: dict[str, list[np.ndarray]] = {}
    stats: dict[str, float] = {}
    n_basins = data.inputs.shape[1]
    for lo in range(0, n_basins, chunk_basins):
        cols = slice(lo, min(lo + chunk_basins, n_basins))
        out = model(data.inputs[first : end + 1, cols], data.forcing[first : end + 1, cols])
        for name in OUTPUT_SERIES:
            series[name].append(out[name][keep].detach().cpu().double().numpy())
        for name, value in out["params"].items():
            value = value.detach()
            if value.dim() >= 2 and value.shape[0] == end - first + 1 and name in model.layout.dynamic_parameters:
                value = value[keep].mean(dim=0)
            if value.dim() == 2:
                value = value.mean(dim=-1)
            parameters.setdefault(f"param_{name}", []).append(value.cpu().double().numpy())
        for name, value in zip(("route_a", "route_b"), out["routing"]):
            parameters.setdefault(name, []).append(value.detach().cpu().double().numpy())
        merge_solver_stats(stats, summarize_solver_stats(out.get("stats")))
    return (
        {name: np.concatenate(parts, axis=1) for name, parts in series.items()},
        {name: np.concatenate(parts) for name, parts in parameters.items()},
        public_stats(stats),
    )


def predictions_dataset(
    model_name: str, basins: tuple[str, ...], dates: pd.DatetimeIndex, qobs: np.ndarray,
    series: dict[str, np.ndarray], parameters: dict[str, np.ndarray],
) -> xr.Dataset:
    """The ``predictions.nc`` content (dims ``basin``, ``date``; float32)."""
    coords = {"basin": list(basins), "date": dates}
    data_vars: dict[str, Any] = {
        "qsim": (("basin", "date"), series["Q"].T.astype(np.float32), {"units": "mm/day", "long_name": "routed streamflow"}),
        "qobs": (("basin", "date"), qobs.T.astype(np.float32), {"units": "mm/day", "long_name": "observed streamflow"}),
        "Q_unrouted": (("basin", "date"), series["Q_unrouted"].T.astype(np.float32), {"units": "mm/day"}),
        "Q2": (("basin", "date"), series["Q2"].T.astype(np.float32), {"units": "mm/day", "long_name": "baseflow"}),
        "ET": (("basin", "date"), series["ET"].T.astype(np.float32), {"units": "mm/day", "long_name": "actual ET"}),
    }
    for name, values in parameters.items():
        data_vars[name] = (("basin",), values.astype(np.float32), {"long_name": "test-period and component mean"})
    return xr.Dataset(data_vars, coords=coords, attrs={"model": model_name})


def write_netcdf(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = readable_temp_file(path.parent, path.name)
    os.close(fd)
    try:
        ds.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hydrograph_figure(pred: xr.Dataset, per_basin: pd.DataFrame) -> Any:
    """Observed vs simulated flow of the best, median and worst basin (by NSE), last test year."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nse = per_basin["NSE"].dropna().sort_values() if "NSE" in per_basin else pd.Series(dtype=float)
    picks = [nse.index[-1], nse.index[len(nse) // 2], nse.index[0]] if len(nse) else list(per_basin.index[:1])
    picks = list(dict.fromkeys(picks))
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 2.6 * len(picks)), squeeze=False)
    last_year = pred["date"].values[-365:]
    for ax, basin in zip(axes[:, 0], picks):
        sub = pred.sel(basin=str(basin), date=last_year)
        ax.plot(sub["date"].values, sub["qobs"].values, color="black", lw=0.8, label="observed")
        ax.plot(sub["date"].values, sub["qsim"].values, color="tab:blue", lw=0.8, label="simulated")
        score = nse.get(basin, np.nan)
        ax.set_title(f"{basin} (NSE {score:.2f})", fontsize=9)
        ax.set_ylabel("Q (mm/day)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"{pred.attrs.get('model', '')}: hydrographs, last test year", fontsize=10)
    fig.tight_layout()
    return fig


def cdf_figure(per_basin: pd.DataFrame, model_name: str) -> Any:
    """Empirical CDFs of NSE and KGE across basins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for key in ("NSE", "KGE"):
        if key in per_basin:
            values = np.sort(per_basin[key].dropna().to_numpy())
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=key)
    ax.set_xlim(left=max(-1.0, ax.get_xlim()[0]), right=1.0)
    ax.set_xlabel("metric value")
    ax.set_ylabel("fraction of basins")
    ax.set_title(f"{model_name}: CDF across basins", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


@dataclass
class TrainedNetwork:
    """A trained model as evaluation needs it, wherever it came from (checkpoint, MLflow model).

    Attributes
    ----------
    spec
        The registry entry of the HBV variant (``benchmark.models.registry``).
    state_dict
        The network's weights.
    stats
        The input normalization fitted on the training period.
    setup
        The training setup (``checkpoint["setup"]``: profile, shape, solver settings, ...).
    seed, epochs
        Training seed and number of epochs trained.
    mlflow_run_id
        The MLflow run of the training, when known.
    """

    spec: Any
    state_dict: dict[str, torch.Tensor]
    stats: NormalizationStats
    setup: dict[str, Any]
    seed: int
    epochs: int
    mlflow_run_id: str | None = None


def model_spec(model_name: str) -> Any:
    """The registry entry of ``model_name`` (ConfigError naming it when unknown)."""
    from benchmark.models.registry import get_model_spec

    try:
        return get_model_spec(model_name)
    except KeyError as exc:
        raise ConfigError(f"unknown model {model_name!r}: {exc}") from None


def load_trained(params: Params, model_name: str, seed: int | None = None) -> TrainedNetwork:
    """The trained ``model_name`` of the active profile from its model folder (checkpoint + normalization)."""
    spec = model_spec(model_name)
    mdir = model_dir(params, model_name, seed)
    ckpt = load_checkpoint(mdir / CHECKPOINT_NAME)
    if ckpt["setup"]["profile"] != params.profile:
        raise TrainingError(
            f"{mdir / CHECKPOINT_NAME} was trained on profile {ckpt['setup']['profile']!r}, not {params.profile!r}; "
            "train it again on this profile"
        )
    stats = NormalizationStats.load(mdir / NORMALIZATION_NAME)
    return TrainedNetwork(spec, ckpt["model_state"], stats, dict(ckpt["setup"]), int(ckpt["seed"]), int(ckpt["epoch"]),
                          ckpt.get("mlflow_run_id"))


def build_trained(params: Params, trained: TrainedNetwork) -> Any:
    """The network + HBV variant with the trained weights, on ``train.device`` in ``train.dtype``."""
    from benchmark.tuning.space import params_as_trained

    params = params_as_trained(params, trained.setup)  # shape/solver of a --hyperparams or --init-from run
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    model = build_model(trained.spec, params, trained.stats.n_inputs).to(device=device, dtype=dtype)
    model.network.load_state_dict(trained.state_dict)
    return model


def evaluate_model(
    params: Params,
    model_name: str,
    *,
    seed: int | None = None,
    dataset: xr.Dataset | None = None,
    track: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate the trained ``model_name`` of the active profile on its test period.

    Parameters
    ----------
    params
        The validated configuration (same profile as training).
    model_name
        Registry name of a model trained by :func:`~benchmark.training.trainer.train_model`.
    seed
        The training seed (default: the profile's first; other seeds live in ``seed_<S>/``).
    dataset
        The processed dataset (default: ``load_dataset(params=params)``).
    track
        Log to the MLflow run of the training (re-opened by id).

    Returns
    -------
    per_basin, summary
        As :func:`benchmark.evaluation.score_predictions`.
    """
    tic = time.perf_counter()
    trained = load_trained(params, model_name, seed)
    return evaluate_trained(params, trained, eval_dir(params, model_name, seed), dataset=dataset, track=track,
                            started=tic)


def evaluate_trained(
    params: Params,
    trained: TrainedNetwork,
    out: Path,
    *,
    dataset: xr.Dataset | None = None,
    track: bool = False,
    started: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate ``trained`` on the test period of the active profile; write the results to ``out``.

    ``predictions.nc``, ``metrics.json``, ``per_basin_metrics.csv`` and the figures; with
    ``track``, also logged to ``trained.mlflow_run_id`` (re-opened; a new run when unknown).
    """
    from benchmark import evaluation

    tic = started if started is not None else time.perf_counter()
    if dataset is None:
        from benchmark.data.dataset import load_dataset

        dataset = load_dataset(params=params)
    ds = select_basins(dataset, params.active)
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    data = series_tensors(ds, trained.stats, device, dtype)
    first, start, end = test_bounds(data.dates, params)
    check_forcing(data, first, end, "test period and its warm-up")

    model = build_trained(params, trained)
    model_name = trained.spec.name
    chunk = max(1, params.active.batch_basins)
    series, parameters, solver_stats = predict(model, data, first, start, end, chunk)
    qobs = data.qobs[start : end + 1].cpu().double().numpy()
    pred = predictions_dataset(model_name, data.basins, data.dates[start : end + 1], qobs, series, parameters)
    pred.attrs.update({"seed": trained.seed, "epochs": trained.epochs, "profile": params.profile})

    per_basin, summary = evaluation.score_predictions(pred, ds)
    write_netcdf(pred, out / PREDICTIONS_NAME)
    evaluation.write_metrics(out, per_basin, summary)
    figures = {HYDROGRAPH_NAME: hydrograph_figure(pred, per_basin), CDF_NAME: cdf_figure(per_basin, model_name)}
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
    wall = time.perf_counter() - tic
    if track:
        from benchmark.training.tracking_glue import log_evaluation

        log_evaluation(
            params, trained.spec, trained.seed, trained.mlflow_run_id, out,
            pred=pred, per_basin=per_basin, summary=summary, figures=figures,
            extra_metrics={
                "test_wall_s": wall,
                "test_peak_memory_mb": peak_memory_mb(device),
                **{f"test_solver_{k}": v for k, v in solver_stats.items()},
            },
        )
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)
    return per_basin, summary
