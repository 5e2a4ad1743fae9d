"""The leaderboard's figures (matplotlib, Agg, PNG), one fixed colour per model.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot state, no
display needed). Each builder returns a :class:`ReportFigure` or None when its inputs are
absent (e.g. no model wrote learned parameters); the build then says so in the report.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.errors import DataError
from benchmark.report import styles
from benchmark.report.inputs import ModelResult, ReportInputs
from benchmark.report.tables import benchmark_basins, ordered

PARAMETERS_SHOWN: tuple[str, ...] = ("BETA", "FC", "K2", "LP")
PARAMETER_SYMBOLS: dict[str, str] = {"BETA": "β", "FC": "FC", "K2": "K2", "LP": "LP"}
DPI = 110


@dataclass
class ReportFigure:
    """A rendered figure: file stem, caption and PNG bytes."""

    name: str
    caption: str
    png: bytes


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.sort(values[np.isfinite(values)])
    return values, np.arange(1, values.size + 1) / values.size


# --------------------------------------------------------------------------- Fig. 3


def ecdf_at(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Fraction of the finite ``values`` at or below each point of ``grid``."""
    finite = np.sort(values[np.isfinite(values)])
    if not finite.size:
        return np.full(grid.shape, np.nan)
    return np.searchsorted(finite, grid, side="right") / finite.size


def _basin_values(per_basin: pd.DataFrame, metric: str, basins: set[str]) -> np.ndarray:
    if metric not in per_basin.columns:
        return np.array([])
    series = pd.to_numeric(per_basin[metric], errors="coerce")
    return series[series.index.isin(list(basins))].to_numpy(dtype=float)


def _draw_model_ecdf(ax: Any, result: ModelResult, metric: str, basins: set[str]) -> bool:
    """One model's ECDF: a line, with the min-max band of its seeds' ECDFs and the seed
    ensemble (dashed) when it has several seeds. False when it has no value to draw."""
    per_seed = [_basin_values(run.per_basin, metric, basins) for run in result.runs]
    per_seed = [v[np.isfinite(v)] for v in per_seed]
    if not any(v.size for v in per_seed):
        return False
    colour, label = styles.colour(result.name), styles.label(result.name)
    n = max(v.size for v in per_seed)
    if len(per_seed) == 1:
        x, y = _ecdf(per_seed[0])
        # clip to the paper's axis range so one poor basin does not squash the plot
        ax.step(np.clip(x, -1.0, 1.0), y, where="post", color=colour, lw=1.8, label=f"{label} (n={n})")
        return True
    grid = np.unique(np.clip(np.concatenate([[-1.0, 1.0], *per_seed]), -1.0, 1.0))
    curves = np.stack([ecdf_at(np.clip(v, -1.0, 1.0), grid) for v in per_seed if v.size])
    ax.fill_between(grid, curves.min(axis=0), curves.max(axis=0), step="post", color=colour, alpha=0.22, lw=0)
    ax.step(grid, np.median(curves, axis=0), where="post", color=colour, lw=1.8,
            label=f"{label} (n={n}, {len(per_seed)} seeds)")
    if result.ensemble is not None:
        x, y = _ecdf(_basin_values(result.ensemble.per_basin, metric, basins))
        ax.step(np.clip(x, -1.0, 1.0), y, where="post", color=colour, lw=1.2, ls="--")
    return True


