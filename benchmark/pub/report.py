"""The PUB leaderboard: every basin scored once, as a held-out basin of its fold.

Per model, the held-out per-basin metrics of all folds are joined (each basin exactly once,
checked) and summarized as in the main leaderboard: the median across basins of each
per-basin metric with its percentile-bootstrap 95 % CI (:mod:`benchmark.report.statistics`)
and the cross-basin BFI correlation. Beside it, when the gauged (in-sample) evaluation of the
same model and seed exists (``<train.eval_dir>/<model>/`` or ``<baselines.out_dir>/lstm/``),
its median NSE and KGE on the same basins and the PUB-minus-gauged gap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from benchmark import atomic
from benchmark.artifacts import METRICS_JSON, PER_BASIN_CSV, PREDICTIONS_NAME, PUB_LEADERBOARD_NAMES, eval_dir, \
    pub_model_dir, pub_report_dir
from benchmark.config import PUB_LSTM, Params, resolve_path
from benchmark.errors import DataError
from benchmark.report import statistics, styles
from benchmark.report.comparisons import METRIC_LABELS, PER_BASIN_METRICS
from benchmark.report.inputs import read_per_basin
from benchmark.report.statistics import Estimate
from benchmark.report.tables import CI_TEXT, DECIMALS, ci_text, fmt

GAP_METRICS: tuple[str, ...] = ("NSE", "KGE")
"""Metrics whose gauged (in-sample) median is shown beside the PUB one."""


@dataclass(frozen=True)
class PubModelScores:
    """One model's held-out scores over all folds."""

    model: str
    per_basin: pd.DataFrame  # index basin; the metric columns and ``fold``
    n_folds: int
    gauged: pd.DataFrame | None  # the in-sample per-basin metrics of the same basins, when available

    def estimate(self, metric: str) -> Estimate:
        """Median with bootstrap CI of ``metric`` (``BFI_r``: the cross-basin correlation)."""
        if metric == "BFI_r":
            if not {"BFI", "BFI_camels"} <= set(self.per_basin.columns):
                return statistics.NO_ESTIMATE
            sims = self.per_basin["BFI"].to_numpy(dtype=float)[None, :]
            return statistics.correlation_ci(sims, self.per_basin["BFI_camels"].to_numpy(dtype=float))
        return statistics.median_ci(_column(self.per_basin, metric))

    def gauged_estimate(self, metric: str) -> Estimate:
        """Median with CI of ``metric`` in the gauged evaluation on the same basins (NO_ESTIMATE without one)."""
        return statistics.NO_ESTIMATE if self.gauged is None else statistics.median_ci(_column(self.gauged, metric))


def _column(frame: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in frame.columns:
        return np.array([], dtype=float)
    return pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)


