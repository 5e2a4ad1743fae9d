"""Specification of benchmark.metrics (docs/metrics.md).

Real data: the reference runs of the authors' code for basin 01022500 (tests/reference/) and
their metrics computed by the authors' and the dMG library's metric code
(metrics_reference.csv). Those reference metrics score 1981-10-01..1995-09-30: the first
year of the 1980-10-01 run is left out as warm-up (the README does not say so; it is the
only window that reproduces the numbers, to 6 significant digits).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from benchmark import metrics
from benchmark.errors import DataError

REFERENCE = Path(__file__).parent / "reference"
SACSMA_FILE = (
    Path(__file__).parents[1] / "data" / "camels_us" / "model_output" / "flow_timeseries" / "daymet" / "01"
    / "01031500_05_model_output.txt"
)
SACSMA = "camels_sacsma_01031500"  # a second real basin: CAMELS SAC-SMA run (MOD_RUN) vs OBS_RUN
SCORED_FROM = "1981-10-01"

# metrics_reference.csv column -> basin_metrics key (authors' names and the dMG library's)
REFERENCE_COLUMNS = {
    "NSE": "NSE", "KGE": "KGE", "KGE12": "KGE12", "Corr": "r", "absFLV": "absFLV", "FLV": "FLV",
    "absFHV": "absFHV", "FHV": "FHV", "lowRMSE": "lowRMSE", "highRMSE": "peakRMSE",
    "midRMSE": "midRMSE", "PBias": "PBias", "RMSE": "RMSE",
    "dmg_nse": "NSE", "dmg_kge": "KGE", "dmg_flv": "FLV", "dmg_fhv": "FHV", "dmg_rmse_low": "lowRMSE",
    "dmg_rmse_high": "peakRMSE", "dmg_pbias": "PBias", "dmg_rmse": "RMSE",
}  # fmt: skip

# dMG's "flv_abs"/"fhv_abs" are the absolute values of the signed biases, |FLV| = |sum(S - O)|
# / ..., not the authors' (and docs/metrics.md's) sum of absolute errors; they differ whenever the
# sorted sim crosses the sorted obs inside the segment (e.g. seq_hbv: 47.913 vs 47.902).
DMG_ABSOLUTE_OF_SIGNED = {"dmg_flv_abs": "FLV", "dmg_fhv_abs": "FHV"}


def _read_series(name: str) -> pd.Series:
    """A reference series 'file:column', indexed by date."""
    file, column = name.split(":")
    frame = pd.read_csv(REFERENCE / f"{file}.csv", index_col="date", parse_dates=True)
    return frame[column]


def _sim_and_obs(series: str, qobs_01022500: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Simulated and observed flow (mm/day) of a reference series or of the CAMELS SAC-SMA run."""
    if series != SACSMA:
        return _read_series(series), qobs_01022500.copy()
    frame = pd.read_csv(SACSMA_FILE, sep=r"\s+")
    dates = pd.to_datetime({"year": frame.YR, "month": frame.MNTH, "day": frame.DY})
    frame.index = pd.DatetimeIndex(dates, name="date")
    return frame["MOD_RUN"], frame["OBS_RUN"].copy()


@pytest.fixture(scope="module")
def qobs() -> pd.Series:
    return pd.read_csv(REFERENCE / "forcing_01022500.csv", index_col="date", parse_dates=True)["qobs"]


REFERENCE_ROWS = pd.read_csv(REFERENCE / "metrics_reference.csv")


@pytest.mark.parametrize("series", REFERENCE_ROWS["series"].tolist())
def test_reproduces_every_reference_metric(series: str, qobs: pd.Series) -> None:
    sim = _read_series(series)[SCORED_FROM:]
    obs = qobs[SCORED_FROM:]
    assert sim.index.equals(obs.index)
    ours = metrics.basin_metrics(sim.to_numpy(), obs.to_numpy())
    row = REFERENCE_ROWS.set_index("series").loc[series]
    for column, key in REFERENCE_COLUMNS.items():
        assert ours[key] == pytest.approx(row[column], rel=1e-4), f"{series} {column}"
    for column, key in DMG_ABSOLUTE_OF_SIGNED.items():
        assert abs(ours[key]) == pytest.approx(row[column], rel=1e-4), f"{series} {column}"


