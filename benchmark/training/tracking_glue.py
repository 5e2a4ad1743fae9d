"""How training and evaluation use :mod:`benchmark.tracking` (one MLflow run per (model, seed)).

Training opens the run; a resumed training and the evaluation re-open it by the id saved in
the checkpoint, so the run holds the loss curve, the test metrics and every artifact. When
the id is unknown to the current tracking store (e.g. ``MLFLOW_TRACKING_URI`` changed in
between) a new run with the same name is started instead. A run that raises ends FAILED
with the error logged.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from benchmark import tracking
from benchmark.artifacts import METRICS_JSON, PER_BASIN_CSV, PREDICTIONS_NAME
from benchmark.config import Params
from benchmark.data.dataset import load_manifest
from benchmark.errors import DataError


def run_tags(params: Params, spec: Any, seed: int) -> dict[str, str]:
    """Standard tags (git commit, data hash, profile, scheme, gradient, structure) + model and seed,
    and ``data_warnings``: the warnings ``prepare`` recorded in ``manifest.json`` (e.g. a basin
    kept without observations under ``data.unobserved_basins: warn``), when there are any."""
    tags = dict(tracking.standard_tags(params.profile, spec))
    tags.update({"model": spec.name, "seed": str(seed)})
    warnings = data_warnings(params)
    if warnings:
        tags["data_warnings"] = "; ".join(warnings)
    return {key: str(value) for key, value in tags.items()}


def data_warnings(params: Params) -> list[str]:
    """The ``warnings`` of the processed data's ``manifest.json`` ([] when it has none or is absent)."""
    try:
        manifest = load_manifest(params=params)
    except (DataError, ValueError):
        return []
    return [str(w) for w in manifest.get("warnings", [])]


def run_params(params: Params, fingerprint: dict[str, Any], *, epochs: int) -> dict[str, Any]:
    """Everything that defines a run, flat: the training setup, the profile and ``train:`` config,
    and ``torch_threads``, the thread budget the training ran with (:mod:`benchmark.threads`; it
    explains the timings, never the results)."""
    import torch

    profile = params.active.model_dump(mode="json")
    train = params.train.model_dump(mode="json")
    flat: dict[str, Any] = {f"profile.{k}": v for k, v in profile.items() if k not in ("basins", "seeds")}
    flat.update({f"train.{k}": v for k, v in train.items() if k != "models"})
    flat.update({k: v for k, v in fingerprint.items() if k != "basins"})
    flat["n_basins"] = len(fingerprint["basins"])
    flat["epochs"] = epochs
    flat["torch_threads"] = torch.get_num_threads()
    return flat


def _run_exists(run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        tracking.client().get_run(run_id)
    except MlflowException:
        return False
    return True


def open_run(
    params: Params, *, run_name: str, tags: dict[str, str], params_to_log: dict[str, Any], run_id: str | None
) -> contextlib.AbstractContextManager[Any]:
    """The MLflow run of a (model, seed): ``run_id`` re-opened when the store has it, else a new one.

    A re-opened run keeps the params it was created with (MLflow refuses changed values).
    """
    if run_id is not None and _run_exists(run_id):
        return tracking.run(params.train.experiment, run_name, tags=tags, run_id=run_id)
    return tracking.run(params.train.experiment, run_name, tags=tags, params=params_to_log)


def log_evaluation(
    params: Params,
    spec: Any,
    seed: int,
    run_id: str | None,
    out_dir: Path,
    *,
    pred: Any,
    per_basin: Any,
    summary: dict[str, Any],
    figures: dict[str, Any],
    extra_metrics: dict[str, float],
) -> str:
    """Log test metrics, per-basin CSV, predictions, figures to the (model, seed) run; return its id."""
    import mlflow

    tags = run_tags(params, spec, seed)
    with open_run(params, run_name=f"{spec.name}-seed{seed}", tags=tags, params_to_log={}, run_id=run_id) as active:
        tracking.log_test_metrics(summary)
        mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items()})
        tracking.log_dataframe(per_basin, PER_BASIN_CSV)
        tracking.log_dataset(pred, PREDICTIONS_NAME)
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        metrics_json = out_dir / METRICS_JSON
        if metrics_json.is_file():
            mlflow.log_artifact(str(metrics_json), artifact_path="evaluation")
        return active.info.run_id
