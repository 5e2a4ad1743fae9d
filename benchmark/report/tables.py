"""The leaderboard's tables, in the layouts of Song et al. (2024) Tables 1, 2 and A2, plus
the per-seed medians.

Every number of our rows is computed here from the per-basin metric files: medians across
basins (NaN basins skipped) of each model's seed-mean per-basin values, with bootstrap 95 %
confidence intervals over basins, and the BFI spatial correlation recomputed from the
per-basin BFI columns (:mod:`benchmark.report.comparisons`). A value is marked best only
when its model is significantly better than every other fully covering model of the
column (paired Wilcoxon test, Holm-corrected; :mod:`benchmark.report.statistics`). The
published 671-basin rows are a separate group and never enter our medians or the marks.
"""

from __future__ import annotations

import html as html_lib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from benchmark.report import statistics, styles
from benchmark.report.comparisons import (
    HIGHER_IS_BETTER,
    Comparisons,
    bfi_estimate,
    bfi_spread,
    column_values,
    ensemble_estimate,
    median_estimate,
    median_spread,
)
from benchmark.report.inputs import ModelResult, ReportInputs
from benchmark.report.statistics import Estimate, Spread

#: Decimal places of our numbers, per metric (per-basin CSV column names).
DECIMALS: dict[str, int] = {
    "NSE": 3, "KGE": 3, "absFLV": 2, "FLV": 2, "absFHV": 2, "FHV": 2,
    "lowRMSE": 3, "peakRMSE": 3, "BFI_r": 3, "ET_NSE": 3,
}
#: Decimal places the paper prints (published rows are shown at the paper's precision).
PUBLISHED_DECIMALS: dict[str, int] = {
    "NSE": 2, "KGE": 2, "absFLV": 2, "FLV": 2, "absFHV": 2, "FHV": 2,
    "lowRMSE": 3, "peakRMSE": 2, "BFI_r": 2, "ET_NSE": 2,
}
NA = "n/a"
PUBLISHED_LABEL = "published, 671 basins (Song et al. 2024)"
CI_TEXT = f"{statistics.CONFIDENCE:.0%} CI".replace("%", " %")


@dataclass
class Cell:
    """One table cell: its text, whether it is the best of its column, and the raw value."""

    text: str
    best: bool = False
    value: float | None = None


@dataclass
class RowGroup:
    """Rows shown under one heading: ``kind`` is ``ours`` (our runs), ``ensemble`` (seed
    ensembles) or ``published`` (the paper's rows); the HTML styles each kind."""

    heading: str
    rows: list[list[Cell]]
    kind: str = "ours"


@dataclass
class Table:
    """A rendered-to-be table: title, column headers, row groups and footnotes."""

    key: str
    title: str
    columns: list[str]
    groups: list[RowGroup]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- numbers


def fmt(value: float | None, decimals: int) -> str:
    """Format a number with fixed decimals; NaN/None -> ``n/a``."""
    if value is None or not np.isfinite(value):
        return NA
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text == "-0." + "0" * decimals else text


def median_metric(result: ModelResult, column: str, basins: Iterable[str] | None = None) -> float:
    """Median across basins of one (seed-mean) per-basin metric column, NaN basins skipped;
    NaN when the column is absent or has no finite value."""
    values = column_values(result.per_basin, column, set(basins) if basins is not None else None).to_numpy()
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else math.nan


def scored_basins(result: ModelResult) -> set[str]:
    """Gauge ids with a finite NSE (the basins a model was actually scored on)."""
    if "NSE" not in result.per_basin.columns:
        return set(result.per_basin.index)
    nse = pd.to_numeric(result.per_basin["NSE"], errors="coerce")
    return set(nse[np.isfinite(nse)].index)


def benchmark_basins(inputs: ReportInputs) -> set[str]:
    """The benchmark's basin set: every basin scored by any model except SAC-SMA, and every
    basin a model failed on (so a basin every model failed on still counts against each).

    SAC-SMA exists in CAMELS only for some basins; its row says "k of n basins" instead.
    """
    basins: set[str] = set()
    for result in inputs.models:
        if result.name != "sacsma":
            basins |= scored_basins(result) | set(failed_basins(result))
    if not basins:
        for result in inputs.models:
            basins |= scored_basins(result)
    return basins


