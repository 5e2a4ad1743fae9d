"""One Optuna trial: train with sampled hyperparameters, score the validation period, log it.

Each trial trains the model with :func:`benchmark.training.trainer.train_model` (its own
output folder ``<tune.out_dir>/<study>/trial_<NNNN>/``, no MLflow run of its own) on the
training period up to the day before the validation period. After every epoch the network
of the fresh checkpoint is run over the validation period (with ``train.test_warmup_days``
of warm-up) and scored; the score is reported to Optuna, which may prune the trial. The
objective is the score after the last epoch, and the network of that epoch is kept as the
trial's ``network.pt`` (MLflow artifact ``network/network.pt`` and a local file), which
``hbvbench train --init-from`` reads.

MLflow: one run per trial, a child of the study's parent run (tag ``mlflow.parentRunId``),
with the hyperparameters as params ``hp.*``, per-epoch ``train_loss`` and ``val_<metric>``
curves, the ``objective`` metric and the Optuna state as tag ``optuna.state``. A trial that
raises or scores NaN ends FAILED with ``error.txt`` (via :func:`benchmark.tracking.run`) and
its message is stored as the Optuna trial's ``error`` user attribute.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from benchmark import atomic, tracking
from benchmark.artifacts import CHECKPOINT_NAME, NORMALIZATION_NAME
from benchmark.config import Params, resolve_path
from benchmark.data.dataset import select_profile_basins
from benchmark.errors import ConfigError, TrainingError
from benchmark.metrics import basin_metrics
from benchmark.models.registry import get_model_spec
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.device import resolve_device, resolve_dtype
from benchmark.training.evaluate import predict
from benchmark.training.network import build_model
from benchmark.training.normalization import NormalizationStats
from benchmark.training.series import check_forcing, day_index, series_tensors
from benchmark.training.trainer import train_model
from benchmark.tuning.space import (
    apply_hyperparams,
    check_dynamic_parameters,
    current_hyperparams,
    suggest,
    training_end_before,
    validation_period,
)

#: Test hook: comma-separated trial numbers that fail on purpose after their first epoch.
FAIL_TRIALS_ENV = "HBVBENCH_TUNE_FAIL_TRIALS"
NETWORK_FILE = "network.pt"
NETWORK_ARTIFACT_DIR = "network"
NETWORK_FORMAT = "hbvbench-network-1"

#: Basin metrics a study may optimize and whether larger is better.
METRIC_DIRECTIONS: dict[str, str] = {
    "NSE": "maximize",
    "KGE": "maximize",
    "KGE12": "maximize",
    "KGE_r": "maximize",
    "r": "maximize",
    "RMSE": "minimize",
    "lowRMSE": "minimize",
    "midRMSE": "minimize",
    "peakRMSE": "minimize",
    "absFLV": "minimize",
    "absFHV": "minimize",
}


def metric_direction(metric: str) -> str:
    """``maximize`` / ``minimize`` for a basin metric; ConfigError for metrics without a direction."""
    if metric not in METRIC_DIRECTIONS:
        raise ConfigError(
            f"tune.metric {metric!r} cannot be an objective; choose one of {sorted(METRIC_DIRECTIONS)}"
        )
    return METRIC_DIRECTIONS[metric]


def trial_dir(params: Params, study_name: str, number: int) -> Path:
    """``<tune.out_dir>/<study>/trial_<NNNN>`` (absolute)."""
    return resolve_path(params.tune.out_dir) / study_name / f"trial_{number:04d}"


def trial_params(params: Params, hyperparams: dict[str, Any], out_dir: Path) -> Params:
    """The configuration a trial trains with: hyperparameters applied, training period cut
    before the validation period, checkpoints (and the in-progress state) in ``out_dir``,
    ``tune.epochs`` if set."""
    period = validation_period(params)
    train_updates: dict[str, Any] = {"models_dir": out_dir, "work_dir": out_dir / "work"}
    if params.tune.epochs is not None:
        train_updates["epochs"] = params.tune.epochs
    # the trial's score is its validation metric; the profile's monitoring curve would only cost time
    profile_updates = {"train": {"start": params.active.train.start, "end": training_end_before(period, params)},
                       "validation": None}
    trial = apply_hyperparams(
        params, hyperparams, source="the trial", profile_updates=profile_updates, train_updates=train_updates
    )
    # pin the study's validation period: derived from the shortened training period it would move
    return trial.model_copy(update={"tune": trial.tune.model_copy(update={"validation": period})})


def aggregate_scores(values: np.ndarray, how: str) -> float:
    """Median or mean of the finite per-basin values; NaN when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan
    return float(np.median(finite) if how == "median" else np.mean(finite))


