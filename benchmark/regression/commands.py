"""``hbvbench regress``: the CI regression check (see :mod:`benchmark.regression`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

from benchmark import repository
from benchmark.config import resolve_path

DEFAULT_BASELINE = Path("reports/regression_baseline.json")
DEFAULT_OUT = Path("artifacts/regress")
DEFAULT_METRICS = Path("reports/regression_metrics.json")


def _write_json(path: Path, data: Any) -> None:
    """Write through a temporary file and a rename: never a half-written file."""
    from benchmark import atomic

    atomic.write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _absolute(path: Path) -> Path:
    return resolve_path(path)


def dvc_metrics(summaries: dict[str, dict[str, Any]], ratio: float | None, keys: list[str]) -> dict[str, Any]:
    """The flat file ``dvc metrics show/diff`` reads: model -> metric -> value, plus the ratio."""
    out: dict[str, Any] = {model: {k: summary.get(k) for k in keys} for model, summary in summaries.items()}
    if ratio is not None:
        out["perf"] = {"adjoint_over_sequential": ratio}
    return out


def _recorded() -> dict[str, Any]:
    from benchmark.tracking import git_state

    return {"date": dt.date.today().isoformat(), **git_state(repository.root()),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version()}


def run_regress(args: argparse.Namespace) -> int:
    """Run the check; exit 1 on a regression beyond tolerance (0 with ``--update``)."""
    from benchmark.config import load_params
    from benchmark.regression import baseline as bl
    from benchmark.regression.runner import MODELS, measure_ratio, regression_params, run_models

    baseline_path, out_dir = _absolute(args.baseline), _absolute(args.out)
    old = bl.load_baseline(baseline_path) if (baseline_path.is_file() or not args.update) else None
    params = regression_params(load_params(args.params), out_dir)
    models = tuple(args.models or (old["models"] if old else MODELS))
    summaries, walls = run_models(params, models, track=not args.no_mlflow)
    ratio, perf_config, perf_rows = (None, None, []) if args.no_perf else measure_ratio(params)
    keys = list((old or {}).get("tolerances") or bl.DEFAULT_TOLERANCES)

    _write_json(_absolute(args.metrics), dvc_metrics(summaries, ratio, keys))
    if args.update:
        new = bl.updated_baseline(old, summaries, ratio, perf_config, _recorded(), params.profile)
        if args.models and old:  # a partial run updates only the models it ran
            new["models"] = {**old["models"], **new["models"]}
        _write_json(baseline_path, new)
        print(f"regress: baseline rewritten -> {baseline_path}")
        reference = new
    else:
        reference = old
    comparisons = bl.compare(reference, summaries, ratio, source=str(baseline_path))
    if args.models:  # models that were not run are not compared
        comparisons = [c for c in comparisons if c.model in summaries or c.model == bl.RATIO_KEY]
    text = bl.table(comparisons)
    failed = bl.regressions(comparisons)
    improved = [c for c in comparisons if c.status == bl.STATUS_IMPROVED]
    verdict = (f"{len(failed)} regression(s) beyond tolerance" if failed else "no regression beyond tolerance") + (
        f"; {len(improved)} improvement(s) flagged" if improved else "")
    _write_json(out_dir / "regress.json", {
        "verdict": verdict, "baseline": str(baseline_path), "wall_s": walls,
        "comparisons": [{**c.__dict__, "delta": c.delta} for c in comparisons], "perf": perf_rows,
    })
    from benchmark import atomic

    atomic.write_text(out_dir / "regress.md", f"# Regression check ({params.profile} profile)\n\n{text}\n\n{verdict}\n")
    print(text)
    print(f"regress: {verdict}")
    if failed and not args.update:
        for c in failed:
            print(f"regress: REGRESSED {c.model} {c.metric}: {c.baseline} -> {c.current} (tolerance ±{c.tolerance:.3g})",
                  file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``regress`` subcommand."""
    parser = subparsers.add_parser(
        "regress", help="CI regression check: every variant on the ci basins vs reports/regression_baseline.json",
        description="Train and evaluate every model variant on the ci profile (4 basins, fixed seed), measure the "
                    "adjoint/sequential cost ratio, compare with the committed baseline; exit 1 on a regression.",
    )
    parser.add_argument("--update", action="store_true", help="rewrite the baseline's values with this run's")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help=f"baseline file (default {DEFAULT_BASELINE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"work folder (default {DEFAULT_OUT})")
    parser.add_argument("--metrics", type=Path, default=DEFAULT_METRICS,
                        help=f"flat metrics file for `dvc metrics diff` (default {DEFAULT_METRICS})")
    parser.add_argument("--models", nargs="+", default=None, metavar="NAME",
                        help="run and compare only these (default: every model in the baseline)")
    parser.add_argument("--no-perf", action="store_true", help="skip the cost-ratio check")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the runs to MLflow")
    parser.set_defaults(func=run_regress)
