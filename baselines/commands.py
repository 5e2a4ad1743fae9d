"""``hbvbench baseline lstm`` and ``hbvbench baseline sacsma``: the baselines as pipeline steps.

Both write ``<baselines.out_dir>/<name>/{predictions.nc, metrics.json, per_basin_metrics.csv}``
plus figures, scored by ``benchmark.evaluation`` like every δHBV model, and log one MLflow run
(experiment ``train.experiment``; tag ``model`` = ``lstm_nh`` / ``sacsma``) with params,
per-epoch loss (LSTM), test metrics (prefix ``test``), the per-basin CSV, the predictions and
the figures. ``--no-mlflow`` skips the tracking (the artifacts are written either way).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

from benchmark import parallel_seeds
from benchmark.config import Params, load_params
from benchmark.errors import ConfigError

HYDROGRAPH_NAME = "hydrographs.png"
CDF_NAME = "metric_cdf.png"
LOSS_NAME = "loss_curve.png"


def _params(args: argparse.Namespace) -> Params:
    overrides = {"profile": args.profile} if getattr(args, "profile", None) else None
    return load_params(args.params, overrides=overrides)


@contextlib.contextmanager
def _tracked(enabled: bool, params: Params, run_name: str, tags: dict[str, str],
             run_params: dict[str, Any], data_context: str) -> Iterator[bool]:
    """An MLflow run around the body when ``enabled`` (yields whether one is active), with the
    prepared dataset as its input (``data_context``: ``training`` or ``evaluation``)."""
    if not enabled:
        yield False
        return
    from benchmark import tracking

    with tracking.run(params.train.experiment, run_name, tags=tags, params=run_params):
        tracking.log_prepared_data(params.data.processed_dir, params.profile, context=data_context)
        yield True


def _tags(params: Params, model: str, seed: int | None = None) -> dict[str, str]:
    from benchmark import tracking

    tags = dict(tracking.standard_tags(params.profile, None, params.data.processed_dir))
    tags.update({"model": model, "baseline": "true", "seed": str(params.active.seeds[0] if seed is None else seed)})
    return tags


def _figures(pred: Any, per_basin: Any, name: str) -> dict[str, Any]:
    from benchmark.training.evaluate import cdf_figure, hydrograph_figure

    return {HYDROGRAPH_NAME: hydrograph_figure(pred, per_basin), CDF_NAME: cdf_figure(per_basin, name)}


def loss_figure(epochs: Any) -> Any:
    """Per-epoch training (solid) and validation (dashed) loss of the LSTM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for column, style in (("train_loss", "-o"), ("valid_loss", "--o")):
        if column in epochs and epochs[column].notna().any():
            ax.plot(epochs["epoch"], epochs[column], style, ms=3, label=column)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (neuralhydrology, as configured)")
    ax.set_title("lstm_nh: loss per epoch", fontsize=10)
    ax.legend()
    fig.tight_layout()
    return fig


def _save_figures(figures: dict[str, Any], out_dir: Path, log: bool) -> None:
    import matplotlib.pyplot as plt

    from benchmark import atomic, tracking

    for name, fig in figures.items():
        atomic.save_figure(out_dir / name, fig, dpi=110, bbox_inches="tight")
        if log:
            tracking.log_figure(fig, name)
        plt.close(fig)


def _log_outputs(out_dir: Path, per_basin: Any, pred: Any, summary: dict[str, Any]) -> None:
    import mlflow

    from benchmark import tracking

    tracking.log_test_metrics(summary)
    tracking.log_dataframe(per_basin, "per_basin_metrics.csv")
    tracking.log_dataset(pred, "predictions.nc")
    mlflow.log_artifact(str(out_dir / "metrics.json"), artifact_path="evaluation")


def lstm_run_params(params: Params) -> dict[str, Any]:
    """What defines an LSTM baseline run, for MLflow (profile + ``baselines.lstm.<profile>``)."""
    profile = params.active.model_dump(mode="json")
    flat: dict[str, Any] = {f"profile.{k}": v for k, v in profile.items() if k not in ("basins", "seeds")}
    flat.update({f"lstm.{k}": v for k, v in params.baselines.lstm_for(params.profile).model_dump(mode="json").items()})
    flat["baselines.device"] = params.baselines.device
    flat["data.forcing_product"] = params.data.forcing_product
    return flat


def run_lstm(params: Params, *, out_dir: Path | None = None, mlflow_enabled: bool = True,
             seed: int | None = None) -> dict[str, Any]:
    """Train/test/score the neuralhydrology LSTM with ``seed`` (default: the profile's first) and
    log it; returns the metrics summary. ``out_dir`` defaults to the seed's folder
    (:func:`baselines.nh_lstm.lstm_out_dir`)."""
    import mlflow

    from baselines.nh_lstm import MODEL_NAME, NH_CONFIG_NAME, run_lstm_baseline
    from benchmark import tracking

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        if not mlflow_enabled:
            return
        mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=epoch)

    seed = params.active.seeds[0] if seed is None else seed
    run_name = f"{MODEL_NAME}-seed{seed}"
    tags = _tags(params, MODEL_NAME, seed) if mlflow_enabled else {}
    with _tracked(mlflow_enabled, params, run_name, tags, lstm_run_params(params), "training") as logging_on:
        result = run_lstm_baseline(params, out_dir=out_dir, on_epoch=on_epoch, seed=seed)
        nh = result.nh_run
        figures = _figures(result.predictions, result.per_basin, MODEL_NAME)
        if len(nh.epochs):
            figures[LOSS_NAME] = loss_figure(nh.epochs)
        _save_figures(figures, result.out_dir, logging_on)
        if logging_on:
            _log_outputs(result.out_dir, result.per_basin, result.predictions, result.summary)
            mlflow.log_params({"nh.run_dir": str(nh.run_dir), "n_basins": result.predictions.sizes["basin"],
                               "nh.static_attributes": ",".join(nh.config["static_attributes"]),
                               "nh.dropped_attributes": ",".join(nh.dropped_attributes) or "none",
                               "nh.validation_start_date": nh.config["validation_start_date"],
                               "nh.validation_end_date": nh.config["validation_end_date"]})
            mlflow.log_metrics({"train_wall_s": nh.train_seconds, "test_wall_s": nh.test_seconds})
            tracking.log_system_metrics(result.wall_seconds)
            for name in ("nh_metrics.csv", "epoch_losses.csv"):
                mlflow.log_artifact(str(result.out_dir / name), artifact_path="neuralhydrology")
            mlflow.log_artifact(str(nh.run_dir / "config.yml"), artifact_path="neuralhydrology")
            mlflow.log_artifact(str(nh.run_dir.parent / NH_CONFIG_NAME), artifact_path="neuralhydrology")
    return {**result.summary, "seed": seed, "wall_time_s": result.wall_seconds, "out_dir": str(result.out_dir)}