def read_fold(params: Params, fold: int, model: str, expected: list[str]) -> pd.DataFrame:
    """The held-out per-basin metrics of one (fold, model), checked against the fold's basins.

    Raises
    ------
    DataError
        The run has not finished (names the command to run), its test basins are not the
        fold's, or it was trained on one of them.
    """
    folder = pub_model_dir(params, fold, model)
    metrics, per_basin_path = folder / METRICS_JSON, folder / PER_BASIN_CSV
    if not metrics.is_file() or not per_basin_path.is_file():
        raise DataError(f"{folder} has no held-out results of {model} for fold {fold}; run "
                        f"`hbvbench pub run --fold {fold} --model {model}` first")
    try:
        summary = json.loads(metrics.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{metrics} cannot be read: {exc}; run the fold again") from None
    tested = str(summary.get("test_basins", "")).split()
    trained = str(summary.get("train_basins", "")).split()
    if sorted(tested) != sorted(expected):
        raise DataError(f"{metrics}: tested basins {tested} are not fold {fold}'s {expected} (pub.folds changed?); "
                        f"run `hbvbench pub run --fold {fold} --model {model}` again")
    overlap = sorted(set(trained) & set(tested))
    if not trained or overlap:
        raise DataError(f"{metrics}: training basins {overlap or '(not recorded)'} are among the held-out basins; "
                        "this is not an ungauged-basin result: run the fold again")
    frame = read_per_basin(per_basin_path)
    if sorted(frame.index) != sorted(expected):
        raise DataError(f"{per_basin_path} scores basins {sorted(frame.index)}, not fold {fold}'s {expected}")
    return frame.assign(fold=fold)


@dataclass(frozen=True)
class GaugedSources:
    """Where the gauged (in-sample) evaluations are: ``<eval_dir>/<model>/`` and ``<lstm_dir>/``
    (None: ``train.eval_dir`` and ``<baselines.out_dir>/lstm`` of params.yaml)."""

    eval_dir: Path | None = None
    lstm_dir: Path | None = None

    def folder(self, params: Params, model: str) -> Path:
        """The gauged evaluation folder of ``model`` (the profile's first seed)."""
        if model == PUB_LSTM:
            return resolve_path(self.lstm_dir) if self.lstm_dir else resolve_path(params.baselines.out_dir) / PUB_LSTM
        return resolve_path(self.eval_dir) / model if self.eval_dir else eval_dir(params, model)


def _gauged_per_basin(params: Params, model: str, basins: list[str], sources: GaugedSources) -> pd.DataFrame | None:
    """The gauged per-basin metrics of ``model`` on ``basins``; None when absent, of other
    basins, or of another profile than the active one."""
    folder = sources.folder(params, model)
    path = folder / PER_BASIN_CSV
    if _profile_of(folder) not in (None, params.profile):
        return None
    if not path.is_file():
        return None
    frame = read_per_basin(path)
    return frame.reindex(basins) if set(basins) <= set(frame.index) else None


def _profile_of(folder: Path) -> str | None:
    """The profile recorded in ``predictions.nc`` of an evaluation folder (None when unreadable)."""
    path = folder / PREDICTIONS_NAME
    if not path.is_file():
        return None
    try:
        with xr.open_dataset(path) as ds:
            return str(ds.attrs.get("profile")) if "profile" in ds.attrs else None
    except (OSError, ValueError):
        return None


def collect(params: Params, folds: list[list[str]], models: Sequence[str],
            gauged: GaugedSources | None = None) -> list[PubModelScores]:
    """Every model's held-out scores over all folds (each basin exactly once)."""
    gauged = gauged or GaugedSources()
    scores = []
    for model in models:
        frames = [read_fold(params, number, model, sorted(fold)) for number, fold in enumerate(folds, start=1)]
        joined = pd.concat(frames)
        twice = sorted(joined.index[joined.index.duplicated()])
        if twice:
            raise DataError(f"{model}: basins {twice} were scored in more than one fold")
        basins = sorted(joined.index)
        scores.append(PubModelScores(model, joined.loc[basins], len(folds),
                                     _gauged_per_basin(params, model, basins, gauged)))
    return scores


SHOWN_METRICS: tuple[str, ...] = PER_BASIN_METRICS + ("BFI_r",)


def rows(scores: list[PubModelScores]) -> list[dict[str, Any]]:
    """One record per model: counts, every metric's median and CI, the gauged medians and gaps."""
    out = []
    for result in scores:
        record: dict[str, Any] = {"model": result.model, "label": styles.label(result.model),
                                  "n_folds": result.n_folds, "n_basins": int(len(result.per_basin)),
                                  "n_basins_scored": int(np.isfinite(_column(result.per_basin, "NSE")).sum())}
        for metric in SHOWN_METRICS:
            est = result.estimate(metric)
            record.update({f"{metric}_median": est.value, f"{metric}_low": est.low, f"{metric}_high": est.high})
        for metric in GAP_METRICS:
            gauged = result.gauged_estimate(metric).value
            record[f"gauged_{metric}_median"] = gauged
            record[f"gap_{metric}"] = record[f"{metric}_median"] - gauged
        out.append(record)
    return out


def _cell(record: dict[str, Any], metric: str) -> str:
    est = Estimate(record[f"{metric}_median"], record[f"{metric}_low"], record[f"{metric}_high"], record["n_basins"])
    return ci_text(est, DECIMALS.get(metric, 3))


def markdown(records: list[dict[str, Any]], params: Params) -> str:
    """The leaderboard as Markdown."""
    profile = params.active
    head = ["Model", "folds", "basins"] + [METRIC_LABELS[m] for m in SHOWN_METRICS] \
        + [f"gauged {m}" for m in GAP_METRICS] + [f"PUB − gauged {m}" for m in GAP_METRICS]
    lines = [
        "# hbvbench: ungauged basins (PUB), spatial k-fold",
        "",
        f"*profile `{params.profile}`, test period {profile.test.start}..{profile.test.end}, seed "
        f"{profile.seeds[0]}; folds of `pub.folds.{params.profile}` (stratified by HUC-02 region)*",
        "",
        "Each model is trained on the basins of all folds but one and tested on the held-out fold's basins; every "
        f"basin is scored once, as a basin the model never saw. Cells: median across basins [bootstrap {CI_TEXT} "
        "over basins]; BFI r: cross-basin correlation of simulated and CAMELS baseflow index. Gauged: median of "
        "the same model and seed trained on all basins and tested on the same basins and test period (the main "
        "leaderboard's run), n/a when that evaluation is not available; PUB − gauged: the difference of the two "
        "medians.",
        "",
        "| " + " | ".join(_escaped(h) for h in head) + " |",
        "|" + "---|" * len(head),
    ]
    for record in records:
        cells = [record["label"], str(record["n_folds"]), f"{record['n_basins_scored']} of {record['n_basins']}"]
        cells += [_cell(record, m) for m in SHOWN_METRICS]
        cells += [fmt(record[f"gauged_{m}_median"], DECIMALS[m]) for m in GAP_METRICS]
        cells += [_signed(record[f"gap_{m}"], DECIMALS[m]) for m in GAP_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "SAC-SMA has no row: it is calibrated per basin, so it has no ungauged-basin run."]
    if not any(record["model"].startswith("gr4j") for record in records):
        lines.append("δGR4J is not run by default: δGR4J.adj's backward pass builds a dense Jacobian (about 72 s per "
                     "epoch on the 2-core machine), times the folds; add it to `pub.models` to include it.")
    return "\n".join(lines) + "\n"


def fold_markdown(scores: list[PubModelScores]) -> str:
    """Median NSE of each model on each held-out fold (how much the score depends on the fold)."""
    folds = sorted({int(f) for result in scores for f in result.per_basin["fold"]})
    lines = ["", "## Median NSE per held-out fold", "",
             "| Model | " + " | ".join(f"fold {f}" for f in folds) + " |", "|---|" + "---|" * len(folds)]
    for result in scores:
        cells = []
        for fold in folds:
            values = _column(result.per_basin[result.per_basin["fold"] == fold], "NSE")
            values = values[np.isfinite(values)]
            cells.append(fmt(float(np.median(values)) if values.size else math.nan, DECIMALS["NSE"]))
        lines.append(f"| {styles.label(result.model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _escaped(text: str) -> str:
    """A Markdown table cell: a literal ``|`` (as in |FLV|) escaped."""
    return text.replace("|", "\\|")


def _signed(value: float, decimals: int) -> str:
    return fmt(value, decimals) if not math.isfinite(value) or value < 0 else "+" + fmt(value, decimals)


def write_report(params: Params, scores: list[PubModelScores]) -> dict[str, Path]:
    """``leaderboard.{md,csv,json}`` in ``pub.report_dir``, each written atomically."""
    records = rows(scores)
    folder = pub_report_dir(params)
    paths = {kind: folder / name for kind, name in PUB_LEADERBOARD_NAMES.items()}
    atomic.write_text(paths["md"], markdown(records, params) + fold_markdown(scores))
    atomic.write_text(paths["csv"], pd.DataFrame(records).to_csv(index=False, na_rep="n/a"))
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in records]
    atomic.write_text(paths["json"], json.dumps({"profile": params.profile, "models": clean}, indent=2) + "\n")
    return paths
