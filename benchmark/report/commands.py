"""``hbvbench report``: render the leaderboard (markdown + self-contained HTML + figures)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from benchmark.report.build import build_report
    from benchmark.report.inputs import collect_from_files, collect_from_mlflow

    params_path = Path(args.params) if getattr(args, "params", None) else None
    out = Path(args.out)
    out = out if out.is_absolute() else Path.cwd() / out
    if args.source == "mlflow":
        with tempfile.TemporaryDirectory(prefix="hbvbench-report-") as scratch:
            inputs = collect_from_mlflow(Path(scratch), experiment=args.experiment, perf_dir=args.perf_dir,
                                         params_path=params_path)
            paths = build_report(inputs, out)
    else:
        inputs = collect_from_files(root=None, eval_dir=args.eval_dir, baselines_dir=args.baselines_dir,
                                    models_dir=args.models_dir, perf_dir=args.perf_dir, params_path=params_path)
        paths = build_report(inputs, out)
    print(f"wrote {paths.markdown}, {paths.html} and {len(paths.figures)} figures in {paths.figures_dir} "
          f"({len(inputs.models)} models: {', '.join(m.name for m in inputs.models)})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report", help="render reports/leaderboard.md and a self-contained leaderboard.html",
        description="Render the leaderboard (tables in the layout of Song et al. 2024 Tables 1, 2, A2; "
                    "figures; provenance) from the per-model metric files or from MLflow.")
    parser.add_argument("--source", choices=("files", "mlflow"), default="files",
                        help="read artifacts/eval + artifacts/baselines (default) or the MLflow store")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--eval-dir", type=Path, default=None, help="default: train.eval_dir of params.yaml")
    parser.add_argument("--baselines-dir", type=Path, default=None, help="default: baselines.out_dir of params.yaml")
    parser.add_argument("--models-dir", type=Path, default=None, help="training logs; default: train.models_dir")
    parser.add_argument("--perf-dir", type=Path, default=None, help="hbvbench perf JSON folder; default: reports/perf")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (--source mlflow); default: train.experiment")
    parser.set_defaults(func=_run)