def run_sacsma(params: Params, *, out_dir: Path | None = None, mlflow_enabled: bool = True) -> dict[str, Any]:
    """Score the CAMELS SAC-SMA runs and log them; returns the metrics summary (with coverage)."""
    import mlflow

    from baselines.sacsma import MODEL_NAME, run_sacsma_baseline
    from benchmark import tracking

    run_name = f"{MODEL_NAME}-camels"
    tags = _tags(params, MODEL_NAME) if mlflow_enabled else {}
    flat = {f"profile.{k}": v for k, v in params.active.model_dump(mode="json").items() if k in ("train", "test")}
    flat["data.forcing_product"] = params.data.forcing_product
    with _tracked(mlflow_enabled, params, run_name, tags, flat, "evaluation") as logging_on:
        result = run_sacsma_baseline(params, out_dir=out_dir)
        output = result.output
        _save_figures(_figures(output.predictions, result.per_basin, MODEL_NAME), result.out_dir, logging_on)
        if logging_on:
            _log_outputs(result.out_dir, result.per_basin, output.predictions, result.summary)
            tracking.log_metrics_dict(result.summary_vs_obs_run, prefix="test_vs_obs_run")
            mlflow.set_tags({"coverage": output.coverage,
                             "basins_without_output": " ".join(output.basins_without_output) or "none"})
            mlflow.log_params({"calibration_runs": output.predictions.attrs["calibration_runs"]})
            mlflow.log_artifact(str(result.out_dir / "vs_obs_run" / "metrics.json"), artifact_path="vs_obs_run")
            tracking.log_system_metrics(result.wall_seconds)
    return {**result.summary, "coverage": output.coverage, "out_dir": str(result.out_dir)}


def _print_summary(name: str, summary: dict[str, Any], extra: str = "") -> None:
    shown = {k: round(summary[k], 3) for k in ("NSE_median", "KGE_median") if isinstance(summary.get(k), float)}
    print(f"baseline {name}: {summary.get('n_basins', '?')} basins {shown}{extra} -> {summary['out_dir']}")


def _lstm(args: argparse.Namespace) -> int:
    params = _params(args)
    if args.all_seeds and args.out is not None:
        raise ConfigError("--out names one run's folder; with --all-seeds each seed writes its own "
                          "(<baselines.out_dir>/lstm, lstm/seed_<S>)")
    if args.all_seeds and parallel_seeds.run_if_parallel(args.argv, params.active.seeds, args.workers,
                                                         args.threads, params.train.threads):
        return 0
    for seed in (params.active.seeds if args.all_seeds else [args.seed]):
        start = time.perf_counter()
        summary = run_lstm(params, out_dir=args.out, mlflow_enabled=not args.no_mlflow, seed=seed)
        _print_summary("lstm", summary, f" (seed {summary['seed']}), {time.perf_counter() - start:.0f} s")
    return 0


def _sacsma(args: argparse.Namespace) -> int:
    summary = run_sacsma(_params(args), out_dir=args.out, mlflow_enabled=not args.no_mlflow)
    _print_summary("sacsma", summary, f" ({summary['coverage']})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``baseline lstm`` and ``baseline sacsma`` to the ``hbvbench`` command line."""
    baseline = subparsers.add_parser("baseline", help="run a baseline (neuralhydrology LSTM, CAMELS SAC-SMA) and score it")
    which = baseline.add_subparsers(dest="baseline", required=True, metavar="BASELINE")
    for name, func, text in (
        ("lstm", _lstm, "train and test the neuralhydrology LSTM on the profile's basins and periods, score it"),
        ("sacsma", _sacsma, "score the CAMELS SAC-SMA model_output runs of the profile's basins (test period)"),
    ):
        sub = which.add_parser(name, help=text)
        sub.add_argument("--profile", default=None, help="override the params.yaml profile (ci, default, paper)")
        sub.add_argument("--out", type=Path, default=None, help=f"output folder (default: <baselines.out_dir>/{name})")
        sub.add_argument("--no-mlflow", action="store_true", help="write the artifacts without logging an MLflow run")
        if name == "lstm":  # SAC-SMA is CAMELS' calibrated run: no seed
            seeds = sub.add_mutually_exclusive_group()
            seeds.add_argument("--seed", type=int, default=None,
                               help="neuralhydrology's seed (default: the profile's first; others write lstm/seed_<S>)")
            seeds.add_argument("--all-seeds", action="store_true",
                               help="one run per seed of the profile (what `dvc repro` runs); see --workers")
            sub.add_argument("--workers", type=int, default=None, metavar="N", help=parallel_seeds.WORKERS_HELP)
        sub.set_defaults(func=func)
