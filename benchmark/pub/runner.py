"""One fold and model of the PUB protocol: train on the other folds' basins, test on the held-out fold.

The differentiable models go through the ordinary trainer and evaluation with the active
profile's basins replaced (:func:`fold_params`): training sees only the training basins (the
network's input normalization is fitted on them, :func:`benchmark.training.normalization.fit_normalization`),
and the held-out evaluation (:func:`benchmark.training.evaluate.evaluate_trained` with
``held_out=True``) refuses any basin the checkpoint trained on. The LSTM goes through
neuralhydrology with a training and a test basin file (:func:`baselines.nh_lstm.run_lstm_baseline`).
Every run uses the profile's periods and its first seed; runs are not logged to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from baselines.nh_lstm import run_lstm_baseline
from benchmark.artifacts import pub_fold_dir, pub_model_dir, pub_work_dir
from benchmark.config import PUB_LSTM, Params
from benchmark.data.dataset import load_dataset
from benchmark.errors import ConfigError
from benchmark.evaluation import write_metrics
from benchmark.models.registry import get_model_spec
from benchmark.pub.folds import held_out_basins, profile_folds, training_basins
from benchmark.training.evaluate import evaluate_trained, load_trained
from benchmark.training.trainer import train_model


@dataclass(frozen=True)
class FoldResult:
    """What one (fold, model) run left behind."""

    fold: int
    model: str
    folder: Path
    train_basins: list[str]
    test_basins: list[str]
    summary: dict[str, Any]


def check_models(models: Sequence[str]) -> None:
    """ConfigError naming ``pub.models`` entries that are neither registry models nor ``lstm``."""
    unknown = []
    for name in models:
        if name == PUB_LSTM:
            continue
        try:
            get_model_spec(name)
        except KeyError:
            unknown.append(name)
    if unknown:
        hint = " (SAC-SMA is calibrated per basin: it has no ungauged-basin run)" if "sacsma" in unknown else ""
        raise ConfigError(f"pub.models: unknown models {unknown}; use registry names (dhbv, dhbv_adj, ...) or "
                          f"{PUB_LSTM!r}{hint}")


def fold_params(params: Params, basins: Sequence[str], fold: int) -> Params:
    """``params`` whose active profile runs on ``basins``, writing into the fold's PUB folders.

    Models and evaluations go to ``<pub.out_dir>/<profile>/fold_<i>/<model>/`` and the
    in-progress training state to ``.../work/fold_<i>/<model>/`` (:mod:`benchmark.artifacts`).
    The profile's folds are left out of the copy: they partition the whole profile, not
    ``basins``, and the copy is validated again wherever hyperparameters are applied.
    """
    profile = params.active.model_copy(update={"basins": sorted(basins)})
    folder = pub_fold_dir(params, fold)
    train = params.train.model_copy(update={"models_dir": folder, "eval_dir": folder,
                                            "work_dir": pub_work_dir(params, fold)})
    other_folds = {name: folds for name, folds in params.pub.folds.items() if name != params.profile}
    return params.model_copy(update={"profiles": {**params.profiles, params.profile: profile}, "train": train,
                                     "pub": params.pub.model_copy(update={"folds": other_folds})})


def run_fold(params: Params, fold: int, model: str, *, dataset: xr.Dataset | None = None) -> FoldResult:
    """Train ``model`` on every fold but ``fold`` (1-based) and score it on ``fold``'s basins.

    Parameters
    ----------
    params
        The validated configuration (the active profile's folds in ``pub.folds``).
    fold
        The held-out fold, 1-based.
    model
        A registry name or ``lstm``; must be in ``pub.models``.
    dataset
        The prepared dataset (default: loaded from ``data.processed_dir``).

    Returns
    -------
    FoldResult

    Raises
    ------
    ConfigError
        Unknown model or fold, folds that do not partition the profile's basins.
    """
    if model not in params.pub.models:
        raise ConfigError(f"--model {model}: not in pub.models {params.pub.models}")
    check_models([model])
    ds = load_dataset(params=params) if dataset is None else dataset
    folds = profile_folds(params, ds["basin"].values)
    test = held_out_basins(folds, fold)
    train = training_basins(folds, fold)
    if model == PUB_LSTM:
        summary = _run_lstm(params, fold, train, test, ds)
    else:
        summary = _run_differentiable(params, fold, model, train, test, ds)
    return FoldResult(fold, model, pub_model_dir(params, fold, model), train, test, summary)


def _run_differentiable(params: Params, fold: int, model: str, train: list[str], test: list[str],
                        ds: xr.Dataset) -> dict[str, Any]:
    train_params = fold_params(params, train, fold)
    seed = params.active.seeds[0]
    train_model(train_params, model, seed=seed, dataset=ds, track=False)
    trained = load_trained(train_params, model, seed)
    _, summary = evaluate_trained(fold_params(params, test, fold), trained, pub_model_dir(params, fold, model),
                                  dataset=ds, held_out=True)
    return summary


def _run_lstm(params: Params, fold: int, train: list[str], test: list[str], ds: xr.Dataset) -> dict[str, Any]:
    """The LSTM through neuralhydrology's training and test basin files; ``metrics.json`` also
    records both basin sets, as the held-out evaluation of the differentiable models does."""
    out = pub_model_dir(params, fold, PUB_LSTM)
    result = run_lstm_baseline(params, out_dir=out, dataset=ds, basins=train, test_basins=test)
    summary = {**result.summary, "train_basins": " ".join(train), "test_basins": " ".join(test)}
    write_metrics(out, result.per_basin, summary)
    return summary