def test_public_functions_agree_with_basin_metrics(qobs: pd.Series) -> None:
    sim = _read_series("imp_hbv:Q_routed_tight").to_numpy()
    obs = qobs.to_numpy()
    table = metrics.basin_metrics(sim, obs)
    singles = {
        "NSE": metrics.nse, "KGE": metrics.kge, "KGE12": metrics.kge12, "FLV": metrics.flv,
        "absFLV": metrics.abs_flv, "FHV": metrics.fhv, "absFHV": metrics.abs_fhv,
        "lowRMSE": metrics.low_flow_rmse, "midRMSE": metrics.mid_flow_rmse,
        "peakRMSE": metrics.peak_flow_rmse, "RMSE": metrics.rmse, "bias": metrics.bias,
        "PBias": metrics.pbias, "r": metrics.pearson_r, "peak_timing": metrics.peak_timing,
    }  # fmt: skip
    for key, func in singles.items():
        assert func(sim, obs) == table[key], key
    components = metrics.kge_components(sim, obs)
    assert (components["r"], components["alpha"], components["beta"]) == (
        table["KGE_r"], table["KGE_alpha"], table["KGE_beta"]
    )
    assert list(table) == list(metrics.METRIC_NAMES)
    assert table["n_obs"] == len(obs)


# ---------------------------------------------------------------------------------------
# neuralhydrology cross-check
# ---------------------------------------------------------------------------------------
NH_SERIES = ["seq_hbv:Q_routed", "imp_hbv:Q_routed_tight", "explicit_hbv_cr:Q_routed_euler_1d", SACSMA]


def _as_dataarray(series: pd.Series) -> xr.DataArray:
    return xr.DataArray(series.to_numpy(), coords={"date": series.index.to_numpy()}, dims=["date"])


@pytest.mark.parametrize("series", NH_SERIES)
@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "every-7th-obs-missing"])
def test_nse_kge_r_rmse_fhv_match_neuralhydrology(series: str, gaps: bool, qobs: pd.Series) -> None:
    nh = pytest.importorskip("neuralhydrology.evaluation.metrics")
    sim, obs = _sim_and_obs(series, qobs)
    if gaps:
        obs.iloc[::7] = np.nan
    s, o = sim.to_numpy(), obs.to_numpy()
    nh_sim, nh_obs = _as_dataarray(sim), _as_dataarray(obs)
    assert metrics.nse(s, o) == pytest.approx(nh.nse(nh_obs, nh_sim), rel=1e-12)
    assert metrics.kge(s, o) == pytest.approx(nh.kge(nh_obs, nh_sim), rel=1e-10)
    assert metrics.pearson_r(s, o) == pytest.approx(nh.pearsonr(nh_obs, nh_sim), rel=1e-10)
    assert metrics.rmse(s, o) == pytest.approx(nh.rmse(nh_obs, nh_sim), rel=1e-12)
    components = metrics.kge_components(s, o)
    assert components["alpha"] == pytest.approx(nh.alpha_nse(nh_obs, nh_sim), rel=1e-12)
    assert components["beta"] == pytest.approx(nh.beta_kge(nh_obs, nh_sim), rel=1e-12)
    # FHV: same definition whenever both conventions pick the same number of top flows
    n = int(np.isfinite(o).sum())
    if n - round(0.98 * n) == int(np.round(0.02 * n)):
        assert metrics.fhv(s, o) == pytest.approx(nh.fdc_fhv(nh_obs, nh_sim), rel=1e-10)


def test_flv_is_linear_not_neuralhydrologys_log_space_flv(qobs: pd.Series) -> None:
    """Documented difference: neuralhydrology's FLV (Yilmaz 2008) is a log-space metric."""
    nh = pytest.importorskip("neuralhydrology.evaluation.metrics")
    sim = _read_series("seq_hbv:Q_routed")[SCORED_FROM:]
    obs = qobs[SCORED_FROM:]
    ours = metrics.flv(sim.to_numpy(), obs.to_numpy())
    theirs = nh.fdc_flv(_as_dataarray(obs), _as_dataarray(sim))
    assert ours == pytest.approx(-47.913, rel=1e-4)
    assert abs(theirs - ours) > 10


