"""The leaderboard's statistics: bootstrap confidence intervals over basins, seed spread,
paired Wilcoxon signed-rank tests, paired bootstrap differences and the Holm correction.

Everything here works on plain numpy arrays (one value per basin); what a value means
(which model, which metric) is :mod:`benchmark.report.comparisons`' business. The rules,
stated once and quoted in the report (see docs/metrics.md):

* **Bootstrap**: percentile bootstrap over basins, :data:`N_RESAMPLES` resamples of the
  ``n`` basins drawn with replacement by ``numpy.random.default_rng(BOOTSTRAP_SEED)``
  as one ``integers(0, n, size=(N_RESAMPLES, n))`` array (every statistic on ``n`` basins
  uses the same resamples, so a CI is reproducible from the per-basin file alone); the
  interval is ``numpy.percentile(replicates, [2.5, 97.5])`` (linear interpolation).
* **Paired differences** resample basins jointly (a basin keeps both of its values).
* **Wilcoxon signed-rank test** (``scipy.stats.wilcoxon``) on the paired differences,
  rounded to :data:`DIFFERENCE_DECIMALS` decimals (so that floating-point noise neither
  breaks a tie nor hides a zero), two-sided; zero differences are dropped before ranking (Wilcoxon's original rule,
  ``zero_method="wilcox"``); exact null distribution when at most
  :data:`EXACT_WILCOXON_MAX_N` non-zero differences remain and none of their magnitudes
  are tied, normal approximation with tie correction and no continuity correction
  otherwise.
* **Cross-basin statistics** (the BFI spatial correlation) are one number per run: no
  per-basin pairing exists, so their difference is tested by the paired bootstrap over
  basins, with the two-sided p-value ``2 * (min(#{d* <= 0}, #{d* >= 0}) + 1) / (B + 1)``
  (capped at 1).
* **Holm** step-down adjustment of the p-values of one family (the metrics of one model
  pair).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats

N_RESAMPLES = 10_000
"""Bootstrap resamples of the basins."""

BOOTSTRAP_SEED = 20240915
"""Seed of the bootstrap's ``numpy.random.default_rng``."""

CONFIDENCE = 0.95
"""Level of every confidence interval."""

ALPHA = 0.05
"""Significance level of the paired tests, applied to Holm-adjusted p-values."""

DIFFERENCE_DECIMALS = 12
"""Paired differences are rounded to this many decimals before ties, zeros and wins are decided."""

EXACT_WILCOXON_MAX_N = 50
"""Largest number of non-zero differences for which the exact null distribution is used."""

