"""``hbvbench train`` and ``hbvbench evaluate``."""

from __future__ import annotations

import argparse
import os

from benchmark import parallel_seeds
from benchmark.config import Params, load_params
from benchmark.errors import ConfigError


def _params(args: argparse.Namespace):
    overrides = {"profile": args.profile} if getattr(args, "profile", None) else None
    return load_params(args.params, overrides=overrides)


def _train(args: argparse.Namespace) -> int:
    # The training and tuning stacks (torch, xarray, optuna) load only when the command runs.
    from benchmark.hyperparams import apply_hyperparams, load_hyperparams_file
    from benchmark.training.trainer import train_model
    from benchmark.tuning.init_from import train_from

    params = _params(args)
    if args.hyperparams:  # e.g. the best_params.yaml of `hbvbench tune`
        params = apply_hyperparams(params, load_hyperparams_file(args.hyperparams), source=args.hyperparams)
    if _in_parallel(args, params):
        return 0
    for seed in _seeds(args, params):
        options = dict(seed=seed, epochs=args.epochs, resume=args.resume, restart=args.restart,
                       distributed_run=args.distributed)
        if args.init_from:  # a path, MLflow run id or Optuna study; brings its hyperparameters
            result = train_from(params, args.model, args.init_from, **options)
        else:
            result = train_model(params, args.model, **options)
        if args.distributed and os.environ.get("RANK", "0") != "0":
            continue  # rank 0 reports for the job
        last = result.history[-1]["train_loss"] if result.history else float("nan")
        print(f"trained {result.model} (seed {result.seed}) for {result.epochs} epochs: final train loss {last:.4f} "
              f"-> {result.model_dir}", flush=True)
    return 0


def _in_parallel(args: argparse.Namespace, params: Params) -> bool:
    """``--all-seeds`` with more than one worker: the seeds ran as child processes (not for torchrun)."""
    if not args.all_seeds or getattr(args, "distributed", False):
        return False
    return parallel_seeds.run_if_parallel(args.argv, params.active.seeds, args.workers, args.threads,
                                          params.train.threads)


def _seeds(args: argparse.Namespace, params: Params) -> list[int | None]:
    """``--all-seeds``: every seed of the profile, in its order; else ``--seed`` (None: the profile's first)."""
    return list(params.active.seeds) if args.all_seeds else [args.seed]


def _evaluate(args: argparse.Namespace) -> int:
    from benchmark.artifacts import eval_dir
    from benchmark.training.evaluate import evaluate_model

    if args.from_mlflow:
        if args.all_seeds:
            raise ConfigError("--all-seeds evaluates the models trained here; --from-mlflow evaluates one logged model")
        return _evaluate_logged_model(args)
    if not args.model:
        raise ConfigError("give --model NAME (a model trained here) or --from-mlflow REF (a logged MLflow model)")
    params = _params(args)
    if _in_parallel(args, params):
        return 0
    for seed in _seeds(args, params):
        _, summary = evaluate_model(params, args.model, seed=seed)
        shown = {k: summary[k] for k in ("NSE_median", "KGE_median") if k in summary}
        print(f"evaluated {args.model} (seed {seed if seed is not None else params.active.seeds[0]}) on "
              f"{summary.get('n_basins', '?')} basins {shown} -> {eval_dir(params, args.model, seed)}", flush=True)
    return 0


def _evaluate_logged_model(args: argparse.Namespace) -> int:
    """``evaluate --from-mlflow REF``: rebuild a logged model and evaluate it on its profile's test period."""
    import re
    import tempfile
    from pathlib import Path

    from benchmark.config import resolve_path
    from benchmark.training import mlflow_model
    from benchmark.training.evaluate import evaluate_trained

    with tempfile.TemporaryDirectory(prefix="hbvbench-from-mlflow-") as tmp:
        trained, _, uri = mlflow_model.download(args.from_mlflow, Path(tmp))
    if args.model and args.model != trained.spec.name:
        raise ConfigError(f"--from-mlflow {args.from_mlflow} is a {trained.spec.name} model, not {args.model}")
    profile = args.profile or str(trained.setup["profile"])
    params = load_params(args.params, overrides={"profile": profile})
    name = re.sub(r"[^\w.-]+", "_", uri.split(":/", 1)[-1]).strip("_")
    out = resolve_path(Path(args.out)) if args.out else resolve_path(params.train.eval_dir) / "from_mlflow" / name
    _, summary = evaluate_trained(params, trained, out, track=False)
    shown = {k: summary[k] for k in ("NSE_median", "KGE_median") if k in summary}
    print(f"evaluated {uri} ({trained.spec.name}, seed {trained.seed}, {trained.epochs} epochs) on profile "
          f"{profile!r}, {summary.get('n_basins', '?')} basins {shown} -> {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the ``hbvbench`` command line."""
    train = subparsers.add_parser("train", help="train a differentiable HBV variant (checkpoint every epoch)")
    train.add_argument("--model", required=True, help="registry name: dhbv, dhbv_cr, dhbv_adj, dhbv_adj_cr, ...")
    train.add_argument("--profile", default=None, help="override the params.yaml profile (ci, default, paper)")
    which = train.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's first)")
    which.add_argument("--all-seeds", action="store_true",
                       help="train every seed of the profile (what `dvc repro` runs); see --workers")
    train.add_argument("--workers", type=int, default=None, metavar="N", help=parallel_seeds.WORKERS_HELP)
    train.add_argument("--epochs", type=int, default=None, help="total epochs (default: train.epochs or the profile's)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the last checkpoint (an interrupted run's, else the finished one's); "
                            "without it an interrupted run with the same setup is continued anyway")
    train.add_argument("--restart", action="store_true", help="start over, discarding an interrupted run's state")
    train.add_argument("--init-from", default=None, metavar="RUN", help="model folder, checkpoint, MLflow run id or tuning study to start from (brings its hyperparameters)")
    train.add_argument(
        "--hyperparams", default=None, metavar="FILE",
        help="YAML of hyperparameters (e.g. the best_params.yaml of `hbvbench tune`) overriding params.yaml",
    )
    train.add_argument(
        "--distributed", action="store_true",
        help="data-parallel training under torchrun (DistributedDataParallel, gloo on CPU / nccl on GPU): "
             "torchrun --nnodes N --nproc-per-node M -m benchmark.cli train --model NAME --distributed",
    )
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser("evaluate", help="run a trained model over the test period and score it")
    evaluate.add_argument("--model", default=None, help="registry name of a trained model (required without --from-mlflow)")
    evaluate.add_argument("--profile", default=None, help="override the params.yaml profile (ci, default, paper); "
                          "with --from-mlflow default: the profile the model was trained on")
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, default=None, help="the training seed (default: the profile's first)")
    which.add_argument("--all-seeds", action="store_true", help="evaluate every seed of the profile; see --workers")
    evaluate.add_argument("--workers", type=int, default=None, metavar="N", help=parallel_seeds.WORKERS_HELP)
    evaluate.add_argument(
        "--from-mlflow", default=None, metavar="REF",
        help="evaluate the MLflow model a training logged instead: its run id, runs:/<run id>/model, "
             "models:/<model id> or m-<id>; results go to --out (not logged to MLflow)",
    )
    evaluate.add_argument("--out", default=None, metavar="DIR",
                          help="with --from-mlflow: output folder (default: <train.eval_dir>/from_mlflow/<model id>)")
    evaluate.set_defaults(func=_evaluate)
