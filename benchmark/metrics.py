"""Streamflow metrics of the benchmark (pure numpy), as docs/metrics.md documents them.

Every metric takes two 1-D arrays, ``sim`` and ``obs`` (mm/day, same length, same days) and
returns a Python ``float``. Conventions shared by all of them:

* **Missing observations** (NaN or inf in ``obs``) are dropped pairwise: the day is removed
  from both series before anything else is computed.
* **Non-finite simulations** on a day with a valid observation make the metric NaN. A model
  that produced NaN is not scored on the days where it happened to be finite (neuralhydrology
  instead drops those days silently).
* **Undefined cases give NaN, never an exception**: fewer than :data:`MIN_OBS` valid pairs,
  zero variance or zero mean of the observations where a formula divides by them, an empty
  flow-duration segment.

In the formulas, ``s`` and ``o`` are the simulated and observed values of the ``n`` valid
days, ``mean`` and ``std`` the sample mean and the *population* standard deviation (ddof 0),
``r`` Pearson's correlation of ``s`` and ``o``.

Flow-duration segments (the authors' convention, reproduced exactly): ``S`` and ``O`` are
``s`` and ``o`` each sorted ascending on its own; with ``i_low = round(0.3 n)`` and
``i_high = round(0.98 n)``, using Python's ``round`` (ties to even: n = 5 gives i_low 2,
n = 15 gives 4, n = 25 gives i_high 24), the low segment is ``S[:i_low]``, ``O[:i_low]``,
the middle one ``[i_low:i_high]`` and the high one ``[i_high:]``. All of it is in linear
flow space.

Differences from ``neuralhydrology.evaluation.metrics`` (v1.13), checked in
``tests/test_metrics.py``:

* ``nse``, ``kge``, ``pearson_r``, ``rmse``: the same definitions (neuralhydrology's
  xarray ``std`` is also the population std) -- identical numbers on the same valid days.
* ``fhv``: neuralhydrology takes the top ``round(0.02 n)`` values of the descending flow
  duration curve (numpy rounding), this module the ``n - round(0.98 n)`` values from
  ``round(0.98 n)`` on. Same number whenever both segments have the same length (e.g. for
  n = 5478); they can differ by one value otherwise.
* ``flv``: neuralhydrology's ``fdc_flv`` is Yilmaz et al.'s (2008) FLV in *log* space,
  relative to the minimum flow -- a different metric, not offered here. This module's FLV is
  the paper authors' linear-space low-flow bias.
* ``peak_timing``: neuralhydrology selects peaks with ``scipy.signal.find_peaks``
  (prominence >= std of obs); this module uses the simpler rule documented in
  :func:`peak_timing`, so the two are not interchangeable.

Against the paper authors' metric code and the dMG library (tests/reference/
metrics_reference.csv, reproduced to 6 significant digits): every metric here equals the
authors'. dMG's ``flv_abs``/``fhv_abs`` are ``|FLV|``/``|FHV|`` of the *signed* bias, not
the sum of absolute errors used here (docs/metrics.md); they agree only when the sorted
simulation stays on one side of the sorted observations within the segment.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmark.errors import DataError

MIN_OBS = 2
"""Fewest valid (sim, obs) pairs for which a metric is computed; fewer gives NaN."""

LOW_FRACTION = 0.3
"""The low-flow segment is the lowest ``round(0.3 n)`` sorted values (docs/metrics.md#flow-duration-segments)."""

HIGH_FRACTION = 0.98
"""The high-flow segment starts at sorted index ``round(0.98 n)`` (docs/metrics.md#flow-duration-segments)."""

FLV_EPSILON = 1e-4
"""mm/day added in the FLV denominators, as the authors do (avoids 0/0 for dry basins)."""

NAN = float("nan")


# ---------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------
def valid_pairs(sim: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The (sim, obs) pairs of the days with a valid observation, as float64.

    Parameters
    ----------
    sim, obs : array_like
        1-D series of the same length (mm/day).

    Returns
    -------
    tuple of np.ndarray or None
        ``(s, o)`` without the days where ``obs`` is NaN/inf; ``None`` when fewer than
        :data:`MIN_OBS` such days remain or when ``sim`` is not finite on one of them.

    Raises
    ------
    DataError
        If the inputs are not 1-D or differ in length.
    """
    s = np.asarray(sim, dtype=np.float64)
    o = np.asarray(obs, dtype=np.float64)
    if s.ndim != 1 or o.ndim != 1 or s.shape != o.shape:
        raise DataError(
            f"metrics need two 1-D series of equal length, got sim shape {s.shape} and obs shape {o.shape}"
        )
    keep = np.isfinite(o)
    s, o = s[keep], o[keep]
    if o.size < MIN_OBS or not np.all(np.isfinite(s)):
        return None
    return s, o


def segment_bounds(n: int) -> tuple[int, int]:
    """Indices ``(round(0.3 n), round(0.98 n))`` splitting a sorted series of length ``n``.

    Python's ``round`` (ties to even) is used, as in the authors' code.
    """
    return round(LOW_FRACTION * n), round(HIGH_FRACTION * n)


def _with_pairs(func: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
    """Turn a metric on clean float64 pairs into the public NaN-aware metric."""

    def metric(sim: np.ndarray, obs: np.ndarray) -> float:
        pairs = valid_pairs(sim, obs)
        return NAN if pairs is None else func(*pairs)

    metric.__name__ = func.__name__.lstrip("_")
    metric.__qualname__ = metric.__name__
    metric.__doc__ = func.__doc__
    return metric


def _ratio(num: float, den: float) -> float:
    """``num / den`` as a float, NaN when ``den`` is zero or either is not finite."""
    if den == 0 or not np.isfinite(den) or not np.isfinite(num):
        return NAN
    return float(num / den)


def _rmse_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else NAN


def _sorted_segments(s: np.ndarray, o: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Low, middle and high flow-duration segments of the separately sorted series."""
    s_sorted, o_sorted = np.sort(s), np.sort(o)
    i_low, i_high = segment_bounds(o.size)
    return {
        "low": (s_sorted[:i_low], o_sorted[:i_low]),
        "mid": (s_sorted[i_low:i_high], o_sorted[i_low:i_high]),
        "high": (s_sorted[i_high:], o_sorted[i_high:]),
    }


# ---------------------------------------------------------------------------------------
# metrics on clean pairs (wrapped into the public functions below)
# ---------------------------------------------------------------------------------------
def _nse(s: np.ndarray, o: np.ndarray) -> float:
    """Nash-Sutcliffe efficiency: ``NSE = 1 - sum((s - o)^2) / sum((o - mean(o))^2)``.

    NaN when the observations are constant. Range (-inf, 1], 1 is perfect.
    """
    denominator = float(np.sum((o - o.mean()) ** 2))
    if denominator == 0:
        return NAN
    return 1.0 - float(np.sum((s - o) ** 2)) / denominator


def _pearson_r(s: np.ndarray, o: np.ndarray) -> float:
    """Pearson correlation ``r = sum((s - mean s)(o - mean o)) / sqrt(sum((s - mean s)^2) sum((o - mean o)^2))``.

    NaN when either series is constant.
    """
    ds, do = s - s.mean(), o - o.mean()
    den = float(np.sqrt(np.sum(ds**2) * np.sum(do**2)))
    return _ratio(float(np.sum(ds * do)), den)


def _kge_components(s: np.ndarray, o: np.ndarray) -> dict[str, float]:
    """KGE components (Gupta et al. 2009): ``r``, ``alpha = std(s) / std(o)``, ``beta = mean(s) / mean(o)``.

    Population standard deviations. A component is NaN where its denominator is zero.
    """
    return {
        "r": _pearson_r(s, o),
        "alpha": _ratio(float(np.std(s)), float(np.std(o))),
        "beta": _ratio(float(s.mean()), float(o.mean())),
    }


def _kge(s: np.ndarray, o: np.ndarray) -> float:
    """Kling-Gupta efficiency (Gupta et al. 2009):
    ``KGE = 1 - sqrt((r - 1)^2 + (alpha - 1)^2 + (beta - 1)^2)``,
    ``alpha = std(s) / std(o)`` (population std), ``beta = mean(s) / mean(o)``.

    NaN when any component is undefined (constant series, zero mean obs).
    """
    c = _kge_components(s, o)
    return 1.0 - float(np.sqrt((c["r"] - 1) ** 2 + (c["alpha"] - 1) ** 2 + (c["beta"] - 1) ** 2))


def _kge12(s: np.ndarray, o: np.ndarray) -> float:
    """Modified KGE (Kling et al. 2012):
    ``KGE' = 1 - sqrt((r - 1)^2 + (gamma - 1)^2 + (beta - 1)^2)``,
    ``gamma = (std(s) / mean(s)) / (std(o) / mean(o))`` (ratio of coefficients of variation),
    ``beta = mean(s) / mean(o)``.
    """
    r = _pearson_r(s, o)
    beta = _ratio(float(s.mean()), float(o.mean()))
    gamma = _ratio(_ratio(float(np.std(s)), float(s.mean())), _ratio(float(np.std(o)), float(o.mean())))
    return 1.0 - float(np.sqrt((r - 1) ** 2 + (gamma - 1) ** 2 + (beta - 1) ** 2))


def _flv(s: np.ndarray, o: np.ndarray) -> float:
    """Low-flow volume bias, linear space (the authors' FLV), percent:
    ``FLV = 100 * sum(S_low - O_low) / (sum(O_low) + 0.0001)`` on the bottom ``round(0.3 n)``
    values of the separately sorted series. NaN if the segment is empty.
    """
    s_low, o_low = _sorted_segments(s, o)["low"]
    if o_low.size == 0:
        return NAN
    return 100.0 * float(np.sum(s_low - o_low)) / (float(np.sum(o_low)) + FLV_EPSILON)


def _abs_flv(s: np.ndarray, o: np.ndarray) -> float:
    """Absolute low-flow volume error, percent:
    ``|FLV| = 100 * sum(|S_low - O_low|) / sum(O_low + 0.0001)`` (bottom ``round(0.3 n)``
    sorted values; note the 0.0001 is added per value here, as the authors do).
    """
    s_low, o_low = _sorted_segments(s, o)["low"]
    if o_low.size == 0:
        return NAN
    return 100.0 * float(np.sum(np.abs(s_low - o_low))) / float(np.sum(o_low + FLV_EPSILON))


def _fhv(s: np.ndarray, o: np.ndarray) -> float:
    """High-flow (top 2 %) volume bias, percent:
    ``FHV = 100 * sum(S_high - O_high) / sum(O_high)`` on the sorted values from index
    ``round(0.98 n)`` on. NaN if the segment is empty or its observed sum is zero.
    """
    s_high, o_high = _sorted_segments(s, o)["high"]
    return 100.0 * _ratio(float(np.sum(s_high - o_high)), float(np.sum(o_high)))


def _abs_fhv(s: np.ndarray, o: np.ndarray) -> float:
    """Absolute high-flow (top 2 %) volume error, percent:
    ``|FHV| = 100 * sum(|S_high - O_high|) / sum(O_high)``.
    """
    s_high, o_high = _sorted_segments(s, o)["high"]
    return 100.0 * _ratio(float(np.sum(np.abs(s_high - o_high))), float(np.sum(o_high)))


def _low_flow_rmse(s: np.ndarray, o: np.ndarray) -> float:
    """Low-flow RMSE (mm/day) on the sorted bottom segment: ``sqrt(mean((S_low - O_low)^2))``."""
    return _rmse_of(*_sorted_segments(s, o)["low"])


def _mid_flow_rmse(s: np.ndarray, o: np.ndarray) -> float:
    """Mid-flow RMSE (mm/day) on the sorted segment ``[round(0.3 n):round(0.98 n)]``."""
    return _rmse_of(*_sorted_segments(s, o)["mid"])


def _peak_flow_rmse(s: np.ndarray, o: np.ndarray) -> float:
    """Peak-flow RMSE (mm/day) on the sorted top segment: ``sqrt(mean((S_high - O_high)^2))``
    (the authors' ``highRMSE``)."""
    return _rmse_of(*_sorted_segments(s, o)["high"])


def _rmse(s: np.ndarray, o: np.ndarray) -> float:
    """Root mean squared error (mm/day): ``RMSE = sqrt(mean((s - o)^2))`` over the valid days."""
    return _rmse_of(s, o)


def _bias(s: np.ndarray, o: np.ndarray) -> float:
    """Mean error (mm/day): ``bias = mean(s - o)``; positive means the model overestimates."""
    return float(np.mean(s - o))


def _pbias(s: np.ndarray, o: np.ndarray) -> float:
    """Percent bias: ``PBias = 100 * sum(s - o) / sum(o)``; NaN when ``sum(o)`` is zero."""
    return 100.0 * _ratio(float(np.sum(s - o)), float(np.sum(o)))


nse = _with_pairs(_nse)
pearson_r = _with_pairs(_pearson_r)
kge = _with_pairs(_kge)
kge12 = _with_pairs(_kge12)
flv = _with_pairs(_flv)
abs_flv = _with_pairs(_abs_flv)
fhv = _with_pairs(_fhv)
abs_fhv = _with_pairs(_abs_fhv)
low_flow_rmse = _with_pairs(_low_flow_rmse)
mid_flow_rmse = _with_pairs(_mid_flow_rmse)
peak_flow_rmse = _with_pairs(_peak_flow_rmse)
rmse = _with_pairs(_rmse)
bias = _with_pairs(_bias)
pbias = _with_pairs(_pbias)


def kge_components(sim: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """KGE components ``{"r", "alpha", "beta"}`` (see :func:`kge`); all NaN without enough data.

    ``r`` is Pearson's correlation, ``alpha = std(s) / std(o)`` (population std),
    ``beta = mean(s) / mean(o)``.
    """
    pairs = valid_pairs(sim, obs)
    if pairs is None:
        return {"r": NAN, "alpha": NAN, "beta": NAN}
    return _kge_components(*pairs)


# ---------------------------------------------------------------------------------------
# peak timing (needs the time axis, so it works on the full series)
# ---------------------------------------------------------------------------------------
PEAK_WINDOW_DAYS = 3
"""Half-width of the window searched for the simulated peak around an observed one."""

PEAK_MIN_DISTANCE_DAYS = 100
"""Observed peaks closer than this to a higher selected peak are ignored."""


def _observed_peaks(o: np.ndarray, window: int, min_distance: int) -> list[int]:
    """Indices of the observed peaks used by :func:`peak_timing`, highest first."""
    valid_o = o[np.isfinite(o)]
    threshold = valid_o.mean() + valid_o.std()
    inner = np.arange(window, o.size - window)
    with np.errstate(invalid="ignore"):
        is_peak = (o[inner] > o[inner - 1]) & (o[inner] >= o[inner + 1]) & (o[inner] >= threshold)
    candidates = inner[is_peak]
    candidates = candidates[np.argsort(-o[candidates], kind="stable")]
    selected: list[int] = []
    for idx in candidates:
        if all(abs(int(idx) - j) >= min_distance for j in selected):
            selected.append(int(idx))
    return selected


def peak_timing(
    sim: np.ndarray,
    obs: np.ndarray,
    *,
    window: int = PEAK_WINDOW_DAYS,
    min_distance: int = PEAK_MIN_DISTANCE_DAYS,
) -> float:
    """Mean absolute peak-timing error in days.

    Observed peaks are days ``t`` with ``o[t-1] < o[t] >= o[t+1]`` and
    ``o[t] >= mean(o) + std(o)``, taken highest first and skipping any closer than
    ``min_distance`` days to one already taken. For each peak whose window
    ``[t - window, t + window]`` lies inside the series with valid obs and finite sim, the
    simulated peak is ``argmax(s)`` inside that window and the error ``|argmax - t|`` days.
    Result: the mean error, NaN when no peak qualifies (or too few valid observations).

    Parameters
    ----------
    sim, obs : array_like
        Daily series (mm/day) on the same consecutive days; NaN obs allowed.
    window : int
        Half-width (days) of the search window.
    min_distance : int
        Minimum spacing (days) between observed peaks.
    """
    s = np.asarray(sim, dtype=np.float64)
    o = np.asarray(obs, dtype=np.float64)
    if valid_pairs(s, o) is None:
        return NAN
    errors = []
    for t in _observed_peaks(o, window, min_distance):
        s_win, o_win = s[t - window : t + window + 1], o[t - window : t + window + 1]
        if not (np.all(np.isfinite(s_win)) and np.all(np.isfinite(o_win))):
            continue
        errors.append(abs(int(np.argmax(s_win)) - window))
    return float(np.mean(errors)) if errors else NAN


# ---------------------------------------------------------------------------------------
# the full streamflow set of one basin
# ---------------------------------------------------------------------------------------
_BASIN_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "NSE": _nse,
    "KGE": _kge,
    "KGE12": _kge12,
    "FLV": _flv,
    "absFLV": _abs_flv,
    "FHV": _fhv,
    "absFHV": _abs_fhv,
    "lowRMSE": _low_flow_rmse,
    "midRMSE": _mid_flow_rmse,
    "peakRMSE": _peak_flow_rmse,
    "RMSE": _rmse,
    "bias": _bias,
    "PBias": _pbias,
    "r": _pearson_r,
}

METRIC_NAMES: tuple[str, ...] = (
    "NSE", "KGE", "KGE_r", "KGE_alpha", "KGE_beta", "KGE12", "FLV", "absFLV", "FHV", "absFHV",
    "lowRMSE", "midRMSE", "peakRMSE", "RMSE", "bias", "PBias", "r", "peak_timing", "n_obs",
)  # fmt: skip
"""Keys of :func:`basin_metrics`, in order."""


def basin_metrics(sim: np.ndarray, obs: np.ndarray) -> dict[str, float]:
    """Every streamflow metric of one basin.

    Parameters
    ----------
    sim, obs : array_like
        Daily simulated and observed flow (mm/day) on the same consecutive days; NaN obs are
        dropped pairwise.

    Returns
    -------
    dict
        Keys :data:`METRIC_NAMES`: ``NSE``, ``KGE`` with ``KGE_r``, ``KGE_alpha``,
        ``KGE_beta``, ``KGE12``, ``FLV``, ``absFLV``, ``FHV``, ``absFHV`` (percent),
        ``lowRMSE``, ``midRMSE``, ``peakRMSE``, ``RMSE``, ``bias`` (mm/day), ``PBias`` (%),
        ``r``, ``peak_timing`` (days) and ``n_obs`` (number of valid observations). Values
        are floats, NaN where undefined (see the module docstring).
    """
    o_all = np.asarray(obs, dtype=np.float64)
    pairs = valid_pairs(sim, o_all)
    n_obs = float(np.count_nonzero(np.isfinite(o_all)))
    if pairs is None:
        values = {name: NAN for name in METRIC_NAMES}
        values["n_obs"] = n_obs
        return values
    s, o = pairs
    values = {name: func(s, o) for name, func in _BASIN_METRICS.items()}
    components = _kge_components(s, o)
    values.update(KGE_r=components["r"], KGE_alpha=components["alpha"], KGE_beta=components["beta"])
    values["peak_timing"] = peak_timing(sim, o_all)
    values["n_obs"] = n_obs
    return {name: float(values[name]) for name in METRIC_NAMES}