def ordered(models: Iterable[ModelResult]) -> list[ModelResult]:
    """Models in the paper's row order."""
    return sorted(models, key=lambda m: styles.sort_key(m.name))


def dynamic_parameters(name: str) -> str:
    """The dynamic parameters of a δHBV variant from the model registry ("—" for baselines)."""
    if name in ("lstm", "sacsma"):
        return "—"
    try:
        from benchmark.models.registry import get_model_spec

        spec = get_model_spec(name)
    except Exception:  # noqa: BLE001 - registry not importable / unknown name: say so in the cell
        return NA
    return ", ".join(spec.dynamic_parameters) or "none"


def coverage_text(result: ModelResult, basins: set[str]) -> str:
    """``n`` when a model covers every benchmark basin, else ``k of n basins``."""
    k = len(scored_basins(result) & basins)
    return str(k) if k == len(basins) else f"{k} of {len(basins)} basins"


FAILED_PREFIX = "failed"


def failed_basins(result: ModelResult) -> dict[str, list[tuple[int | None, str]]]:
    """Basins a model failed on, with ``(seed, reason)`` per failing seed.

    From the ``status`` column of each seed's ``per_basin_metrics.csv`` (``failed: <reason>``),
    or, for a run without that column, the ``failed_basins`` list of its ``metrics.json``
    (docs/metrics.md#failed-basins). A basin failed in any seed has no seed-mean value, so it
    is missing from the model's medians.
    """
    found: dict[str, list[tuple[int | None, str]]] = {}
    for run in result.runs:
        if "status" in run.per_basin.columns:
            status = run.per_basin["status"].astype(str)
            for basin, text in status[status.str.startswith(FAILED_PREFIX)].items():
                found.setdefault(str(basin), []).append((run.seed, text.removeprefix(FAILED_PREFIX).lstrip(": ")))
        else:
            listed = run.summary.get("failed_basins")
            for basin in (listed.split() if isinstance(listed, str) else []):
                found.setdefault(basin, []).append((run.seed, "reason not recorded"))
    return dict(sorted(found.items()))


def failed_text(result: ModelResult) -> str:
    """`` (k failed)`` for the Basins cell of a model with failed basins, else ``""``."""
    count = len(failed_basins(result))
    return f" ({count} failed)" if count else ""


def failed_notes(models: Iterable[ModelResult]) -> list[str]:
    """One sentence per model with failed basins: which basins, in which seed, and why."""
    notes = []
    for result in models:
        failed = failed_basins(result)
        if not failed:
            continue
        several = len(result.runs) > 1
        items = "; ".join(f"{basin} ({', '.join((f'seed {seed}: ' if several else '') + reason for seed, reason in why)})"
                          for basin, why in failed.items())
        notes.append(f"{styles.label(result.name)}: {len(failed)} failed basin{'s' if len(failed) > 1 else ''}, left out "
                     f"of its medians (docs/metrics.md#failed-basins): {items}.")
    return notes


def mark_significant_best(rows: list[list[Cell]], column: int, metric: str, models: list[ModelResult | None],
                          comparisons: Comparisons) -> None:
    """Mark the best value of one column, but only where it is significant.

    ``models[i]`` is the model of row ``i``, or None for a row that may not be marked (a
    model that does not cover every benchmark basin, a row without a model). The row with
    the best value is marked when its model is significantly better on ``metric`` than the
    model of every other markable row (Holm-adjusted p below ``statistics.ALPHA`` and the
    median paired difference in its favour); an exact tie for best marks nothing.
    """
    candidates = [(row, model) for row, model in zip(rows, models)
                  if model is not None and row[column].value is not None and np.isfinite(row[column].value)]
    if len(candidates) < 2:
        return
    values = [row[column].value for row, _ in candidates]
    best_value = max(values) if HIGHER_IS_BETTER[metric] else min(values)
    best = [(row, model) for row, model in candidates if row[column].value == best_value]
    if len(best) != 1:
        return
    best_row, best_model = best[0]
    others = list({model.name: model for _, model in candidates if model.name != best_model.name}.values())
    if comparisons.is_significantly_best(best_model, others, metric):
        best_row[column].best = True