# ---------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------
def test_nse_and_kge_on_a_hand_computed_case() -> None:
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    # sum sq. error 1 + 0 + 0 + 1 = 2; sum sq. deviation of obs 2.25+0.25+0.25+2.25 = 5
    assert metrics.nse(np.array([2.0, 2.0, 3.0, 5.0]), obs) == pytest.approx(0.6)
    assert metrics.nse(obs, obs) == 1.0
    assert metrics.nse(np.full(4, obs.mean()), obs) == pytest.approx(0.0)
    # sim = obs + 1: r = 1, alpha = 1, beta = 3.5 / 2.5 = 1.4 -> KGE = 0.6
    assert metrics.kge(obs + 1, obs) == pytest.approx(0.6)
    # sim = 2 obs: r = 1, alpha = 2, beta = 2 -> KGE = 1 - sqrt(2); KGE12: gamma = 1 -> 0
    assert metrics.kge(2 * obs, obs) == pytest.approx(1 - np.sqrt(2))
    assert metrics.kge12(2 * obs, obs) == pytest.approx(0.0)
    assert metrics.rmse(obs + 1, obs) == pytest.approx(1.0)
    assert metrics.bias(obs + 1, obs) == pytest.approx(1.0)
    assert metrics.pbias(obs + 1, obs) == pytest.approx(100 * 4 / 10)


def test_segments_use_pythons_round_half_to_even() -> None:
    assert metrics.segment_bounds(5) == (2, 5)  # 0.3 * 5 = 1.5 -> 2
    assert metrics.segment_bounds(15) == (4, 15)  # 4.5 -> 4
    assert metrics.segment_bounds(25) == (8, 24)  # 24.5 -> 24: one high value
    assert metrics.segment_bounds(75) == (22, 74)  # 22.5 -> 22, 73.5 -> 74
    assert metrics.segment_bounds(5113) == (1534, 5011)


def test_flv_uses_the_bottom_round_0_3n_sorted_values() -> None:
    obs = np.arange(1.0, 16.0)  # n = 15 -> low segment = 4 values 1, 2, 3, 4
    sim = obs + 1
    assert metrics.flv(sim, obs) == pytest.approx(100 * 4 / (10 + 1e-4))
    assert metrics.abs_flv(sim, obs) == pytest.approx(100 * 4 / (10 + 4 * 1e-4))
    assert metrics.abs_flv(obs - 1, obs) == pytest.approx(metrics.abs_flv(sim, obs))
    assert metrics.flv(obs - 1, obs) == pytest.approx(-metrics.flv(sim, obs))
    assert metrics.low_flow_rmse(sim, obs) == pytest.approx(1.0)


def test_fhv_uses_the_sorted_values_from_round_0_98n_on() -> None:
    obs = np.arange(1.0, 26.0)  # n = 25 -> high segment = the single value 25
    sim = obs + 1
    assert metrics.fhv(sim, obs) == pytest.approx(100 * 1 / 25)
    assert metrics.abs_fhv(obs - 1, obs) == pytest.approx(100 * 1 / 25)
    assert metrics.fhv(obs - 1, obs) == pytest.approx(-100 * 1 / 25)
    assert metrics.peak_flow_rmse(obs + 3, obs) == pytest.approx(3.0)


def test_flow_duration_metrics_sort_sim_and_obs_separately() -> None:
    obs = np.linspace(0.1, 10.0, 50)
    sim = obs[::-1].copy()  # same values, wrong timing
    for func in (metrics.flv, metrics.abs_flv, metrics.fhv, metrics.abs_fhv,
                 metrics.low_flow_rmse, metrics.peak_flow_rmse, metrics.mid_flow_rmse):  # fmt: skip
        assert func(sim, obs) == pytest.approx(0.0, abs=1e-12)
    assert metrics.nse(sim, obs) < 0


def test_missing_observations_are_dropped_pairwise() -> None:
    obs = np.array([1.0, np.nan, 3.0, 4.0, np.nan, 2.0])
    sim = np.array([2.0, 100.0, 3.0, 5.0, np.nan, 1.0])  # NaN sim on a NaN-obs day is fine
    keep = np.isfinite(obs)
    full = metrics.basin_metrics(sim, obs)
    clean = metrics.basin_metrics(sim[keep], obs[keep])
    for key in metrics.METRIC_NAMES:
        if key == "peak_timing":  # needs the time axis, compared separately
            continue
        np.testing.assert_equal(full[key], clean[key], err_msg=key)
    assert full["n_obs"] == 4
    assert metrics.nse(sim, obs) == pytest.approx(1 - (1 + 0 + 1 + 1) / 5)


