"""``hbvbench pub``: the ungauged-basin (PUB) spatial k-fold protocol.

``pub folds`` proposes HUC-02-stratified folds of the profile's basins (YAML for
``pub.folds.<profile>``), ``pub run`` trains and tests folds x models, ``pub report`` writes
the PUB leaderboard (docs/training.md#ungauged-basins-pub).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmark.config import Params, load_params
from benchmark.errors import ConfigError


def _params(args: argparse.Namespace) -> Params:
    overrides = {"profile": args.profile} if getattr(args, "profile", None) else None
    return load_params(args.params, overrides=overrides)


def _folds(args: argparse.Namespace) -> int:
    from benchmark.config import resolve_path
    from benchmark.data.camels import list_basins
    from benchmark.pub.folds import folds_yaml, huc_regions, propose_folds

    params = _params(args)
    raw_dir = resolve_path(params.data.raw_dir)
    basins = params.active.basins
    basins = list_basins(raw_dir, params.data.forcing_product) if basins == "all" else list(basins)
    regions = huc_regions(raw_dir, basins)
    print(folds_yaml(params.profile, propose_folds(regions, args.folds), regions), end="")
    return 0


def _chosen(given: list[str] | None, allowed: list[str], what: str) -> list[str]:
    if not given:
        return list(allowed)
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ConfigError(f"--{what} {' '.join(unknown)}: not in pub.models {allowed}")
    return list(dict.fromkeys(given))


def _run(args: argparse.Namespace) -> int:
    from benchmark.data.dataset import load_dataset
    from benchmark.pub.folds import profile_folds
    from benchmark.pub.runner import check_models, run_fold

    params = _params(args)
    models = _chosen(args.model, params.pub.models, "model")
    check_models(models)
    dataset = load_dataset(params=params)
    folds = profile_folds(params, dataset["basin"].values)
    numbers = list(dict.fromkeys(args.fold)) if args.fold else list(range(1, len(folds) + 1))
    bad = [n for n in numbers if not 1 <= n <= len(folds)]
    if bad:
        raise ConfigError(f"--fold {' '.join(map(str, bad))}: profile {params.profile!r} has folds 1..{len(folds)}")
    for number in numbers:
        for model in models:
            tic = time.perf_counter()
            result = run_fold(params, number, model, dataset=dataset)
            shown = {k: round(result.summary[k], 3) for k in ("NSE_median", "KGE_median")
                     if isinstance(result.summary.get(k), float)}
            print(f"pub fold {number}/{len(folds)} {model}: trained on {len(result.train_basins)} basins, tested on "
                  f"{len(result.test_basins)} held-out basins {shown} in {time.perf_counter() - tic:.0f} s "
                  f"-> {result.folder}", flush=True)
    return 0


def _report(args: argparse.Namespace) -> int:
    from benchmark.data.dataset import load_dataset
    from benchmark.pub.folds import profile_folds
    from benchmark.pub.report import GaugedSources, collect, write_report

    params = _params(args)
    models = _chosen(args.model, params.pub.models, "model")
    folds = profile_folds(params, load_dataset(params=params)["basin"].values)
    gauged = GaugedSources(args.gauged_eval_dir, args.gauged_lstm_dir)
    paths = write_report(params, collect(params, folds, models, gauged))
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({len(models)} models, {len(folds)} folds)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pub folds``, ``pub run`` and ``pub report`` to the ``hbvbench`` command line."""
    pub = subparsers.add_parser("pub", help="ungauged basins (PUB): spatial k-fold training and testing",
                                description=__doc__.splitlines()[0])
    commands = pub.add_subparsers(dest="pub_command", required=True, metavar="SUBCOMMAND")
    profile_help = "override the params.yaml profile (ci, default, ...)"

    folds = commands.add_parser("folds", help="print HUC-02-stratified folds of the profile's basins as YAML")
    folds.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default 5)")
    folds.add_argument("--profile", default=None, help=profile_help)
    folds.set_defaults(func=_folds)

    run = commands.add_parser("run", help="train on the other folds' basins, test on the held-out fold")
    run.add_argument("--fold", type=int, nargs="+", default=None, metavar="I", help="held-out folds, 1-based "
                     "(default: all)")
    run.add_argument("--model", nargs="+", default=None, metavar="M", help="models of pub.models (default: all)")
    run.add_argument("--profile", default=None, help=profile_help)
    run.set_defaults(func=_run)

    report = commands.add_parser("report", help="write <pub.report_dir>/leaderboard.{md,csv,json}")
    report.add_argument("--model", nargs="+", default=None, metavar="M", help="models of pub.models (default: all)")
    report.add_argument("--profile", default=None, help=profile_help)
    report.add_argument("--gauged-eval-dir", type=Path, default=None, metavar="DIR",
                        help="gauged evaluations to compare with, DIR/<model>/ (default: train.eval_dir)")
    report.add_argument("--gauged-lstm-dir", type=Path, default=None, metavar="DIR",
                        help="the gauged LSTM evaluation folder (default: <baselines.out_dir>/lstm)")
    report.set_defaults(func=_report)