def ci_text(estimate: Estimate, decimals: int, signed: float | None = None) -> str:
    """``median [low, high]``; with ``signed``, ``median (signed) [low, high]`` (|FLV| (FLV))."""
    if not estimate.finite:
        return NA
    middle = f" ({fmt(signed, decimals)})" if signed is not None else ""
    if estimate.n < 2:
        return f"{fmt(estimate.value, decimals)}{middle} [no CI: {estimate.n} basin]"
    return f"{fmt(estimate.value, decimals)}{middle} [{fmt(estimate.low, decimals)}, {fmt(estimate.high, decimals)}]"


def spread_text(spread: Spread, decimals: int) -> str:
    """``low–high (sd x)`` of the per-seed values; the value alone for one seed."""
    if spread.n == 0:
        return NA
    if spread.n == 1:
        return f"{fmt(spread.low, decimals)} (one seed)"
    return f"{fmt(spread.low, decimals)}–{fmt(spread.high, decimals)} (sd {fmt(spread.sd, decimals)})"


def seeds_text(result: ModelResult) -> str:
    """How many seeds a model was trained with."""
    return str(len(result.runs))


def significance_note() -> str:
    """How the best values are marked (the rule of :func:`mark_significant_best`)."""
    return (f"Bold: best value of the column, marked only where that model is significantly better than every other "
            f"of our models covering every benchmark basin: paired two-sided Wilcoxon signed-rank test over basins "
            f"(BFI correlation: paired bootstrap), p < {statistics.ALPHA} after Holm's correction across the metrics "
            f"of each model pair, and the median paired difference in its favour. A column without bold has no "
            f"significant winner.")


def ci_note() -> str:
    """How the confidence intervals are computed."""
    return (f"[low, high]: percentile-bootstrap {CI_TEXT} of the median over basins ({statistics.N_RESAMPLES} resamples "
            f"of the basins, numpy default_rng seed {statistics.BOOTSTRAP_SEED}); it reflects the sampling of basins, "
            f"not of training seeds (see the seed spread).")


# --------------------------------------------------------------------------- Table 1

STREAMFLOW_METRICS: tuple[tuple[str, str | None], ...] = (
    ("NSE", None), ("KGE", None), ("absFLV", "FLV"), ("absFHV", "FHV"), ("lowRMSE", None), ("peakRMSE", None),
)
"""The ranked metric of each Table 1 column, and its signed companion shown in parentheses."""

STREAMFLOW_COLUMNS = [
    "Model", "Basins", "Seeds", f"Median NSE [{CI_TEXT}]", f"Median KGE [{CI_TEXT}]",
    f"Median |FLV| (FLV) [{CI_TEXT} of |FLV|] (%)", f"Median |FHV| (FHV) [{CI_TEXT} of |FHV|] (%)",
    f"Median low-flow RMSE [{CI_TEXT}] (mm/d)", f"Median peak-flow RMSE [{CI_TEXT}] (mm/d)", "Dynamic parameters",
]
FIRST_METRIC_COLUMN = 3


def _paired(abs_value: float, signed: float, decimals: int) -> str:
    return f"{fmt(abs_value, decimals)} ({fmt(signed, decimals)})"


def _streamflow_cells(result: ModelResult, on: set[str], estimate: Any) -> list[Cell]:
    cells = []
    for metric, signed_column in STREAMFLOW_METRICS:
        est = estimate(result, metric, on)
        signed = estimate(result, signed_column, on).value if signed_column else None
        cells.append(Cell(ci_text(est, DECIMALS[metric], signed), value=est.value))
    return cells


