"""Where a training or evaluation writes its files and what they are called: one home for these facts.

Every reader and writer of a trained model's files names them through this module:

``<train.models_dir>/<model>/[seed_<S>/]``
    :data:`CHECKPOINT_NAME` (format: :mod:`benchmark.training.checkpoint`),
    :data:`NORMALIZATION_NAME` (:class:`~benchmark.training.normalization.NormalizationStats`),
    :data:`TRAIN_LOG_NAME` (the per-epoch loss curve).
``<train.work_dir>/<model>/[seed_<S>/]``
    the in-progress copy of the checkpoint a rerun continues from.
``<train.eval_dir>/<model>/[seed_<S>/]``
    :data:`PREDICTIONS_NAME`, :data:`METRICS_JSON`, :data:`PER_BASIN_CSV` and the figures
    :data:`HYDROGRAPH_NAME`, :data:`CDF_NAME`.

The profile's first seed (the DVC pipeline's) writes straight into the model's folder; any
other seed into a ``seed_<S>`` subfolder (:func:`seed_folder`).

``<pub.out_dir>/<profile>/fold_<i>/<model>/`` (:func:`pub_model_dir`)
    the ungauged-basin protocol (:mod:`benchmark.pub`): a model trained on the other folds'
    basins (checkpoint, normalization, loss curve) and its predictions and metrics on the
    held-out basins of fold ``i`` (1-based), all in one folder; the LSTM's in ``lstm/``.
    In-progress training state in ``<pub.out_dir>/<profile>/work/fold_<i>/<model>/``.
``<pub.report_dir>/`` the PUB leaderboard :data:`PUB_LEADERBOARD_NAMES`.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.config import Params, resolve_path

CHECKPOINT_NAME = "checkpoint.pt"
NORMALIZATION_NAME = "normalization.json"
TRAIN_LOG_NAME = "train_log.csv"
PREDICTIONS_NAME = "predictions.nc"
METRICS_JSON = "metrics.json"
PER_BASIN_CSV = "per_basin_metrics.csv"
HYDROGRAPH_NAME = "hydrographs.png"
CDF_NAME = "metric_cdf.png"

SEED_FOLDER_PREFIX = "seed_"
"""A seed other than the profile's first lives in ``<model folder>/seed_<S>/`` (models, evaluation, work, LSTM)."""


def seed_folder_name(seed: int) -> str:
    """``seed_<S>``: the sub-folder of a seed other than the profile's first."""
    return f"{SEED_FOLDER_PREFIX}{seed}"


def seed_folder(params: Params, seed: int | None) -> str | None:
    """None for the profile's first seed (the DVC pipeline's) and for no seed, else ``seed_<S>``."""
    return None if seed is None or seed == params.active.seeds[0] else seed_folder_name(seed)


def _under(root: str | Path, params: Params, model: str, seed: int | None) -> Path:
    folder = resolve_path(root) / model
    sub = seed_folder(params, seed)
    return folder / sub if sub else folder


def model_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.models_dir>/<model>`` (absolute); other seeds than the profile's first in ``seed_<S>/``."""
    return _under(params.train.models_dir, params, model, seed)


def work_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.work_dir>/<model>`` (absolute): the in-progress state of a training run; seeds as in :func:`model_dir`."""
    return _under(params.train.work_dir, params, model, seed)


def eval_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.eval_dir>/<model>`` (absolute); other seeds than the profile's first in ``seed_<S>/``."""
    return _under(params.train.eval_dir, params, model, seed)


PUB_FOLD_PREFIX = "fold_"
PUB_LEADERBOARD_NAMES: dict[str, str] = {"md": "leaderboard.md", "csv": "leaderboard.csv", "json": "leaderboard.json"}
"""The PUB leaderboard files in ``pub.report_dir``, by format."""


def pub_profile_dir(params: Params) -> Path:
    """``<pub.out_dir>/<profile>`` (absolute): every fold of the active profile."""
    return resolve_path(params.pub.out_dir) / params.profile


def pub_fold_dir(params: Params, fold: int) -> Path:
    """``<pub.out_dir>/<profile>/fold_<i>`` (absolute; ``fold`` 1-based)."""
    return pub_profile_dir(params) / f"{PUB_FOLD_PREFIX}{fold}"


def pub_model_dir(params: Params, fold: int, model: str) -> Path:
    """``<pub.out_dir>/<profile>/fold_<i>/<model>`` (absolute): training and held-out evaluation of one model."""
    return pub_fold_dir(params, fold) / model


def pub_work_dir(params: Params, fold: int) -> Path:
    """``<pub.out_dir>/<profile>/work/fold_<i>`` (absolute): in-progress training state of the fold's models."""
    return pub_profile_dir(params) / "work" / f"{PUB_FOLD_PREFIX}{fold}"


def pub_report_dir(params: Params) -> Path:
    """``<pub.report_dir>`` (absolute)."""
    return resolve_path(params.pub.report_dir)
