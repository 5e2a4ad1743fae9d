"""``hbvbench tune``: an Optuna study of one model, tracked in MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path


def _tune(args: argparse.Namespace) -> int:
    from benchmark.config import load_params
    from benchmark.tuning.runner import run_tuning

    overrides = {"profile": args.profile} if args.profile else None
    params = load_params(args.params, overrides=overrides)
    result = run_tuning(
        params,
        args.model,
        trials=args.trials,
        study_name=args.study,
        storage=args.storage,
        timeout_s=args.timeout,
        workers=args.workers,
        metric=args.metric,
        best_params_path=Path(args.best_params) if args.best_params else None,
        threads=args.threads,
    )
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    print(f"study {result.study_name} ({result.storage_url}): {counts}; MLflow parent run {result.parent_run_id}")
    if result.dead_trials_failed:
        print(f"trials {result.dead_trials_failed} of dead workers were marked failed")
    if result.best is not None:
        print(
            f"best trial {result.best['best_trial']}: {result.best['best_value']:.4f} "
            f"{result.best['hyperparams']} -> {result.best_params_path}"
        )
    else:
        print("no trial completed yet")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tune`` to the ``hbvbench`` command line."""
    tune = subparsers.add_parser(
        "tune",
        help="Optuna hyperparameter study (search space and objective in params.yaml `tune:`)",
        description=(
            "Run --trials more trials of an Optuna study on the validation period (params.yaml tune:). "
            "Rerunning the same command continues the study; --workers N processes, or the same command on "
            "several machines with one --storage URL, share it."
        ),
    )
    tune.add_argument("--model", default=None, help="registry name (default: tune.model, e.g. dhbv)")
    tune.add_argument("--trials", type=int, default=None, help="new trials in this run (default: tune.trials)")
    tune.add_argument("--study", default=None, help="study name (default: tune.study or <model>-<profile>)")
    tune.add_argument(
        "--storage", default=None, help="Optuna RDB URL (default: tune.storage or sqlite:///<repo>/optuna.db)"
    )
    tune.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S seconds")
    tune.add_argument("--workers", type=int, default=1, help="worker processes sharing the study (default 1)")
    tune.add_argument("--metric", default=None, help="objective basin metric, e.g. KGE, NSE, RMSE (default: tune.metric)")
    tune.add_argument("--profile", default=None, help="override the params.yaml profile (ci, default, paper)")
    tune.add_argument(
        "--best-params", default=None, metavar="FILE",
        help="where to write the best hyperparameters (default: <tune.out_dir>/<study>/best_params.yaml)",
    )
    tune.set_defaults(func=_tune)