def streamflow_table(inputs: ReportInputs, comparisons: Comparisons | None = None) -> Table:
    """Table 1 layout: median streamflow metrics per model with CIs, significant bests marked;
    a second group with the seed ensembles when a model has several seeds."""
    basins = benchmark_basins(inputs)
    comparisons = comparisons or Comparisons(basins)
    rows: list[list[Cell]] = []
    markable: list[ModelResult | None] = []
    for result in ordered(inputs.models):
        on = scored_basins(result) & basins
        rows.append([Cell(styles.label(result.name)), Cell(coverage_text(result, basins) + failed_text(result)),
                     Cell(seeds_text(result))]
                    + _streamflow_cells(result, on, median_estimate) + [Cell(dynamic_parameters(result.name))])
        markable.append(result if len(on) == len(basins) else None)
    for offset, (metric, _) in enumerate(STREAMFLOW_METRICS):
        mark_significant_best(rows, FIRST_METRIC_COLUMN + offset, metric, markable, comparisons)
    groups = [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile, "
                       f"{len(basins)} basins, test period", rows)]
    ensembles = [m for m in ordered(inputs.models) if m.ensemble is not None]
    if ensembles:
        groups.append(RowGroup("seed ensembles: the mean over the seeds of the daily flow, scored like one run",
                               [[Cell(f"{styles.label(m.name)} ensemble"), Cell(coverage_text(m, basins)),
                                 Cell(seeds_text(m))] + _streamflow_cells(m, scored_basins(m) & basins, ensemble_estimate)
                                + [Cell(dynamic_parameters(m.name))] for m in ensembles], kind="ensemble"))
    published = inputs.published.get("table1")
    if published is not None and len(published):
        groups.append(RowGroup(PUBLISHED_LABEL + ", Table 1", [_published_table1_row(r) for r in published.itertuples()],
                               kind="published"))
    notes = [
        "Medians across basins of the per-basin metrics in per_basin_metrics.csv; with several seeds, of each basin's "
        "mean over the seeds. |FLV|/|FHV|: absolute percent bias of the bottom 30 % / top 2 % of the flow-duration "
        "curve, signed value in parentheses; low-/peak-flow RMSE on the same sorted segments (docs/metrics.md#flow-duration-segments).",
        ci_note(),
        significance_note() + " The published rows are the paper's 671-basin values, shown for orientation only.",
    ]
    if all(len(m.runs) == 1 for m in inputs.models):
        notes.append("Every model was trained with one seed: the tables cannot show how much a median moves between "
                     "training runs; read differences smaller than the CIs with care.")
    else:
        notes.append("Seed ensembles are never marked best (they are not single trained models).")
    for result, model in zip(ordered(inputs.models), markable):
        if model is None:
            why = "failed basins, see below" if failed_basins(result) else "no model output for the others"
            notes.append(f"{styles.label(result.name)}: scored on {coverage_text(result, basins)} only "
                         f"({why}); not comparable, not marked best.")
    notes += failed_notes(ordered(inputs.models))
    return Table("streamflow", "Streamflow metrics (layout of Table 1)", STREAMFLOW_COLUMNS, groups, notes)


def _published_table1_row(row: Any) -> list[Cell]:
    d = PUBLISHED_DECIMALS
    dyn = row.dynamic_parameters if isinstance(row.dynamic_parameters, str) and row.dynamic_parameters else "—"
    return [
        Cell(f"{row.paper_name} (published)"),
        Cell("671"),
        Cell("—"),
        Cell(fmt(row.NSE, d["NSE"])),
        Cell(fmt(row.KGE, d["KGE"])),
        Cell(_paired(row.absFLV, row.FLV, d["absFLV"])),
        Cell(_paired(row.absFHV, row.FHV, d["absFHV"])),
        Cell(fmt(row.lowRMSE, d["lowRMSE"])),
        Cell(fmt(row.peakRMSE, d["peakRMSE"])),
        Cell(dyn),
    ]


# --------------------------------------------------------------------------- Table 2

SIGNATURE_COLUMNS = ["Model", "Basins", "Seeds", f"Baseflow index: spatial correlation r [{CI_TEXT}]",
                     f"Median ET NSE [{CI_TEXT}]", "Basins with MODIS ET"]