def test_non_finite_simulation_on_an_observed_day_gives_nan() -> None:
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    sim = np.array([1.0, np.nan, 3.0, 4.0])
    values = metrics.basin_metrics(sim, obs)
    assert all(np.isnan(values[k]) for k in metrics.METRIC_NAMES if k != "n_obs")
    assert np.isnan(metrics.nse(np.array([1.0, np.inf, 3.0, 4.0]), obs))


def test_constant_observations_give_nan_not_a_crash() -> None:
    obs = np.full(40, 2.0)
    sim = np.linspace(1.0, 3.0, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = metrics.basin_metrics(sim, obs)
    for key in ("NSE", "KGE", "KGE12", "KGE_r", "KGE_alpha", "r"):
        assert np.isnan(values[key]), key
    assert values["KGE_beta"] == pytest.approx(1.0)
    assert values["RMSE"] == pytest.approx(np.sqrt(np.mean((sim - 2.0) ** 2)))
    assert np.isfinite(values["FLV"]) and np.isfinite(values["FHV"])


def test_all_zero_observations_give_nan_for_ratios() -> None:
    obs = np.zeros(30)
    sim = np.linspace(0.0, 1.0, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metrics.fhv(sim, obs))
        assert np.isnan(metrics.pbias(sim, obs))
        assert np.isnan(metrics.kge(sim, obs))
        # the authors' +0.0001 keeps FLV finite for a dry basin
        assert np.isfinite(metrics.flv(sim, obs))


@pytest.mark.parametrize("n_valid", [0, 1])
def test_too_few_observations_give_nan(n_valid: int) -> None:
    obs = np.full(10, np.nan)
    obs[:n_valid] = 1.5
    sim = np.ones(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = metrics.basin_metrics(sim, obs)
        assert np.isnan(metrics.kge_components(sim, obs)["r"])
    assert values["n_obs"] == n_valid
    assert all(np.isnan(values[k]) for k in metrics.METRIC_NAMES if k != "n_obs")


def test_mismatched_inputs_raise_a_data_error() -> None:
    with pytest.raises(DataError, match="equal length"):
        metrics.nse(np.ones(5), np.ones(6))
    with pytest.raises(DataError, match="1-D"):
        metrics.kge(np.ones((2, 3)), np.ones((2, 3)))


def test_peak_timing_finds_a_hand_made_lag() -> None:
    obs = np.full(400, 1.0)
    sim = np.full(400, 1.0)
    for day, lag in ((60, 2), (200, -1), (330, 0)):
        obs[day - 1 : day + 2] = [5.0, 10.0, 5.0]
        sim[day + lag - 1 : day + lag + 2] = [4.0, 8.0, 4.0]
    assert metrics.peak_timing(sim, obs) == pytest.approx((2 + 1 + 0) / 3)
    # a peak whose window has a missing observation is skipped
    obs[201] = np.nan
    assert metrics.peak_timing(sim, obs) == pytest.approx((2 + 0) / 2)
    # peaks closer than min_distance to a higher one are ignored
    assert metrics.peak_timing(sim, obs, min_distance=300) == pytest.approx(2.0)
    assert np.isnan(metrics.peak_timing(np.ones(400), np.ones(400)))


def test_peak_timing_of_the_routed_reference_run_is_a_few_days(qobs: pd.Series) -> None:
    unrouted = _read_series("seq_hbv:Q_unrouted").to_numpy()
    routed = _read_series("seq_hbv:Q_routed").to_numpy()
    lag_unrouted = metrics.peak_timing(unrouted, qobs.to_numpy())
    lag_routed = metrics.peak_timing(routed, qobs.to_numpy())
    assert 0 <= lag_unrouted <= metrics.PEAK_WINDOW_DAYS
    assert lag_routed > lag_unrouted  # routing (gamma UH, mean delay a*b ~ 4.7 d) delays peaks
