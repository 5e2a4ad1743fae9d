"""Evaluation of a trained differentiable HBV variant on the test period (docs/training.md#evaluation).

The trained network and HBV run over the test period with ``train.test_warmup_days`` (730)
days prepended (clipped at the start of the data) so the storages spin up; only the test
period is kept. The result is written as ``predictions.nc`` (:func:`predictions_dataset`: ``qsim``,
``qobs``, ``Q_unrouted``, ``Q2``, ``ET`` over ``(basin, date)``, plus the learned parameters
per basin as ``param_<NAME>`` — time mean over the test period and mean over the ``nmul``
components — and ``route_a``/``route_b``) and scored with :mod:`benchmark.evaluation`:
``metrics.json`` and ``per_basin_metrics.csv`` in ``<train.eval_dir>/<model>/``, plus a
hydrograph and a metric-CDF figure (PNG). Everything is logged to the (model, seed) MLflow
run opened by training. The metrics are those of docs/metrics.md.

Before anything runs, the checkpoint must be a finished training of this model, fit the
network this configuration builds, and come from this profile and basin set
(:mod:`benchmark.training.checkpoint`), with its own ``normalization.json``.

Failed basins (:func:`failed_basins`): a basin whose simulation produced a NaN or infinite
storage or flow on any simulated day (warm-up included), or whose Newton iteration did not
converge on more than ``train.max_not_converged_share`` of its simulated days (implicit
scheme; default 1 %), is marked ``failed: <reason>`` in ``per_basin_metrics.csv`` with its
metrics left empty, counted and listed in ``metrics.json`` and left out of every median; the
others are scored as usual. A not-converged day keeps the last Newton iterate, finite but off
the backward-Euler solution: a few such days among thousands barely move a basin's metrics,
a larger share means the solver, not the model, shaped the result. The evaluation folder is
locked while it is written.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from benchmark import atomic, evaluation, locks, tracking
from benchmark.artifacts import (
    CDF_NAME,
    CHECKPOINT_NAME,
    HYDROGRAPH_NAME,
    NORMALIZATION_NAME,
    PREDICTIONS_NAME,
    eval_dir,
    model_dir,
)
from benchmark.config import Params
from benchmark.data.dataset import load_dataset, select_profile_basins
from benchmark.errors import ConfigError, TrainingError
from benchmark.hyperparams import params_as_trained
from benchmark.models.registry import get_model_spec
from benchmark.training.checkpoint import check_complete, check_model, load_checkpoint, network_structure
from benchmark.training.device import resolve_device, resolve_dtype
from benchmark.training.network import build_model
from benchmark.training.normalization import NormalizationStats
from benchmark.training.series import check_forcing, day_index, series_tensors
from benchmark.training.solver_stats import merge_solver_stats, public_stats, summarize_solver_stats
from benchmark.training.tracking_glue import log_evaluation

OUTPUT_SERIES = ("Q", "Q_unrouted", "Q2", "ET")


def test_bounds(dates: pd.DatetimeIndex, params: Params) -> tuple[int, int, int]:
    """Index of the first warm-up day, the first test day and the last test day."""
    profile = params.active
    start = day_index(dates, profile.test.start, "test start")
    end = day_index(dates, profile.test.end, "test end")
    return max(0, start - params.train.test_warmup_days), start, end


@dataclass
class Prediction:
    """A model run over a period (see :func:`simulate_period`).

    Attributes
    ----------
    series
        ``Q``, ``Q_unrouted``, ``Q2`` (when the structure has it), ``ET``: arrays ``[kept days, basins]`` (mm/day).
    parameters
        ``param_<NAME>`` and ``route_a``/``route_b``: arrays ``[basins]`` (physical units),
        time mean over the kept days and mean over components.
    solver_stats
        ``simulate``'s numeric stats accumulated over the chunks of basins.
    non_finite, not_converged
        Bool ``[simulated days, basins]`` over the warm-up and kept days: a NaN/inf storage or
        flow, and (implicit scheme) a day whose Newton iteration did not converge.
    """

    series: dict[str, np.ndarray]
    parameters: dict[str, np.ndarray]
    solver_stats: dict[str, float]
    non_finite: np.ndarray
    not_converged: np.ndarray


def _day_flags(stats: Any, key: str, shape: tuple[int, int]) -> np.ndarray:
    flags = stats.get(key) if isinstance(stats, dict) else None
    if flags is None:
        return np.zeros(shape, dtype=bool)
    return flags.detach().cpu().numpy().astype(bool)


@torch.no_grad()
def simulate_period(model: Any, data: Any, first: int, start: int, end: int, chunk_basins: int) -> Prediction:
    """Run ``model`` over days ``first..end`` in chunks of basins and keep days ``start..end``."""
    model.eval()
    keep = slice(start - first, end - first + 1)
    series: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_SERIES}
    parameters: dict[str, list[np.ndarray]] = {}
    flags: dict[str, list[np.ndarray]] = {"non_finite": [], "not_converged": []}
    stats: dict[str, float] = {}
    n_basins = data.inputs.shape[1]
    for lo in range(0, n_basins, chunk_basins):
        cols = slice(lo, min(lo + chunk_basins, n_basins))
        out = model(data.inputs[first : end + 1, cols], data.forcing[first : end + 1, cols])
        for name in OUTPUT_SERIES:
            if name in out:  # a structure without a baseflow series (Q2) has no BFI
                series[name].append(out[name][keep].detach().cpu().double().numpy())
        for name, value in out["params"].items():
            value = value.detach()
            if value.dim() >= 2 and value.shape[0] == end - first + 1 and name in model.layout.dynamic_parameters:
                value = value[keep].mean(dim=0)
            if value.dim() == 2:
                value = value.mean(dim=-1)
            parameters.setdefault(f"param_{name}", []).append(value.cpu().double().numpy())
        for name, value in zip(("route_a", "route_b"), out["routing"] or ()):  # None: the structure routes itself
            parameters.setdefault(name, []).append(value.detach().cpu().double().numpy())
        for key, parts in flags.items():
            parts.append(_day_flags(out.get("stats"), key, (end - first + 1, cols.stop - cols.start)))
        merge_solver_stats(stats, summarize_solver_stats(out.get("stats")))
    return Prediction(
        series={name: np.concatenate(parts, axis=1) for name, parts in series.items() if parts},
        parameters={name: np.concatenate(parts) for name, parts in parameters.items()},
        solver_stats=public_stats(stats),
        non_finite=np.concatenate(flags["non_finite"], axis=1),
        not_converged=np.concatenate(flags["not_converged"], axis=1),
    )


def predict(
    model: Any, data: Any, first: int, start: int, end: int, chunk_basins: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """``series, parameters, solver_stats`` of :func:`simulate_period` (without the day flags)."""
    run = simulate_period(model, data, first, start, end, chunk_basins)
    return run.series, run.parameters, run.solver_stats


def failed_basins(run: Prediction, basins: tuple[str, ...], dates: pd.DatetimeIndex,
                  max_not_converged_share: float) -> dict[str, str]:
    """The basins whose simulation cannot be trusted, with the reason (the evaluation rule).

    A basin fails when any simulated day (warm-up or test) has a non-finite storage or
    flow, or when the share of its simulated days on which Newton did not converge (implicit
    scheme; the state is then the last iterate, finite but off the implicit solution) is
    above ``max_not_converged_share`` (``train.max_not_converged_share``). ``dates`` are the
    simulated days.
    """
    failed: dict[str, str] = {}
    n_days = run.non_finite.shape[0]
    for column, basin in enumerate(basins):
        bad = np.flatnonzero(run.non_finite[:, column])
        if bad.size:
            failed[basin] = (f"non-finite simulated storage or flow from {dates[bad[0]].date()} "
                             f"({bad.size} of {n_days} days)")
            continue
        share = float(run.not_converged[:, column].mean()) if n_days else 0.0
        if share > max_not_converged_share:
            failed[basin] = (f"Newton did not converge on {int(run.not_converged[:, column].sum())} of {n_days} days "
                             f"({share:.1%} > train.max_not_converged_share {max_not_converged_share:.1%})")
    return failed


def check_normalization(stats: NormalizationStats, ckpt: dict[str, Any], path: Path) -> None:
    """TrainingError when ``normalization.json`` is not the one written with the checkpoint."""
    setup = ckpt.get("setup", {})
    differs = []
    if list(stats.basins) != list(setup.get("basins", [])):
        differs.append("basins")
    if (stats.train_start, stats.train_end) != (setup.get("train_start"), setup.get("train_end")):
        differs.append(f"training period {stats.train_start}..{stats.train_end} vs "
                       f"{setup.get('train_start')}..{setup.get('train_end')}")
    if stats.n_inputs != ckpt.get("n_inputs"):
        differs.append(f"{stats.n_inputs} inputs vs {ckpt.get('n_inputs')}")
    if differs:
        raise TrainingError(f"{path} does not belong to the checkpoint beside it ({'; '.join(differs)}); "
                            "train the model again")


def predictions_dataset(
    model_name: str, basins: tuple[str, ...], dates: pd.DatetimeIndex, qobs: np.ndarray,
    series: dict[str, np.ndarray], parameters: dict[str, np.ndarray],
) -> xr.Dataset:
    """The ``predictions.nc`` content (dims ``basin``, ``date``; float32)."""
    coords = {"basin": list(basins), "date": dates}
    data_vars: dict[str, Any] = {
        "qsim": (("basin", "date"), series["Q"].T.astype(np.float32), {"units": "mm/day", "long_name": "routed streamflow"}),
        "qobs": (("basin", "date"), qobs.T.astype(np.float32), {"units": "mm/day", "long_name": "observed streamflow"}),
    }
    if "Q2" in series:  # the baseflow index needs both; a structure without a baseflow series has no BFI
        data_vars["Q_unrouted"] = (("basin", "date"), series["Q_unrouted"].T.astype(np.float32), {"units": "mm/day"})
        data_vars["Q2"] = (("basin", "date"), series["Q2"].T.astype(np.float32),
                           {"units": "mm/day", "long_name": "baseflow"})
    data_vars["ET"] = (("basin", "date"), series["ET"].T.astype(np.float32), {"units": "mm/day", "long_name": "actual ET"})
    for name, values in parameters.items():
        data_vars[name] = (("basin",), values.astype(np.float32), {"long_name": "test-period and component mean"})
    return xr.Dataset(data_vars, coords=coords, attrs={"model": model_name})


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
    if ax.get_lines():  # every basin failed: an empty plot, no legend
        ax.legend()
    fig.tight_layout()
    return fig


@dataclass
class TrainedNetwork:
    """A trained model as evaluation needs it, wherever it came from (checkpoint, MLflow model).

    Attributes
    ----------
    spec
        The registry entry of the model (``benchmark.models.registry``).
    state_dict
        The network's weights.
    stats
        The input normalization fitted on the training period.
    setup
        The training setup (``checkpoint["setup"]``: profile, basins, shape, solver settings, ...).
    seed, epochs
        Training seed and number of epochs trained.
    mlflow_run_id
        The MLflow run of the training, when known.
    checkpoint
        The whole checkpoint when the network was read from one (its format, structure and
        setup are checked against the model built for evaluation); None for an MLflow model.
    source
        Where it was read (a checkpoint path or a model URI), for messages.
    """

    spec: Any
    state_dict: dict[str, torch.Tensor]
    stats: NormalizationStats
    setup: dict[str, Any]
    seed: int
    epochs: int
    mlflow_run_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    source: str = ""


def model_spec(model_name: str) -> Any:
    """The registry entry of ``model_name`` (ConfigError naming it when unknown)."""
    try:
        return get_model_spec(model_name)
    except KeyError as exc:
        raise ConfigError(f"unknown model {model_name!r}: {exc}") from None


def load_trained(params: Params, model_name: str, seed: int | None = None) -> TrainedNetwork:
    """The finished training of ``model_name`` from its model folder (checkpoint + normalization).

    Raises
    ------
    TrainingError
        No checkpoint, an unreadable or unfinished one (:mod:`benchmark.training.checkpoint`).
    """
    spec = model_spec(model_name)
    mdir = model_dir(params, model_name, seed)
    ckpt_path = mdir / CHECKPOINT_NAME
    ckpt = load_checkpoint(ckpt_path)
    check_complete(ckpt, ckpt_path, model_name)
    stats = NormalizationStats.load(mdir / NORMALIZATION_NAME)
    return TrainedNetwork(spec, ckpt["model_state"], stats, dict(ckpt["setup"]), int(ckpt["seed"]), int(ckpt["epoch"]),
                          ckpt.get("mlflow_run_id"), checkpoint=ckpt, source=str(ckpt_path))


def build_trained(params: Params, trained: TrainedNetwork, basins: tuple[str, ...] | None = None) -> Any:
    """The network + model with the trained weights, on ``train.device`` in ``train.dtype``.

    A network read from a checkpoint is checked first: another model, structure or
    configuration (profile, and ``basins`` — the basins it will run on, default those it was
    normalized on) is refused naming the difference.
    """
    params = params_as_trained(params, trained.setup)  # shape/solver of a --hyperparams or --init-from run
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    model = build_model(trained.spec, params, trained.stats.n_inputs).to(device=device, dtype=dtype)
    if trained.checkpoint is not None:  # refuse weights of another model, structure or configuration by name
        check_model(trained.checkpoint, Path(trained.source), model_name=trained.spec.name,
                    structure=network_structure(model, trained.spec, trained.stats.n_inputs),
                    setup={"profile": params.profile,
                           "basins": list(trained.stats.basins if basins is None else basins)})
        check_normalization(trained.stats, trained.checkpoint, Path(trained.source).parent / NORMALIZATION_NAME)
    model.network.load_state_dict(trained.state_dict)
    return model


def _check_setup(params: Params, trained: TrainedNetwork, basins: tuple[str, ...]) -> None:
    """ConfigError when ``trained`` comes from another profile or basin set than this evaluation."""
    differs = []
    if trained.setup.get("profile") != params.profile:
        differs.append(f"profile: {trained.setup.get('profile')!r} when trained, {params.profile!r} now")
    if list(trained.setup.get("basins", basins)) != list(basins):
        differs.append("basins: the trained basin set differs from this profile's")
    if differs:
        raise ConfigError(f"{trained.source or trained.spec.name} was trained on another configuration: "
                          + "; ".join(differs) + f"; train {trained.spec.name} again with this configuration")


def check_held_out(trained_on: tuple[str, ...], basins: tuple[str, ...], source: str) -> None:
    """ConfigError when a held-out evaluation would score basins the model trained on.

    Parameters
    ----------
    trained_on
        The checkpoint's training basins.
    basins
        The basins to evaluate as ungauged.
    source
        The checkpoint (or model) named in the message.
    """
    overlap = sorted(set(trained_on) & set(basins))
    if overlap:
        raise ConfigError(f"{source} was trained on basins {overlap}; a held-out (ungauged) evaluation must not "
                          "score them: take them out of the test basins or train without them")


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
    if track:  # a corrupt, locked or unreachable store fails now, before any output is written
        tracking.check_store()
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
    held_out: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Evaluate ``trained`` on the test period of the active profile; write the results to ``out``.

    ``predictions.nc``, ``metrics.json``, ``per_basin_metrics.csv`` and the figures, written
    atomically while ``out`` is locked; failed basins (:func:`failed_basins`) are marked and
    left out of the medians. With ``track``, also logged to ``trained.mlflow_run_id``
    (re-opened; a new run when unknown).

    ``held_out``: the ungauged-basin mode (:mod:`benchmark.pub`). The profile's basins must
    then be basins the model never trained on: any overlap with the checkpoint's training
    basins is refused (ConfigError naming them), since scoring them would report training
    basins as ungauged ones. ``metrics.json`` records both sets (``train_basins``,
    ``test_basins``, space-separated). Without it the profile's basins must be the
    training basins themselves (the gauged evaluation).
    """
    tic = started if started is not None else time.perf_counter()
    if track:
        tracking.check_store()
    if dataset is None:
        dataset = load_dataset(params=params)
    ds = select_profile_basins(dataset, params)
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    data = series_tensors(ds, trained.stats, device, dtype)
    trained_on = tuple(str(b) for b in trained.setup.get("basins", trained.stats.basins))
    if held_out:
        check_held_out(trained_on, data.basins, trained.source or trained.spec.name)
    if trained.checkpoint is None:  # an MLflow model: its recorded setup (a checkpoint is checked on build)
        _check_setup(params, trained, trained_on if held_out else data.basins)
    first, start, end = test_bounds(data.dates, params)
    check_forcing(data, first, end, "test period and its warm-up")

    model = build_trained(params, trained, trained_on if held_out else data.basins)
    model_name = trained.spec.name
    run = simulate_period(model, data, first, start, end, max(1, params.active.batch_basins))
    failed = failed_basins(run, data.basins, data.dates[first : end + 1], params.train.max_not_converged_share)
    qobs = data.qobs[start : end + 1].cpu().double().numpy()
    pred = predictions_dataset(model_name, data.basins, data.dates[start : end + 1], qobs, run.series, run.parameters)
    pred.attrs.update({"seed": trained.seed, "epochs": trained.epochs, "profile": params.profile,
                       "failed_basins": " ".join(sorted(failed))})

    per_basin, summary = evaluation.score_predictions(pred, ds, failed=failed)
    if held_out:
        summary = {**summary, "train_basins": " ".join(trained_on), "test_basins": " ".join(data.basins)}
    with locks.hold(out, f"hbvbench evaluate --model {model_name} --seed {trained.seed}"):
        atomic.write_netcdf(out / PREDICTIONS_NAME, pred)
        evaluation.write_metrics(out, per_basin, summary)
        figures = {HYDROGRAPH_NAME: hydrograph_figure(pred, per_basin), CDF_NAME: cdf_figure(per_basin, model_name)}
        for name, fig in figures.items():
            atomic.save_figure(out / name, fig, dpi=110)
        wall = time.perf_counter() - tic
        if track:
            log_evaluation(
                params, trained.spec, trained.seed, trained.mlflow_run_id, out,
                pred=pred, per_basin=per_basin, summary=summary, figures=figures,
                extra_metrics={
                    "test_wall_s": wall,
                    "test_peak_memory_mb": tracking.peak_memory_mb(device),
                    **{f"test_solver_{k}": v for k, v in run.solver_stats.items()},
                },
            )
    if failed:
        print(f"hbvbench evaluate --model {model_name}: {len(failed)} of {len(data.basins)} basins failed and are "
              f"left out of the medians: " + "; ".join(f"{b}: {r}" for b, r in sorted(failed.items())), file=sys.stderr)
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)
    return per_basin, summary