def ecdf_figure(inputs: ReportInputs) -> ReportFigure | None:
    """Empirical CDFs of NSE and KGE across basins, one line per model (the paper's Fig. 3);
    for a model with several seeds, the band of its seeds' ECDFs around their pointwise median
    and its seed ensemble dashed."""
    basins = benchmark_basins(inputs)
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    drawn = False
    for ax, metric in zip(axes, ("NSE", "KGE")):
        for result in ordered(inputs.models):
            drawn = _draw_model_ecdf(ax, result, metric, basins) or drawn
        ax.set_xlim(-1.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(f"{metric} (–), values below −1 shown at −1")
        ax.set_ylabel("Cumulative fraction of basins (–)")
        ax.grid(alpha=0.3)
        ax.annotate("better →", xy=(0.97, 0.05), xycoords="axes fraction", ha="right")
    if not drawn:
        return None
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Empirical CDF of test-period NSE and KGE across basins")
    several = any(len(m.runs) > 1 for m in inputs.models)
    seeds_text = (" For a model with several seeds: shaded, the range (lowest to highest) of its seeds' ECDFs; line, "
                  "their pointwise median; dashed, the seed ensemble (mean of the seeds' daily flows).") if several else ""
    return ReportFigure("ecdf_nse_kge", "Empirical cumulative distribution of test-period NSE (left) and KGE "
                        "(right) across basins, one line per model (layout of the paper's Fig. 3)." + seeds_text,
                        _png(fig))


# --------------------------------------------------------------------------- Fig. 6


def _load_predictions(path: Path) -> xr.Dataset:
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read predictions {path}: {exc}") from None
    for var in ("qsim", "qobs"):
        if var not in ds:
            raise DataError(f"{path}: variable {var!r} missing (expected qsim and qobs over (basin, date))")
    return ds.assign_coords(basin=[str(b.decode() if isinstance(b, bytes) else b).zfill(8) for b in ds["basin"].values])


class PredictionCache:
    """Open each ``predictions.nc`` once per report."""

    def __init__(self) -> None:
        self._cache: dict[Path, xr.Dataset] = {}

    def get(self, result: ModelResult) -> xr.Dataset | None:
        """The predictions of a model, or None when it has none."""
        if result.predictions is None:
            return None
        if result.predictions not in self._cache:
            self._cache[result.predictions] = _load_predictions(result.predictions)
        return self._cache[result.predictions]


def pick_hydrograph_basins(obs: xr.DataArray, candidates: list[str], n: int = 3) -> list[str]:
    """Three contrasting basins: lowest, median and highest mean observed flow (dry to wet)."""
    means = {b: float(np.nanmean(obs.sel(basin=b).values)) for b in candidates
             if np.isfinite(obs.sel(basin=b).values).any()}
    ranked = sorted(means, key=lambda b: (means[b], b))
    if len(ranked) <= n:
        return ranked
    picks = [ranked[0], ranked[len(ranked) // 2], ranked[-1]]
    return list(dict.fromkeys(picks))


def peak_water_year(obs: pd.Series) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The water year (1 Oct – 30 Sep) holding the largest observed flow, clipped to the record."""
    start, end = obs.index.min(), obs.index.max()
    if (end - start).days <= 366 or not obs.notna().any():
        return start, end
    peak = obs.idxmax()
    wy_start = pd.Timestamp(year=peak.year if peak.month >= 10 else peak.year - 1, month=10, day=1)
    return max(start, wy_start), min(end, wy_start + pd.DateOffset(years=1) - pd.Timedelta(days=1))


def hydrograph_figure(inputs: ReportInputs, cache: PredictionCache) -> ReportFigure | None:
    """Observed and simulated streamflow of three basins for every model (the paper's Fig. 6)."""
    with_pred = [(m, cache.get(m)) for m in ordered(inputs.models)]
    with_pred = [(m, ds) for m, ds in with_pred if ds is not None]
    if not with_pred:
        return None
    ours = [(m, ds) for m, ds in with_pred if m.name != "sacsma"] or with_pred
    common = sorted(set.intersection(*(set(ds["basin"].values) for _, ds in ours)))
    if not common:
        return None
    obs_all = ours[0][1]["qobs"]
    basins = pick_hydrograph_basins(obs_all, common)
    fig = Figure(figsize=(11, 3.0 * len(basins)))
    axes = np.atleast_1d(fig.subplots(len(basins), 1, squeeze=False)[:, 0])
    for ax, basin in zip(axes, basins):
        obs = obs_all.sel(basin=basin).to_series()
        start, end = peak_water_year(obs)
        window = obs.loc[start:end]
        ax.plot(window.index, window.values, color=styles.OBSERVED_COLOUR, lw=1.6, label="observed")
        for result, ds in with_pred:
            if basin not in ds["basin"].values:
                continue
            sim = ds["qsim"].sel(basin=basin).to_series().loc[start:end]
            run_metrics = result.primary.per_basin  # the plotted run's own score
            kge = run_metrics["KGE"].get(basin, math.nan) if "KGE" in run_metrics.columns else math.nan
            kge_text = f"{kge:.2f}" if np.isfinite(kge) else "n/a"
            ax.plot(sim.index, sim.values, color=styles.colour(result.name), lw=1.1, alpha=0.9,
                    label=f"{styles.label(result.name)} (KGE {kge_text})")
        ax.set_title(f"Basin {basin}: mean observed flow {np.nanmean(obs.values):.2f} mm/d; "
                     f"{start:%Y-%m-%d} to {end:%Y-%m-%d}", fontsize=10)
        ax.set_ylabel("Streamflow (mm/d)")
        ax.set_xlabel("Date")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return ReportFigure("hydrographs", "Observed and simulated daily streamflow at three basins (lowest, median and "
                        "highest mean observed flow) in the water year with the largest observed flow of the test "
                        "period; KGE over the whole test period in the legend (layout of the paper's Fig. 6). A model with "
                        "several seeds is shown by its first seed.", _png(fig))


# --------------------------------------------------------------------------- adjoint - sequential

DIFF_METRICS: tuple[tuple[str, str], ...] = (
    ("NSE", "Δ NSE (–)"), ("KGE", "Δ KGE (–)"), ("absFLV", "Δ |FLV| (percentage points)"),
    ("absFHV", "Δ |FHV| (percentage points)"),
)


def metric_differences(adjoint: ModelResult, sequential: ModelResult, metric: str) -> pd.Series:
    """Per-basin ``adjoint - sequential`` of one metric on the basins both scored."""
    if metric not in adjoint.per_basin.columns or metric not in sequential.per_basin.columns:
        return pd.Series(dtype=float)
    a = pd.to_numeric(adjoint.per_basin[metric], errors="coerce")
    s = pd.to_numeric(sequential.per_basin[metric], errors="coerce")
    diff = (a - s).dropna()
    return diff[np.isfinite(diff)].sort_index()


def difference_figure(inputs: ReportInputs) -> ReportFigure | None:
    """Per-basin metric differences adjoint − sequential (with and without capillary rise)."""
    pairs = [(inputs.model(a), inputs.model(s)) for a, s in styles.ADJOINT_PAIRS]
    pairs = [(a, s) for a, s in pairs if a is not None and s is not None]
    if not pairs:
        return None
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, len(DIFF_METRICS))
    rng = np.random.default_rng(0)  # jitter only; fixed so the PNG is reproducible
    for ax, (metric, ylabel) in zip(axes, DIFF_METRICS):
        for position, (adj, seq) in enumerate(pairs):
            diff = metric_differences(adj, seq, metric).to_numpy()
            if not diff.size:
                continue
            x = position + rng.uniform(-0.15, 0.15, diff.size)
            ax.scatter(x, diff, s=14, color=styles.colour(adj.name), alpha=0.8, zorder=3)
            ax.hlines(np.median(diff), position - 0.3, position + 0.3, color=styles.colour(adj.name), lw=2.5, zorder=4)
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xticks(range(len(pairs)))
        ax.set_xticklabels([f"{styles.label(a.name)}\n− {styles.label(s.name)}" for a, s in pairs], fontsize=7)
        ax.set_xlim(-0.6, len(pairs) - 0.4)
        ax.set_ylabel(ylabel)
        better = "higher is better" if metric in ("NSE", "KGE") else "lower is better"
        shown = {"absFLV": "|FLV|", "absFHV": "|FHV|"}.get(metric, metric)
        ax.set_title(f"{shown}: {better}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.supxlabel("Model pair, adjoint − sequential (dots: basins; bar: median)", fontsize=9)
    fig.tight_layout()
    return ReportFigure("adjoint_minus_sequential", "Per-basin differences of test metrics, adjoint (implicit) minus "
                        "sequential model, with and without capillary rise; one dot per basin, bar at the median. "
                        "Positive ΔNSE/ΔKGE and negative Δ|FLV|/Δ|FHV| favour the adjoint model.", _png(fig))


# --------------------------------------------------------------------------- parameters


def basin_parameter_values(ds: xr.Dataset, name: str) -> pd.Series | None:
    """Per-basin value of a learned parameter: ``param_<NAME>`` averaged over every other
    dimension (days of a dynamic parameter, the nmul components)."""
    var = f"param_{name}"
    if var not in ds:
        return None
    data = ds[var]
    other = [d for d in data.dims if d != "basin"]
    values = data.mean(dim=other, skipna=True) if other else data
    return values.to_series()


def parameter_figure(inputs: ReportInputs, cache: PredictionCache) -> ReportFigure | None:
    """Distributions across basins of the learned β, FC, K2 and LP, one box per model."""
    from benchmark.models.parameters import HBV_PARAMETERS

    collected: dict[str, list[tuple[ModelResult, np.ndarray]]] = {p: [] for p in PARAMETERS_SHOWN}
    for result in ordered(inputs.models):
        ds = cache.get(result)
        if ds is None:
            continue
        for name in PARAMETERS_SHOWN:
            values = basin_parameter_values(ds, name)
            if values is not None and np.isfinite(values.to_numpy(dtype=float)).any():
                v = values.to_numpy(dtype=float)
                collected[name].append((result, v[np.isfinite(v)]))
    if not any(collected.values()):
        return None
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, len(PARAMETERS_SHOWN))
    for ax, name in zip(axes, PARAMETERS_SHOWN):
        spec = HBV_PARAMETERS[name]
        entries = collected[name]
        if entries:
            # neutral median/flier colours: every hue belongs to a model
            boxes = ax.boxplot([v for _, v in entries], patch_artist=True, widths=0.6,
                               medianprops={"color": "black"}, flierprops={"markeredgecolor": "0.3"})
            for position, (patch, (result, values)) in enumerate(zip(boxes["boxes"], entries), start=1):
                patch.set_facecolor(styles.colour(result.name))
                patch.set_alpha(0.45)
                jitter = np.random.default_rng(position).uniform(-0.12, 0.12, values.size)  # fixed: reproducible PNG
                ax.scatter(position + jitter, values, s=10, color=styles.colour(result.name), zorder=3)
            ax.set_xticks(range(1, len(entries) + 1))
            ax.set_xticklabels([styles.label(r.name) for r, _ in entries], rotation=35, ha="right", fontsize=7)
        else:
            ax.text(0.5, 0.5, "not written by any model", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(spec.lo, spec.hi)
        unit = "–" if spec.unit == "-" else spec.unit
        ax.set_ylabel(f"{PARAMETER_SYMBOLS[name]} ({unit})")
        ax.set_title(f"{PARAMETER_SYMBOLS[name]}: {spec.meaning}", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return ReportFigure("parameters", "Learned HBV parameters across basins (basin value = mean over days and "
                        "components; a model with several seeds: its first seed), y-axes span the physical ranges "
                        "(docs/model.md#parameters).", _png(fig))


# --------------------------------------------------------------------------- training curves


def loss_columns(log: pd.DataFrame) -> list[str]:
    """Numeric columns of a training log whose name mentions a loss, duplicates dropped
    (neuralhydrology logs e.g. ``valid_loss`` and ``valid_avg_loss`` with equal values)."""
    columns: list[str] = []
    for column in log.columns:
        if "loss" not in column.lower() or "total" in column.lower() or not pd.api.types.is_numeric_dtype(log[column]):
            continue
        if not any(np.allclose(log[column].to_numpy(float), log[c].to_numpy(float), equal_nan=True) for c in columns):
            columns.append(column)
    return columns


def _draw_losses(ax: Any, logs: list[tuple[ModelResult, pd.DataFrame]]) -> None:
    epochs: set[int] = set()
    for result, log in logs:
        x = log["epoch"].to_numpy() if "epoch" in log.columns else np.arange(1, len(log) + 1)
        epochs.update(int(e) for e in x)
        for column in loss_columns(log):
            style = "--" if "val" in column.lower() else "-"
            ax.plot(x, log[column].to_numpy(dtype=float), style, marker="o", ms=3, color=styles.colour(result.name),
                    label=f"{styles.label(result.name)}: {column}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) <= 3:  # a one- or two-epoch run: keep the axis on whole epochs
        ax.set_xticks(sorted(epochs))
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    ax.set_xlabel("Epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def training_curve_figure(inputs: ReportInputs) -> ReportFigure | None:
    """Per-epoch training (solid) and validation (dashed) loss per model; the differentiable
    models (RMSE-combined loss, mm/d) and the baselines (their own loss) in separate panels."""
    logs = [(m, m.train_log) for m in ordered(inputs.models) if m.train_log is not None and loss_columns(m.train_log)]
    if not logs:
        return None
    groups = [("δHBV variants", "Loss, RMSE-combined (eq. 36) (mm/d)", [g for g in logs if not g[0].is_baseline]),
              ("Baselines", "Loss as configured in neuralhydrology (–)", [g for g in logs if g[0].is_baseline])]
    groups = [g for g in groups if g[2]]
    fig = Figure(figsize=(6.5 * len(groups), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (title, ylabel, members) in zip(axes, groups):
        _draw_losses(ax, members)
        ax.set_ylabel(ylabel)
        ax.set_title(f"Training curves: {title}", fontsize=10)
    fig.tight_layout()
    return ReportFigure("training_curves", "Per-epoch loss of each trained model from its training log "
                        "(artifacts/models/<model>/train_log.csv; the LSTM's epoch_losses.csv; a model with several seeds: "
                        "its first seed); solid: training, dashed: validation.", _png(fig))


def all_figures(inputs: ReportInputs) -> tuple[list[ReportFigure], list[str]]:
    """Build every figure; returns the figures and a note for each one that had no input."""
    cache = PredictionCache()
    builders = (
        ("ECDF of NSE and KGE", lambda: ecdf_figure(inputs), "no per-basin NSE/KGE"),
        ("hydrographs", lambda: hydrograph_figure(inputs, cache), "no predictions.nc with common basins"),
        ("adjoint − sequential", lambda: difference_figure(inputs),
         "needs both dhbv_adj and dhbv (or dhbv_adj_cr and dhbv_cr)"),
        ("learned parameters", lambda: parameter_figure(inputs, cache),
         "no param_<NAME> variables in any predictions.nc"),
        ("training curves", lambda: training_curve_figure(inputs), "no train_log.csv with loss columns"),
    )
    figures, missing = [], []
    for title, build, reason in builders:
        figure = build()
        if figure is None:
            missing.append(f"Figure '{title}' not drawn: {reason}.")
        else:
            figures.append(figure)
    return figures, missing