class ValidationScorer:
    """Scores the latest checkpoint of a training folder on the validation period.

    Parameters
    ----------
    params
        The trial's configuration (as trained).
    model_name
        Registry name.
    dataset
        The processed dataset (all basins; the profile's are selected).
    model_folder
        ``<models_dir>/<model>`` with ``checkpoint.pt`` and ``normalization.json``.
    """

    def __init__(self, params: Params, model_name: str, dataset: xr.Dataset, model_folder: Path) -> None:
        self.params, self.model_name, self.folder = params, model_name, model_folder
        self.spec = get_model_spec(model_name)
        self.ds = select_profile_basins(dataset, params)
        self.period = validation_period(params)
        self.device, self.dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
        self._data: Any = None

    def _series(self) -> Any:
        if self._data is None:
            stats = NormalizationStats.load(self.folder / NORMALIZATION_NAME)
            self._data = (stats, series_tensors(self.ds, stats, self.device, self.dtype))
        return self._data

    def score(self, metric: str, aggregate: str) -> tuple[float, dict[str, Any]]:
        """``aggregate`` of ``metric`` across basins for the current checkpoint, and the network payload.

        Runs under :func:`torch.random.fork_rng` so the training's random stream is untouched.
        """
        stats, data = self._series()
        start = day_index(data.dates, self.period.start, "validation start")
        end = day_index(data.dates, self.period.end, "validation end")
        first = max(0, start - self.params.train.test_warmup_days)
        check_forcing(data, first, end, "validation period and its warm-up")
        ckpt = load_checkpoint(self.folder / CHECKPOINT_NAME)
        with torch.random.fork_rng(devices=[]):
            model = build_model(self.spec, self.params, stats.n_inputs).to(device=self.device, dtype=self.dtype)
        model.network.load_state_dict(ckpt["model_state"])
        series, _, _ = predict(model, data, first, start, end, max(1, self.params.active.batch_basins))
        qobs = data.qobs[start : end + 1].cpu().double().numpy()
        values = np.array([basin_metrics(series["Q"][:, i], qobs[:, i])[metric] for i in range(qobs.shape[1])])
        payload = network_payload(self.model_name, model, ckpt, self.params)
        return aggregate_scores(values, aggregate), payload


def network_payload(model_name: str, model: Any, ckpt: dict[str, Any], params: Params) -> dict[str, Any]:
    """What ``network.pt`` holds: weights plus what is needed to load them into another variant."""
    return {
        "format": NETWORK_FORMAT,
        "model": model_name,
        "epoch": int(ckpt["epoch"]),
        "state_dict": {k: v.detach().cpu().clone() for k, v in ckpt["model_state"].items()},
        "parameter_names": list(model.layout.parameter_names),
        "dynamic_parameters": list(model.layout.dynamic_parameters),
        "nmul": int(model.layout.nmul),
        "n_inputs": int(ckpt["n_inputs"]),
        "hyperparams": current_hyperparams(params),
    }


def failing_trials() -> set[int]:
    """Trial numbers listed in ``$HBVBENCH_TUNE_FAIL_TRIALS`` (the failure-injection test hook)."""
    raw = os.environ.get(FAIL_TRIALS_ENV, "")
    return {int(part) for part in raw.split(",") if part.strip().isdigit()}


def worker_attrs(worker_index: int) -> dict[str, Any]:
    """User attributes identifying the process that ran a trial."""
    return {"worker_pid": os.getpid(), "worker_host": socket.gethostname(), "worker_index": worker_index}