MIN_BASINS_FOR_CORRELATION = 3
"""A correlation across basins needs at least this many basins."""


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap confidence interval over ``n`` basins."""

    value: float
    low: float
    high: float
    n: int

    @property
    def finite(self) -> bool:
        """True when the statistic itself is a number."""
        return math.isfinite(self.value)


NO_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class Spread:
    """How a statistic varies over training seeds: one value per seed."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """Number of seeds with a finite value."""
        return int(np.isfinite(np.asarray(self.values, dtype=float)).sum())

    @property
    def low(self) -> float:
        """Smallest per-seed value (NaN when none is finite)."""
        return _finite_reduce(self.values, np.min)

    @property
    def high(self) -> float:
        """Largest per-seed value (NaN when none is finite)."""
        return _finite_reduce(self.values, np.max)

    @property
    def sd(self) -> float:
        """Sample standard deviation (ddof 1) of the per-seed values; NaN with fewer than two."""
        finite = _finite(self.values)
        return float(np.std(finite, ddof=1)) if finite.size >= 2 else math.nan


@dataclass(frozen=True)
class WilcoxonResult:
    """A two-sided Wilcoxon signed-rank test of paired differences.

    ``n`` counts the pairs, ``n_nonzero`` those left after dropping zero differences;
    ``statistic`` is scipy's (the smaller of the two rank sums for a two-sided test);
    ``method`` is ``exact``, ``normal`` or ``none`` (every difference zero: ``p`` is 1).
    """

    n: int
    n_nonzero: int
    statistic: float
    p: float
    method: str


@dataclass(frozen=True)
class Tally:
    """Pairs where the first model is better, the second is better, or both are equal."""

    first: int
    second: int
    ties: int


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def _finite_reduce(values: Sequence[float], reduce: Callable[[np.ndarray], float]) -> float:
    finite = _finite(values)
    return float(reduce(finite)) if finite.size else math.nan


# --------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Basin indices of every bootstrap resample: an ``(n_resamples, n)`` integer array."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates ignored)."""
    finite = _finite(replicates)
    if not finite.size:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def median_ci(values: Sequence[float] | np.ndarray) -> Estimate:
    """Median of the finite values with its percentile-bootstrap CI over them.

    Parameters
    ----------
    values
        One value per basin; NaN basins are dropped first.

    Returns
    -------
    Estimate
        The median and the :data:`CONFIDENCE` interval of :data:`N_RESAMPLES` resampled
        medians; :data:`NO_ESTIMATE` when no value is finite.
    """
    finite = _finite(values)
    if not finite.size:
        return NO_ESTIMATE
    replicates = np.median(finite[bootstrap_indices(finite.size)], axis=1)
    low, high = percentile_interval(replicates)
    return Estimate(float(np.median(finite)), low, high, int(finite.size))


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two equally shaped 2-D arrays (NaN for a constant row)."""
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (dx * dy).sum(axis=1) / denominator, np.nan)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two 1-D arrays (NaN for fewer than :data:`MIN_BASINS_FOR_CORRELATION`
    values or a constant series)."""
    if x.size < MIN_BASINS_FOR_CORRELATION:
        return math.nan
    return float(_rowwise_pearson(x[None, :], y[None, :])[0])


