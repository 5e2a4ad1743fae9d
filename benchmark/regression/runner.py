"""Train, evaluate and time every variant for the regression check (the ``ci`` profile).

Everything is written under one output folder (default ``artifacts/regress/``) so that a
check never touches the pipeline's own artifacts: ``data/`` (the prepared ``ci`` dataset),
``models/``, ``eval/`` and ``baselines/`` (the cost ratio is measured in memory). Runs are tracked in MLflow like any
other (experiment ``hbvbench-regress``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from baselines.commands import run_lstm
from benchmark.config import Params, resolve_path
from benchmark.data.dataset import load_dataset
from benchmark.data.prepare import prepare
from benchmark.errors import ConfigError
from benchmark.models.registry import MODEL_NAMES
from benchmark.perf import measure_variants, perf_config
from benchmark.training.evaluate import evaluate_model
from benchmark.training.trainer import train_model

PROFILE = "ci"
EXPERIMENT = "hbvbench-regress"
LSTM = "lstm_nh"
MODELS: tuple[str, ...] = ("dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr", "dhbv_euler4h", "dhbv_rk4", LSTM)
"""The four δHBV variants, explicit Euler (4 h) and RK4, and the neuralhydrology LSTM."""

#: The small batch of the cost check (about 30 s): one thread, three interleaved rounds, the
#: ratio the median of the per-round ratios. On a shared 2-core VM single steps still vary by
#: up to 2x, hence the loose tolerance on the ratio (benchmark.regression.baseline).
PERF_SETTING: dict[str, int] = {"basins": 20, "days": 365, "nmul": 4, "repeats": 3, "rounds": 3, "threads": 1}
PERF_VARIANTS = ("sequential", "adjoint")


def regression_params(params: Params, out_dir: Path) -> Params:
    """``params`` on the ``ci`` profile with every output redirected into ``out_dir``."""
    if PROFILE not in params.profiles:
        raise ConfigError(f"params.yaml has no {PROFILE!r} profile; the regression check runs on it")
    raw = params.model_dump(mode="python")
    raw["profile"] = PROFILE
    raw["data"] = {**raw["data"], "processed_dir": out_dir / "data"}
    raw["train"] = {**raw["train"], "models_dir": out_dir / "models", "eval_dir": out_dir / "eval",
                    "work_dir": out_dir / "work",
                    "experiment": EXPERIMENT, "epochs": None}
    raw["baselines"] = {**raw["baselines"], "out_dir": out_dir / "baselines"}
    return Params.model_validate(raw)


def check_models(models: list[str] | tuple[str, ...]) -> None:
    """ConfigError for a name that is neither a registry model nor the LSTM baseline."""
    unknown = [m for m in models if m != LSTM and m not in MODEL_NAMES]
    if unknown:
        raise ConfigError(f"regress --models: unknown {unknown}; known: {', '.join((*MODEL_NAMES, LSTM))}")


def run_models(params: Params, models: list[str] | tuple[str, ...], *, track: bool = True,
               log: Callable[[str], None] = print) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """Prepare the data, then train + evaluate each model; returns summaries and wall times (s)."""
    check_models(models)
    prepare(params)
    dataset = load_dataset(params=params)
    summaries: dict[str, dict[str, Any]] = {}
    walls: dict[str, float] = {}
    for model in models:
        tic = time.perf_counter()
        if model == LSTM:
            summaries[model] = run_lstm(params, mlflow_enabled=track)
        else:
            train_model(params, model, dataset=dataset, track=track)
            summaries[model] = evaluate_model(params, model, dataset=dataset, track=track)[1]
        walls[model] = time.perf_counter() - tic
        log(f"regress: {model}: NSE {summaries[model].get('NSE_median', float('nan')):.3f}, "
            f"KGE {summaries[model].get('KGE_median', float('nan')):.3f} ({walls[model]:.0f} s)")
    return summaries, walls


def measure_ratio(params: Params) -> tuple[float | None, dict[str, Any], list[dict[str, Any]]]:
    """The adjoint / sequential training-step time ratio on :data:`PERF_SETTING` (one run, both)."""
    config = perf_config(resolve_path(params.data.raw_dir), **PERF_SETTING)
    rows, ratio = measure_variants(config, PERF_VARIANTS)
    return ratio, config, rows
