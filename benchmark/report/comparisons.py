"""Model-level statistics of the leaderboard: each model's medians with confidence intervals
and seed spread, and paired comparisons of two models per metric.

The numbers come from :mod:`benchmark.report.statistics` (rules in its docstring; see also
docs/metrics.md). What a model's "per-basin value" is, is decided here, once:

* a per-basin metric (NSE, KGE, |FLV|...) of a model is, per basin, the mean over its seeds
  of the per-seed values (:attr:`ModelResult.per_basin`); its median across basins gets a
  bootstrap CI over basins, and the medians of the single seeds give the seed spread;
* the BFI spatial correlation is one number per run: the model's value is the mean over
  its seeds of each seed's correlation, with a bootstrap CI over basins;
* two models are compared on the basins both scored: Wilcoxon signed-rank test of the
  paired per-basin values (the BFI correlation: paired bootstrap), the median paired
  difference with its CI, the basins each wins, and Holm's correction across the metrics
  of the pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.report import statistics
from benchmark.report.inputs import ModelResult, SeedRun
from benchmark.report.statistics import Estimate, Spread, Tally

HIGHER_IS_BETTER: dict[str, bool] = {
    "NSE": True, "KGE": True, "absFLV": False, "absFHV": False, "lowRMSE": False,
    "peakRMSE": False, "BFI_r": True, "ET_NSE": True, "time_s": False, "memory_mb": False,
}
"""Direction of every ranked quantity (|FLV|, |FHV| and RMSEs: lower is better)."""

METRIC_LABELS: dict[str, str] = {
    "NSE": "NSE", "KGE": "KGE", "absFLV": "|FLV| (%)", "absFHV": "|FHV| (%)",
    "lowRMSE": "low-flow RMSE (mm/d)", "peakRMSE": "peak-flow RMSE (mm/d)",
    "ET_NSE": "ET NSE", "BFI_r": "BFI spatial correlation r",
}
"""How each compared metric is named in the tables."""

PER_BASIN_METRICS: tuple[str, ...] = ("NSE", "KGE", "absFLV", "absFHV", "lowRMSE", "peakRMSE", "ET_NSE")
"""Metrics with one value per basin (paired by basin)."""

CORRELATION_METRIC = "BFI_r"
"""The cross-basin statistic: Pearson r of simulated BFI with CAMELS ``baseflow_index``."""

COMPARED_METRICS: tuple[str, ...] = PER_BASIN_METRICS + (CORRELATION_METRIC,)
"""The family of one model pair (Holm's correction runs over those that could be tested)."""


# --------------------------------------------------------------------------- one model


def column_values(per_basin: pd.DataFrame, column: str, basins: set[str] | None = None) -> pd.Series:
    """One per-basin column as floats (NaN where absent or not a number), restricted to ``basins``."""
    if column not in per_basin.columns:
        return pd.Series(dtype=float)
    series = pd.to_numeric(per_basin[column], errors="coerce").astype(float)
    return series[series.index.isin(list(basins))] if basins is not None else series


def median_estimate(model: ModelResult, column: str, basins: set[str] | None = None) -> Estimate:
    """Median across basins of the model's (seed-mean) per-basin ``column`` with its bootstrap CI."""
    return statistics.median_ci(column_values(model.per_basin, column, basins).to_numpy())


def ensemble_estimate(model: ModelResult, column: str, basins: set[str] | None = None) -> Estimate:
    """Median with CI of ``column`` for the model's seed ensemble (NO_ESTIMATE without one)."""
    if model.ensemble is None:
        return statistics.NO_ESTIMATE
    return statistics.median_ci(column_values(model.ensemble.per_basin, column, basins).to_numpy())


def median_spread(model: ModelResult, column: str, basins: set[str] | None = None) -> Spread:
    """The median of ``column`` of each seed on its own."""
    medians = []
    for run in model.runs:
        values = column_values(run.per_basin, column, basins).to_numpy()
        values = values[np.isfinite(values)]
        medians.append(float(np.median(values)) if values.size else math.nan)
    return statistics.seed_spread(medians)


def bfi_arrays(runs: list[SeedRun], basins: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(n_seeds, n_basins)`` simulated BFI and ``(n_basins,)`` CAMELS BFI on ``basins``
    (NaN where a run lacks the basin or the column)."""
    sims = np.stack([column_values(run.per_basin, "BFI").reindex(basins).to_numpy(dtype=float) for run in runs])
    reference = column_values(runs[0].per_basin, "BFI_camels").reindex(basins).to_numpy(dtype=float)
    return sims, reference


def bfi_estimate(model: ModelResult, basins: set[str] | None = None) -> Estimate:
    """The model's BFI spatial correlation (seed mean of each seed's r) with its bootstrap CI."""
    if not _has_bfi(model):
        return statistics.NO_ESTIMATE
    chosen = sorted(basins if basins is not None else set(model.primary.per_basin.index))
    return statistics.correlation_ci(*bfi_arrays(model.runs, chosen))


def bfi_spread(model: ModelResult, basins: set[str] | None = None) -> Spread:
    """Each seed's BFI spatial correlation."""
    if not _has_bfi(model):
        return statistics.seed_spread([math.nan] * len(model.runs))
    chosen = sorted(basins if basins is not None else set(model.primary.per_basin.index))
    values = []
    for run in model.runs:
        sims, reference = bfi_arrays([run], chosen)
        values.append(statistics.correlation_ci(sims, reference).value)
    return statistics.seed_spread(values)


def _has_bfi(model: ModelResult) -> bool:
    return all("BFI" in r.per_basin.columns and "BFI_camels" in r.per_basin.columns for r in model.runs)


# --------------------------------------------------------------------------- two models


@dataclass(frozen=True)
class MetricComparison:
    """Model ``a`` against model ``b`` on one metric.

    ``difference`` is ``a - b``: the median of the per-basin differences for a per-basin
    metric, the difference of the correlations for ``BFI_r``; ``p`` is the Wilcoxon (or
    paired-bootstrap) p-value and ``p_holm`` the Holm-adjusted one; ``tally`` counts the
    basins each model is better on (None for ``BFI_r``); ``test`` names the test.
    """

    metric: str
    n: int
    value_a: float
    value_b: float
    difference: Estimate
    p: float
    p_holm: float
    tally: Tally | None
    test: str

    @property
    def significant(self) -> bool:
        """Holm-adjusted p below :data:`statistics.ALPHA`."""
        return math.isfinite(self.p_holm) and self.p_holm < statistics.ALPHA

    @property
    def a_is_better(self) -> bool | None:
        """Whether the difference favours ``a`` (None for a zero or missing difference)."""
        d = self.difference.value
        if not math.isfinite(d) or d == 0:
            return None
        return (d > 0) == HIGHER_IS_BETTER[self.metric]

    def favours(self, a: str, b: str) -> str | None:
        """The name of the significantly better model, or None when the test cannot tell."""
        if not self.significant or self.a_is_better is None:
            return None
        return a if self.a_is_better else b


@dataclass(frozen=True)
class PairComparison:
    """Every metric of one model pair, with Holm's correction across them."""

    a: str
    b: str
    metrics: dict[str, MetricComparison]

    def get(self, metric: str) -> MetricComparison | None:
        """The comparison on one metric (None when it could not be tested)."""
        return self.metrics.get(metric)

    def favours(self, metric: str) -> str | None:
        """The significantly better model on ``metric`` (None: no significant difference)."""
        comparison = self.metrics.get(metric)
        return comparison.favours(self.a, self.b) if comparison is not None else None


def _per_basin_comparison(a: ModelResult, b: ModelResult, metric: str, basins: set[str] | None) -> MetricComparison | None:
    va = column_values(a.per_basin, metric, basins)
    vb = column_values(b.per_basin, metric, basins)
    joined = pd.concat([va.rename("a"), vb.rename("b")], axis=1, join="inner").dropna()
    joined = joined[np.isfinite(joined["a"]) & np.isfinite(joined["b"])].sort_index()
    if joined.empty:
        return None
    xa, xb = joined["a"].to_numpy(), joined["b"].to_numpy()
    test = statistics.wilcoxon_test(xa, xb)
    return MetricComparison(
        metric=metric, n=len(joined), value_a=float(np.median(xa)), value_b=float(np.median(xb)),
        difference=statistics.median_difference_ci(xa, xb), p=test.p, p_holm=math.nan,
        tally=statistics.tally(xa, xb, HIGHER_IS_BETTER[metric]),
        test=f"Wilcoxon signed-rank, {test.method}" + (f", {test.n - test.n_nonzero} zero differences dropped"
                                                       if test.n > test.n_nonzero else ""),
    )


def _correlation_comparison(a: ModelResult, b: ModelResult, basins: set[str] | None) -> MetricComparison | None:
    if not (_has_bfi(a) and _has_bfi(b)):
        return None
    chosen = set(a.primary.per_basin.index) & set(b.primary.per_basin.index)
    chosen = sorted(chosen & basins if basins is not None else chosen)
    sims_a, reference = bfi_arrays(a.runs, chosen)
    sims_b, _ = bfi_arrays(b.runs, chosen)
    difference, p = statistics.correlation_difference(sims_a, sims_b, reference)
    if not difference.finite:
        return None
    keep = np.all(np.isfinite(sims_a), axis=0) & np.all(np.isfinite(sims_b), axis=0) & np.isfinite(reference)
    value_a = statistics.correlation_ci(sims_a[:, keep], reference[keep]).value
    value_b = statistics.correlation_ci(sims_b[:, keep], reference[keep]).value
    return MetricComparison(CORRELATION_METRIC, difference.n, value_a, value_b, difference, p, math.nan, None,
                            "paired bootstrap over basins")


def compare(a: ModelResult, b: ModelResult, basins: set[str] | None = None) -> PairComparison:
    """Compare model ``a`` with model ``b`` on every metric of :data:`COMPARED_METRICS` both have.

    Parameters
    ----------
    a, b
        The models (their seed-mean per-basin values; every seed for the correlation).
    basins
        Restrict to these gauge ids (default: every basin both scored).

    Returns
    -------
    PairComparison
        One :class:`MetricComparison` per testable metric, ``p_holm`` adjusted across them.
    """
    found: list[MetricComparison] = []
    for metric in PER_BASIN_METRICS:
        comparison = _per_basin_comparison(a, b, metric, basins)
        if comparison is not None:
            found.append(comparison)
    correlation = _correlation_comparison(a, b, basins)
    if correlation is not None:
        found.append(correlation)
    adjusted = statistics.holm([c.p for c in found])
    metrics = {c.metric: MetricComparison(c.metric, c.n, c.value_a, c.value_b, c.difference, c.p, p_holm, c.tally, c.test)
               for c, p_holm in zip(found, adjusted)}
    return PairComparison(a.name, b.name, metrics)


class Comparisons:
    """Pair comparisons, each computed once per report, on a fixed basin set."""

    def __init__(self, basins: set[str] | None = None) -> None:
        self.basins = basins
        self._cache: dict[tuple[str, str], PairComparison] = {}

    def get(self, a: ModelResult, b: ModelResult) -> PairComparison:
        """The comparison of ``a`` with ``b`` (differences ``a - b``)."""
        key = (a.name, b.name)
        if key not in self._cache:
            self._cache[key] = compare(a, b, self.basins)
        return self._cache[key]

    def is_significantly_best(self, best: ModelResult, others: list[ModelResult], metric: str) -> bool:
        """True when ``best`` is significantly better than every model of ``others`` on ``metric``."""
        return bool(others) and all(self.get(best, other).favours(metric) == best.name for other in others)