def _seed_mean_correlation(sims: np.ndarray, reference: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean over seeds of Pearson r(sim_seed, reference) on every resample ``idx``."""
    ref = reference[idx]
    return np.mean([_rowwise_pearson(sim[idx], ref) for sim in sims], axis=0)


def correlation_ci(sims: np.ndarray, reference: np.ndarray) -> Estimate:
    """Cross-basin Pearson r, averaged over seeds, with its bootstrap CI over basins.

    Parameters
    ----------
    sims
        ``(n_seeds, n_basins)``: each seed's simulated value per basin (e.g. BFI).
    reference
        ``(n_basins,)``: the reference value per basin (e.g. CAMELS ``baseflow_index``).
        Only basins finite in ``reference`` and in every seed are used.

    Returns
    -------
    Estimate
        Mean over seeds of r (one seed: that seed's r); NO_ESTIMATE with fewer than
        :data:`MIN_BASINS_FOR_CORRELATION` basins.
    """
    sims, reference = _finite_columns(np.atleast_2d(np.asarray(sims, dtype=float)), np.asarray(reference, dtype=float))
    n = reference.size
    if n < MIN_BASINS_FOR_CORRELATION:
        return NO_ESTIMATE
    value = float(np.mean([pearson(sim, reference) for sim in sims]))
    low, high = percentile_interval(_seed_mean_correlation(sims, reference, bootstrap_indices(n)))
    return Estimate(value, low, high, n)


def _finite_columns(sims: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = np.all(np.isfinite(sims), axis=0)
    for other in others:
        keep &= np.isfinite(other) if other.ndim == 1 else np.all(np.isfinite(other), axis=0)
    return (sims[:, keep],) + tuple(o[keep] if o.ndim == 1 else o[:, keep] for o in others)


def seed_spread(per_seed: Sequence[float]) -> Spread:
    """The per-seed values of a statistic (e.g. each seed's median NSE), as a :class:`Spread`."""
    return Spread(tuple(float(v) for v in per_seed))


# --------------------------------------------------------------------------- paired tests


def paired_values(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def paired_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` over the finite pairs, rounded to :data:`DIFFERENCE_DECIMALS` decimals."""
    a, b = paired_values(a, b)
    return np.round(a - b, DIFFERENCE_DECIMALS)


def wilcoxon_test(a: np.ndarray, b: np.ndarray) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of ``a - b`` (rules in the module docstring).

    Parameters
    ----------
    a, b
        Paired values (one pair per basin); pairs with a NaN are dropped.

    Returns
    -------
    WilcoxonResult
        ``p`` NaN when no pair is left; 1 when every difference is zero.
    """
    differences = paired_differences(a, b)
    nonzero = differences[differences != 0]
    if not differences.size:
        return WilcoxonResult(0, 0, math.nan, math.nan, "none")
    if not nonzero.size:
        return WilcoxonResult(int(differences.size), 0, 0.0, 1.0, "none")
    tied = np.unique(np.abs(nonzero)).size < nonzero.size
    exact = nonzero.size <= EXACT_WILCOXON_MAX_N and not tied
    result = scipy.stats.wilcoxon(nonzero, zero_method="wilcox", correction=False, alternative="two-sided",
                                  method="exact" if exact else "asymptotic")
    return WilcoxonResult(int(differences.size), int(nonzero.size), float(result.statistic), float(result.pvalue),
                          "exact" if exact else "normal")


def median_difference_ci(a: np.ndarray, b: np.ndarray) -> Estimate:
    """Median of the paired differences ``a - b`` with its bootstrap CI (basins resampled jointly)."""
    a, b = paired_values(a, b)
    return median_ci(a - b)


def tally(a: np.ndarray, b: np.ndarray, higher_is_better: bool) -> Tally:
    """Count the pairs where ``a`` is better, ``b`` is better, and ties (NaN pairs dropped;
    a tie is a zero rounded difference, as in :func:`wilcoxon_test`)."""
    differences = paired_differences(a, b)
    a_better = differences > 0 if higher_is_better else differences < 0
    b_better = differences < 0 if higher_is_better else differences > 0
    return Tally(int(a_better.sum()), int(b_better.sum()), int((differences == 0).sum()))


def correlation_difference(sims_a: np.ndarray, sims_b: np.ndarray, reference: np.ndarray) -> tuple[Estimate, float]:
    """Paired bootstrap of the difference of two cross-basin correlations.

    ``r_a - r_b``, each the seed mean of Pearson r(sim, reference), on the basins finite for
    every seed of both models and in ``reference``; both correlations are recomputed on the
    same resampled basins.

    Returns
    -------
    (Estimate, float)
        The difference with its CI, and the two-sided bootstrap p-value of the module
        docstring (NaN with too few basins).
    """
    sims_a = np.atleast_2d(np.asarray(sims_a, dtype=float))
    sims_b = np.atleast_2d(np.asarray(sims_b, dtype=float))
    sims_a, sims_b, reference = _finite_columns(sims_a, sims_b, np.asarray(reference, dtype=float))
    n = reference.size
    if n < MIN_BASINS_FOR_CORRELATION:
        return NO_ESTIMATE, math.nan
    value = float(np.mean([pearson(s, reference) for s in sims_a]) - np.mean([pearson(s, reference) for s in sims_b]))
    idx = bootstrap_indices(n)
    replicates = _seed_mean_correlation(sims_a, reference, idx) - _seed_mean_correlation(sims_b, reference, idx)
    low, high = percentile_interval(replicates)
    return Estimate(value, low, high, n), bootstrap_p_value(replicates)


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is zero" from its replicates."""
    finite = _finite(replicates)
    if not finite.size:
        return math.nan
    extreme = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2.0 * (extreme + 1) / (finite.size + 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN entries stay NaN and are not counted).

    The ``k``-th smallest of ``m`` p-values is multiplied by ``m - k + 1`` (``k`` from 1),
    made non-decreasing along that order and capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]