@dataclass
class Objective:
    """The callable handed to ``study.optimize``.

    Parameters
    ----------
    params
        The study's configuration (profile, ``train:``, ``tune:``).
    model_name
        Registry name of the tuned model.
    study_name
        The Optuna study (names trial folders and MLflow runs).
    parent_run_id
        The study's MLflow parent run.
    dataset
        The processed dataset.
    worker_index
        Which worker process runs it (0 when there is one).
    """

    params: Params
    model_name: str
    study_name: str
    parent_run_id: str | None
    dataset: xr.Dataset
    worker_index: int = 0

    def __call__(self, trial: Any) -> float:
        import optuna

        for key, value in worker_attrs(self.worker_index).items():
            trial.set_user_attr(key, value)
        spec = get_model_spec(self.model_name)
        hyperparams = suggest(trial, self.params.tune.search_space, spec.scheme)
        pruned: optuna.TrialPruned | None = None
        value = math.nan
        try:
            out_dir = trial_dir(self.params, self.study_name, trial.number)
            tparams = trial_params(self.params, hyperparams, out_dir)
            check_dynamic_parameters(tparams, spec, f"trial {trial.number}")
            with self._mlflow_run(trial, tparams, hyperparams) as active:
                trial.set_user_attr("mlflow_run_id", active.info.run_id)
                try:
                    value = self._train_and_score(trial, tparams, out_dir, sorted(hyperparams))
                except optuna.TrialPruned as exc:
                    pruned = exc
                    _set_tags({"optuna.state": "PRUNED"})
                else:
                    _log_metrics({"objective": value})
                    _set_tags({"optuna.state": "COMPLETE"})
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted (Ctrl-C / SIGINT); the study continues on the next run")
            raise
        if pruned is not None:
            raise pruned
        return value

    def _mlflow_run(self, trial: Any, tparams: Params, hyperparams: dict[str, Any]) -> Any:
        import mlflow

        period = validation_period(tparams)
        tags = dict(tracking.standard_tags(self.params.profile, get_model_spec(self.model_name)))
        tags.update(
            {
                "model": self.model_name,
                "hbvbench.kind": "tuning_trial",
                "optuna.study": self.study_name,
                "optuna.trial": str(trial.number),
                "worker_pid": str(os.getpid()),
                "worker_host": socket.gethostname(),
            }
        )
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run_params = {
            "hp": current_hyperparams(tparams),
            "sampled": sorted(hyperparams),
            "trial": trial.number,
            "study": self.study_name,
            "model": self.model_name,
            "validation": f"{period.start}..{period.end}",
            "train_period": f"{tparams.active.train.start}..{tparams.active.train.end}",
            "epochs": tparams.train.epochs or tparams.active.epochs,
        }
        return tracking.run(
            self.params.tune.experiment,
            f"{self.study_name}-trial{trial.number}",
            tags=tags,
            params=run_params,
            nested=mlflow.active_run() is not None,
        )

    def _train_and_score(self, trial: Any, tparams: Params, out_dir: Path, sampled: list[str]) -> float:
        import optuna

        tune = self.params.tune
        scorer = ValidationScorer(tparams, self.model_name, self.dataset, out_dir / self.model_name)
        metric_key = f"val_{tune.metric}_{tune.aggregate}"
        last: dict[str, Any] = {}
        inject = trial.number in failing_trials()

        def on_epoch_end(epoch: int, record: dict[str, float]) -> None:
            if inject:
                raise TrainingError(f"trial {trial.number}: failure injected by ${FAIL_TRIALS_ENV} after epoch {epoch}")
            score, payload = scorer.score(tune.metric, tune.aggregate)
            _log_metrics({"train_loss": record["train_loss"], metric_key: score}, step=epoch)
            if not math.isfinite(score):
                raise TrainingError(
                    f"trial {trial.number}: validation {tune.metric} is NaN after epoch {epoch} (no basin could be scored)"
                )
            last.update(score=score, payload=payload)
            trial.report(score, epoch)
            if epoch < n_epochs and trial.should_prune():  # pruning after the last epoch would save nothing
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric_key}={score:.4f})")

        seed = tune.seed if tune.seed is not None else tparams.active.seeds[0]
        n_epochs = tparams.train.epochs or tparams.active.epochs
        try:
            train_model(tparams, self.model_name, seed=seed, dataset=self.dataset, track=False,
                        on_epoch_end=on_epoch_end)
        finally:  # a trial is never continued: a pruned or failed one leaves no in-progress state
            shutil.rmtree(tparams.train.work_dir, ignore_errors=True)
        network_path = out_dir / NETWORK_FILE
        _save_payload({**last["payload"], "sampled": sampled}, network_path)
        trial.set_user_attr("network_path", str(network_path))
        _log_artifact(network_path, NETWORK_ARTIFACT_DIR)
        return float(last["score"])


def _save_payload(payload: dict[str, Any], path: Path) -> None:
    atomic.torch_save(path, payload)


def _log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}, step=step)


def _set_tags(tags: dict[str, str]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags(tags)


def _log_artifact(path: Path, artifact_dir: str) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_artifact(str(path), artifact_path=artifact_dir)