ET_NSE_COLUMN = "ET_NSE"


def signatures_table(inputs: ReportInputs, comparisons: Comparisons | None = None) -> Table:
    """Table 2 layout: BFI spatial correlation and median ET NSE with CIs (n/a where no MODIS ET)."""
    basins = benchmark_basins(inputs)
    comparisons = comparisons or Comparisons(basins)
    rows, markable = [], []
    for result in ordered(inputs.models):
        on = scored_basins(result) & basins
        bfi = bfi_estimate(result, on)
        et = median_estimate(result, ET_NSE_COLUMN, on)
        rows.append([
            Cell(styles.label(result.name)),
            Cell(coverage_text(result, basins)),
            Cell(seeds_text(result)),
            Cell(ci_text(bfi, DECIMALS["BFI_r"]), value=bfi.value),
            Cell(ci_text(et, DECIMALS["ET_NSE"]), value=et.value),
            Cell(f"{et.n} of {len(basins)}"),
        ])
        markable.append(result if len(on) == len(basins) else None)
    mark_significant_best(rows, 3, "BFI_r", markable, comparisons)
    mark_significant_best(rows, 4, "ET_NSE", markable, comparisons)
    groups = [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile, {len(basins)} basins", rows)]
    published = inputs.published.get("table2")
    if published is not None and len(published):
        def dash(value: float, key: str) -> str:  # the paper prints "-" where it reports nothing
            return fmt(value, PUBLISHED_DECIMALS[key]) if np.isfinite(value) else "—"

        pub_rows = [[Cell(f"{r.paper_name} (published)"), Cell("671"), Cell("—"), Cell(dash(r.BFI_r, "BFI_r")),
                     Cell(dash(r.ET_NSE, "ET_NSE")), Cell("671" if np.isfinite(r.ET_NSE) else "—")]
                    for r in published.itertuples()]
        groups.append(RowGroup(PUBLISHED_LABEL + ", Table 2", pub_rows, kind="published"))
    notes = [
        "BFI per basin = ΣQ2 / ΣQ (unrouted) over the test period; r = Pearson correlation across basins with "
        "CAMELS baseflow_index, recomputed here from the per-basin BFI columns; with several seeds, the mean of the "
        "seeds' correlations. n/a for models without flow components (LSTM, SAC-SMA).",
        "The correlation is one number per run, not a per-basin value: its CI resamples basins and recomputes r on "
        "each resample, and two models' correlations are compared by a paired bootstrap (both recomputed on the same "
        "resampled basins), not by a rank test.",
        "ET NSE: simulated ET summed over each MODIS MOD16A2 8-day window vs MODIS ET, per basin, median across "
        "basins; n/a where no MODIS ET files were given (data.modis_et_dir in params.yaml).",
        significance_note(),
    ]
    return Table("signatures", "Hydrological signatures (layout of Table 2)", SIGNATURE_COLUMNS, groups, notes)


# --------------------------------------------------------------------------- per seed

SEED_METRICS: tuple[str, ...] = ("NSE", "KGE", "absFLV", "absFHV", "lowRMSE", "peakRMSE")
SEED_COLUMNS = ["Model", "Seed", "Median NSE", "Median KGE", "Median |FLV| (%)", "Median |FHV| (%)",
                "Median low-flow RMSE (mm/d)", "Median peak-flow RMSE (mm/d)", "BFI spatial correlation r"]


def seed_table(inputs: ReportInputs) -> Table | None:
    """Each seed's own medians and, per model, their spread (None when every model has one seed)."""
    if all(len(m.runs) == 1 for m in inputs.models):
        return None
    basins = benchmark_basins(inputs)
    rows: list[list[Cell]] = []
    for result in ordered(inputs.models):
        on = scored_basins(result) & basins
        spreads = [median_spread(result, metric, on) for metric in SEED_METRICS] + [bfi_spread(result, on)]
        decimals = [DECIMALS[m] for m in SEED_METRICS] + [DECIMALS["BFI_r"]]
        for index, run in enumerate(result.runs):
            rows.append([Cell(styles.label(result.name)), Cell(str(run.seed) if run.seed is not None else NA)]
                        + [Cell(fmt(spread.values[index], d)) for spread, d in zip(spreads, decimals)])
        if len(result.runs) > 1:
            rows.append([Cell(f"{styles.label(result.name)}: spread"), Cell(f"{len(result.runs)} seeds")]
                        + [Cell(spread_text(spread, d)) for spread, d in zip(spreads, decimals)])
    notes = ["Each seed scored on its own: medians across the benchmark basins a model covers, BFI r per seed. "
             "Spread: lowest–highest per-seed value and its standard deviation (ddof 1). The main tables use each "
             "basin's mean over the seeds."]
    return Table("seeds", "Per-seed medians and seed spread", SEED_COLUMNS,
                 [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile, {len(basins)} basins", rows)],
                 notes)


# --------------------------------------------------------------------------- Table A2

COST_COLUMNS = [
    "Model", "Numerical scheme", "Time step", "Memory per batch (MB)", "Time per batch (s)",
    "Training: s per iteration", "Training: peak memory (MB)", "Training wall time (s)",
    "Median NSE", "Median KGE", "Median low-flow RMSE (mm/d)", "Median peak-flow RMSE (mm/d)",
]
WALL_COLUMNS: tuple[str, ...] = ("epoch_wall_s", "epoch_time_s", "wall_s", "wall_time_s", "time_s", "seconds", "duration_s")


def training_wall_time(log: pd.DataFrame | None) -> float:
    """Sum of the per-epoch wall times of a ``train_log.csv`` in seconds (NaN when not logged)."""
    if log is None:
        return math.nan
    column = next((c for c in WALL_COLUMNS if c in log.columns), None)
    if column is None:
        return math.nan
    values = pd.to_numeric(log[column], errors="coerce").to_numpy(dtype=float)
    return float(np.nansum(values)) if np.isfinite(values).any() else math.nan


def training_seconds_per_iteration(result: ModelResult) -> float:
    """Measured training time per iteration (one mini-batch step) from ``train_log.csv``:
    total epoch wall time / total iterations (NaN when not logged)."""
    log = result.train_log
    if log is None or "iterations" not in log.columns:
        return math.nan
    wall = training_wall_time(log)
    iterations = pd.to_numeric(log["iterations"], errors="coerce").sum()
    return wall / float(iterations) if iterations and np.isfinite(wall) else math.nan


def scheme_of(name: str) -> tuple[str, str]:
    """(numerical scheme, time step) of a model, from the registry when it knows the name."""
    if name == "lstm":
        return ("— (data-driven)", "1 d")
    if name == "sacsma":
        return ("SAC-SMA + Snow-17 (CAMELS)", "1 d")
    try:
        from benchmark.models.registry import get_model_spec

        spec = get_model_spec(name)
    except Exception:  # noqa: BLE001 - unknown to the registry
        return (NA, NA)
    return (spec.scheme_text, spec.time_step)


def _registry_gradient(name: str) -> str | None:
    try:
        from benchmark.models.registry import get_model_spec

        return get_model_spec(name).gradient
    except Exception:  # noqa: BLE001 - not a registry model
        return None


def _cost_row(label: str, scheme: str, step: str, perf: dict[str, Any] | None, result: ModelResult | None,
              basins: set[str]) -> list[Cell]:
    perf = perf or {}
    memory = _first_number(perf, ("peak_memory_MB", "peak_memory_mb", "memory_mb"))
    step_s = _first_number(perf, ("step_s", "time_per_batch_s", "time_s"))
    per_iteration = wall = peak = math.nan
    med = dict.fromkeys(("NSE", "KGE", "lowRMSE", "peakRMSE"), math.nan)
    if result is not None:
        on = scored_basins(result) & basins
        med = {c: median_metric(result, c, on) for c in med}
        per_iteration = training_seconds_per_iteration(result)
        wall = training_wall_time(result.train_log)
        if not np.isfinite(wall):
            wall = result.run_metrics.get("train_wall_s", math.nan)
        peak = result.run_metrics.get("train_peak_memory_mb", math.nan)
    return [
        Cell(label), Cell(scheme), Cell(step),
        Cell(fmt(memory, 0), value=memory), Cell(fmt(step_s, 3), value=step_s),
        Cell(fmt(per_iteration, 2), value=per_iteration), Cell(fmt(peak, 0), value=peak), Cell(fmt(wall, 1), value=wall),
        Cell(fmt(med["NSE"], 3), value=med["NSE"]), Cell(fmt(med["KGE"], 3), value=med["KGE"]),
        Cell(fmt(med["lowRMSE"], 3), value=med["lowRMSE"]), Cell(fmt(med["peakRMSE"], 3), value=med["peakRMSE"]),
    ]


def cost_table(inputs: ReportInputs, comparisons: Comparisons | None = None) -> Table:
    """Table A2 layout: scheme, time step, cost per training step (``hbvbench perf``), our
    training cost, and the medians of the trained model of that scheme.

    One row per ``hbvbench perf`` variant (the implicit scheme twice: adjoint, and autograd
    unrolled through Newton), then every trained model without a perf row. A perf row carries
    a trained model's numbers only when the gradient method is the model's own.
    """
    basins = benchmark_basins(inputs)
    comparisons = comparisons or Comparisons(basins)
    trained = {m.name: m for m in inputs.models if m.name != "sacsma"}
    rows, markable, used = [], [], set()
    for record in sorted(perf_records(inputs.perf), key=lambda r: styles.sort_key(str(r.get("model")))):
        name = str(record.get("model"))
        own = record.get("gradient") in (None, _registry_gradient(name))
        result = trained.get(name) if own else None
        label = styles.label(name) + ("" if own else f" ({record.get('gradient')} gradients)")
        scheme = str(record.get("scheme_text") or scheme_of(name)[0])
        step = str(record.get("time_step") or scheme_of(name)[1])
        rows.append(_cost_row(label, scheme, step, record, result, basins))
        markable.append(result if result is not None and len(scored_basins(result) & basins) == len(basins) else None)
        used.add(name) if result is not None else None
    for result in ordered(m for m in trained.values() if m.name not in used):
        scheme, step = scheme_of(result.name)
        rows.append(_cost_row(styles.label(result.name), scheme, step, None, result, basins))
        markable.append(result if len(scored_basins(result) & basins) == len(basins) else None)
    for col, key in ((8, "NSE"), (9, "KGE"), (10, "lowRMSE"), (11, "peakRMSE")):
        mark_significant_best(rows, col, key, markable, comparisons)
    groups = [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile", rows)]
    published = inputs.published.get("tableA2")
    if published is not None and len(published):
        pub_rows = []
        for r in published.itertuples():
            note = f" — {r.note}" if isinstance(r.note, str) and r.note else ""
            pub_rows.append([
                Cell(f"{styles.label(r.model)} (published)"), Cell(str(r.numerical_scheme)), Cell(str(r.time_step)),
                Cell(fmt(r.memory_MB, 0)), Cell(fmt(r.time_per_batch_s, 1) + ("*" if note else "")),
                Cell("—"), Cell("—"), Cell("—"),
                Cell(fmt(r.NSE, 2)), Cell(fmt(r.KGE, 2)), Cell(fmt(r.lowRMSE, 3)), Cell(fmt(r.peakRMSE, 2)),
            ])
        groups.append(RowGroup(PUBLISHED_LABEL + ", Table A2, Nvidia V100", pub_rows))
    notes = [perf_note(inputs.perf)]
    if published is not None:
        notes += [f"* {styles.label(r.model)} (published): {r.note}" for r in published.itertuples()
                  if isinstance(r.note, str) and r.note]
    notes.append("Training columns are measured in our own runs on this machine (the first seed of each model): s per "
                 "iteration = total epoch wall time / iterations and wall time = sum of the per-epoch times "
                 "(artifacts/models/<model>/train_log.csv); peak memory = the run's train_peak_memory_mb in MLflow "
                 "(n/a without a tracking store). Medians as in the streamflow table; bold by the same significance rule.")
    return Table("cost", "Computational cost (layout of Table A2)", COST_COLUMNS, groups, notes)


def perf_records(perf: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The result rows of ``hbvbench perf`` JSON files (``{"config", "results", "ratio"}``),
    one per variant ``key``; a later file replaces a variant measured in an earlier one."""
    by_key: dict[str, dict[str, Any]] = {}
    for document in perf:
        for record in document.get("results") or []:
            if isinstance(record, dict) and "model" in record:
                by_key[str(record.get("key", record["model"]))] = record
    return list(by_key.values())


def perf_note(perf: list[dict[str, Any]]) -> str:
    """A footnote saying where the cost numbers come from and how they were measured."""
    if not perf:
        return "Cost per step: n/a — no `hbvbench perf` result in reports/perf/ (run `hbvbench perf`)."
    latest = perf[-1]
    config = latest.get("config") or {}
    parts = [f"{config[k]} {label}" for k, label in (("basins", "basins"), ("days", "days"), ("nmul", "components"))
             if k in config]
    setting = ", ".join(parts)
    device = " ".join(str(config[k]) for k in ("device", "device_name", "dtype") if config.get(k))
    memory = next((r.get("memory_kind") for r in latest.get("results") or [] if r.get("memory_kind")), None)
    ratio = latest.get("ratio")
    text = (f"Memory / time per batch: one training step (forward + backward, median of the timed repeats) from "
            f"`hbvbench perf` ({latest.get('_file', '')}): {setting}; {device}")
    if memory:
        text += f"; memory = {memory}"
    if isinstance(ratio, (int, float)):
        text += f"; adjoint / sequential step-time ratio {ratio:.2f} (paper, V100: 19.5 / 1.8 = 10.8)"
    return text + "."


def _first_number(record: dict[str, Any], keys: tuple[str, ...]) -> float:
    for key in keys:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return math.nan


# --------------------------------------------------------------------------- rendering


def to_markdown(table: Table) -> str:
    """Render as GitHub markdown: one pipe table per row group, best values in bold."""
    lines = [f"### {table.title}", ""]
    for group in table.groups:
        header = [c.replace("|", "\\|") for c in table.columns]
        lines += [f"*{group.heading}*", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" for _ in table.columns) + "|"]
        for row in group.rows:
            cells = [(f"**{c.text}**" if c.best else c.text).replace("|", "\\|") for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def to_html(table: Table) -> str:
    """Render as an HTML ``<table>`` with a header row per row group, best values in ``<strong>``."""
    esc = html_lib.escape
    parts = [f'<section class="table" id="table-{esc(table.key)}">', f"<h3>{esc(table.title)}</h3>", "<table>", "<thead><tr>"]
    parts += [f"<th>{esc(c)}</th>" for c in table.columns]
    parts.append("</tr></thead>")
    for group in table.groups:
        parts.append(f'<tbody class="{esc(group.kind)}"><tr class="group"><th colspan="{len(table.columns)}">{esc(group.heading)}</th></tr>')
        for row in group.rows:
            cells = [f"<td class=\"best\"><strong>{esc(c.text)}</strong></td>" if c.best else f"<td>{esc(c.text)}</td>" for c in row]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody>")
    parts.append("</table>")
    if table.notes:
        parts.append("<ul class=\"notes\">" + "".join(f"<li>{esc(n)}</li>" for n in table.notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def all_tables(inputs: ReportInputs, comparisons: Comparisons | None = None) -> list[Table]:
    """The metric tables of the leaderboard in page order: streamflow, signatures, the
    per-seed medians (when a model has several seeds) and cost."""
    comparisons = comparisons or Comparisons(benchmark_basins(inputs))
    seeds = seed_table(inputs)
    return ([streamflow_table(inputs, comparisons), signatures_table(inputs, comparisons)]
            + ([seeds] if seeds is not None else []) + [cost_table(inputs, comparisons)])
