"""Specification of benchmark.evaluation: per-basin scores, BFI, ET NSE, metrics.json.

Predictions are built from the real reference runs of the authors' code for basin 01022500
(tests/reference/): each reference run stands for one "model". Where a test needs several
basins (the BFI correlation), real CAMELS gauge ids carry different reference runs and the
real CAMELS ``baseflow_index`` of those gauges is read from camels_hydro.txt; the point is
that values are aligned by basin label, not hydrological realism. MODIS ET has no real
copy here, so the ET tests use a *format fixture*: a MOD16A2-style composite table built in
the test (documented where it is built).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from benchmark import evaluation, metrics
from benchmark.errors import DataError

REFERENCE = Path(__file__).parent / "reference"
CAMELS_HYDRO = Path(__file__).parents[1] / "data" / "camels_us" / "camels_attributes_v2.0" / "camels_hydro.txt"
PERIOD = slice("1981-10-01", "1995-09-30")  # the period metrics_reference.csv scores
BASIN = "01022500"
# reference run -> (qsim column, Q2 column, Q_unrouted column, ET column)
RUNS = {
    "seq_hbv": ("Q_routed", "Q2", "Q_unrouted", "ET"),
    "seq_hbv_cr": ("Q_routed", "Q2", "Q_unrouted", "ET"),
    "imp_hbv": ("Q_routed", "Q2", "Q_unrouted", "ET"),
    "imp_hbv_cr": ("Q_routed", "Q2", "Q_unrouted", "ET"),
}


def _reference(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"{name}.csv", index_col="date", parse_dates=True)[PERIOD]


@pytest.fixture(scope="module")
def qobs() -> pd.Series:
    forcing = pd.read_csv(REFERENCE / "forcing_01022500.csv", index_col="date", parse_dates=True)
    return forcing["qobs"][PERIOD]


@pytest.fixture(scope="module")
def camels_bfi() -> pd.Series:
    hydro = pd.read_csv(CAMELS_HYDRO, sep=";", dtype={"gauge_id": str}).set_index("gauge_id")
    return hydro["baseflow_index"]


def _predictions(assignment: dict[str, str], qobs: pd.Series, *, with_et: bool = True) -> xr.Dataset:
    """Predictions file contents: basin label -> reference run providing its series."""
    variables: dict[str, list[np.ndarray]] = {"qsim": [], "qobs": [], "Q2": [], "Q_unrouted": [], "ET": []}
    for run in assignment.values():
        frame = _reference(run)
        q, q2, q_unrouted, et = RUNS[run]
        for key, column in (("qsim", q), ("Q2", q2), ("Q_unrouted", q_unrouted), ("ET", et)):
            variables[key].append(frame[column].to_numpy())
        variables["qobs"].append(qobs.to_numpy())
    if not with_et:
        del variables["ET"]
    coords = {"basin": list(assignment), "date": qobs.index.to_numpy()}
    data = {k: (("basin", "date"), np.stack(v)) for k, v in variables.items()}
    return xr.Dataset(data, coords=coords, attrs={"model": "+".join(sorted(set(assignment.values())))})


def _processed(basins: list[str], camels_bfi: pd.Series, et_modis: pd.DataFrame | None = None) -> xr.Dataset:
    """The part of the processed dataset evaluation reads, with the real CAMELS BFI (sorted basins)."""
    basins = sorted(basins)
    data = {"baseflow_index": (("basin",), camels_bfi.loc[basins].to_numpy())}
    coords: dict[str, object] = {"basin": basins}
    if et_modis is not None:
        coords["date"] = et_modis.index.to_numpy()
        data["et_modis"] = (("basin", "date"), np.stack([et_modis[b].to_numpy() for b in basins]))
    return xr.Dataset(data, coords=coords)


# ---------------------------------------------------------------------------------------
# streamflow metrics and BFI
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", ["seq_hbv", "imp_hbv"])
def test_per_basin_metrics_are_the_reference_metrics(run: str, qobs: pd.Series, camels_bfi: pd.Series) -> None:
    per_basin, summary = evaluation.score_predictions(
        _predictions({BASIN: run}, qobs), _processed([BASIN], camels_bfi)
    )
    reference = pd.read_csv(REFERENCE / "metrics_reference.csv").set_index("series").loc[f"{run}:Q_routed"]
    row = per_basin.loc[BASIN]
    for column, key in (("NSE", "NSE"), ("KGE", "KGE"), ("absFLV", "absFLV"), ("absFHV", "absFHV"),
                        ("lowRMSE", "lowRMSE"), ("highRMSE", "peakRMSE"), ("PBias", "PBias")):  # fmt: skip
        assert row[key] == pytest.approx(reference[column], rel=1e-4), column
    frame = _reference(run)
    assert row["BFI"] == pytest.approx(frame["Q2"].sum() / frame["Q_unrouted"].sum(), rel=1e-12)
    assert row["BFI_camels"] == pytest.approx(camels_bfi[BASIN])
    assert summary["NSE_median"] == summary["NSE_mean"] == row["NSE"]
    assert summary["n_basins"] == 1 and summary["n_basins_scored"] == 1
    assert summary["BFI_r"] is None  # a correlation needs >= 3 basins


def test_bfi_correlation_uses_camels_baseflow_index_of_each_basin(qobs: pd.Series, camels_bfi: pd.Series) -> None:
    # four real gauges, predictions deliberately not in the dataset's (sorted) order
    assignment = {"01047000": "imp_hbv_cr", "01022500": "seq_hbv", "01031500": "imp_hbv", "01030500": "seq_hbv_cr"}
    per_basin, summary = evaluation.score_predictions(
        _predictions(assignment, qobs), _processed(list(assignment), camels_bfi)
    )
    assert list(per_basin.index) == list(assignment)
    simulated = {}
    for basin, run in assignment.items():
        frame = _reference(run)
        simulated[basin] = frame["Q2"].sum() / frame["Q_unrouted"].sum()
        assert per_basin.loc[basin, "BFI"] == pytest.approx(simulated[basin], rel=1e-12)
        assert per_basin.loc[basin, "BFI_camels"] == pytest.approx(camels_bfi[basin])
    basins = list(assignment)
    expected = np.corrcoef([simulated[b] for b in basins], camels_bfi.loc[basins].to_numpy())[0, 1]
    assert summary["BFI_r"] == pytest.approx(expected, rel=1e-12)
    assert summary["BFI_median"] == pytest.approx(np.median(list(simulated.values())))
    # the four runs differ (0.61 .. 0.73), so a basin mix-up would change r
    assert len({round(v, 4) for v in simulated.values()}) == 4
    assert summary["n_basins"] == 4


def test_without_q2_bfi_is_not_available(qobs: pd.Series, camels_bfi: pd.Series) -> None:
    basins = ["01022500", "01030500", "01031500"]
    pred = _predictions(dict(zip(basins, ["seq_hbv", "imp_hbv", "imp_hbv_cr"])), qobs).drop_vars(["Q2", "Q_unrouted"])
    per_basin, summary = evaluation.score_predictions(pred, _processed(basins, camels_bfi))
    assert per_basin["BFI"].isna().all()
    assert summary["BFI_r"] is None and summary["BFI_median"] is None


def test_a_basin_without_observations_is_reported_not_fatal(qobs: pd.Series, camels_bfi: pd.Series) -> None:
    basins = ["01022500", "01030500", "01031500"]
    pred = _predictions(dict(zip(basins, ["seq_hbv", "imp_hbv", "imp_hbv_cr"])), qobs)
    pred["qobs"].loc[{"basin": "01030500"}] = np.nan
    per_basin, summary = evaluation.score_predictions(pred, _processed(basins, camels_bfi))
    assert np.isnan(per_basin.loc["01030500", "NSE"]) and per_basin.loc["01030500", "n_obs"] == 0
    assert summary["n_basins"] == 3 and summary["n_basins_scored"] == 2
    assert summary["NSE_median"] == pytest.approx(per_basin["NSE"].dropna().median())


# ---------------------------------------------------------------------------------------
# ET against MODIS 8-day composites
# ---------------------------------------------------------------------------------------
def test_modis_calendar_windows() -> None:
    dates = pd.to_datetime(["1999-01-01", "1999-01-08", "1999-01-09", "1999-12-26", "1999-12-27", "1999-12-31",
                            "2000-12-25", "2000-12-26", "2000-12-31"])  # fmt: skip
    ids = evaluation.modis_window_ids(dates)
    assert ids.tolist() == [199900, 199900, 199901, 199944, 199945, 199945, 200044, 200045, 200045]
    assert evaluation.modis_window_lengths(ids).tolist() == [8, 8, 8, 8, 5, 5, 8, 6, 6]


def test_et_window_nse_on_a_hand_computed_case() -> None:
    # windows: 0 (2 days), 1 (3 days), 2 (3 days, only 2 present -> skipped), 3 (NaN obs -> skipped)
    ids = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, -1])
    lengths = np.array([2, 2, 3, 3, 3, 3, 3, 2, 2, 0])
    obs = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 5.0, 5.0, 1.0, np.nan, 9.0])
    sim = np.array([1.5, 1.5, 1.0, 2.0, 2.0, 0.0, 0.0, 7.0, 7.0, 0.0])
    # totals: obs (2, 6), sim (3, 5): NSE = 1 - (1 + 1) / (4 + 4) = 0.75
    value, n_windows = evaluation.et_window_nse(sim, obs, ids, lengths)
    assert n_windows == 2
    assert value == pytest.approx(0.75)
    sim[2] = np.nan  # a model NaN inside a scored window is not silently dropped
    assert np.isnan(evaluation.et_window_nse(sim, obs, ids, lengths)[0])
    assert evaluation.et_window_nse(sim, np.full(10, np.nan), ids, lengths)[1] == 0


def _modis_format_fixture(source: pd.Series, missing_every: int = 9) -> pd.DataFrame:
    """FORMAT FIXTURE, not MODIS data: a MOD16A2-style table of composites.

    One row per 8-day composite, dated by its first day (day of year 1, 9, ..., 361; the
    last of a year 5/6 days), holding the composite total in kg/m2 (= mm). The totals are
    sums of ``source`` (another reference run's ET) over the composite; every
    ``missing_every``-th composite is missing, as QC-dropped composites are.
    """
    rows = []
    for year in range(source.index[0].year - 1, source.index[-1].year + 2):
        for k, doy in enumerate(range(1, 366, 8)):
            start = pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=doy - 1)
            end = min(start + pd.Timedelta(days=7), pd.Timestamp(year=year, month=12, day=31))
            total = source[start:end].sum() if start >= source.index[0] and end <= source.index[-1] else np.nan
            if len(rows) % missing_every == 0:
                total = np.nan
            rows.append({"start": start, "end": end, "n_days": (end - start).days + 1, "et_mm": total})
    return pd.DataFrame(rows)


def _spread_to_days(table: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.Series:
    """``et_modis`` as the processed dataset stores it: mm/day on each day of its composite."""
    daily = pd.Series(np.nan, index=dates)
    for row in table.itertuples():
        daily[row.start : row.end] = row.et_mm / row.n_days
    return daily


@pytest.fixture(scope="module")
def et_case(qobs: pd.Series) -> dict[str, object]:
    observed_source = _reference("seq_hbv")["ET"]
    table = _modis_format_fixture(observed_source)
    # the processed record is longer than the test period, as in the real dataset
    record = pd.date_range("1980-10-01", "1995-12-31", freq="D")
    et_modis = _spread_to_days(table, record)
    simulated = _reference("imp_hbv")["ET"]
    # expected value, computed straight from the composite table
    inside = table[(table.start >= qobs.index[0]) & (table.end <= qobs.index[-1]) & table.et_mm.notna()]
    sim_totals = np.array([simulated[r.start : r.end].sum() for r in inside.itertuples()])
    obs_totals = inside.et_mm.to_numpy()
    expected = 1 - np.sum((sim_totals - obs_totals) ** 2) / np.sum((obs_totals - obs_totals.mean()) ** 2)
    return {"et_modis": et_modis, "expected": expected, "n_windows": len(inside), "table": table}


def test_et_nse_against_a_modis_format_fixture(et_case: dict, qobs: pd.Series, camels_bfi: pd.Series) -> None:
    et_modis = pd.DataFrame({BASIN: et_case["et_modis"]})
    per_basin, summary = evaluation.score_predictions(
        _predictions({BASIN: "imp_hbv"}, qobs), _processed([BASIN], camels_bfi, et_modis)
    )
    assert per_basin.loc[BASIN, "ET_windows"] == et_case["n_windows"]
    assert per_basin.loc[BASIN, "ET_NSE"] == pytest.approx(et_case["expected"], rel=1e-10)
    assert 0 < et_case["expected"] < 1  # two different models: a non-trivial score
    assert summary["ET_NSE_median"] == pytest.approx(et_case["expected"], rel=1e-10)
    assert summary["n_basins_ET"] == 1
    # the composites cut by the test period's ends are not scored
    table = et_case["table"]
    cut = table[(table.start < qobs.index[0]) & (table.end >= qobs.index[0])]
    assert len(cut) == 1 and cut.iloc[0].start == pd.Timestamp("1981-09-30")


def test_explicit_et_window_ids_are_used_when_present(et_case: dict, qobs: pd.Series, camels_bfi: pd.Series) -> None:
    et_modis = pd.DataFrame({BASIN: et_case["et_modis"]})
    dataset = _processed([BASIN], camels_bfi, et_modis)
    window = np.full(dataset.sizes["date"], -1, dtype=np.int64)
    dates = pd.DatetimeIndex(dataset["date"].values)
    for number, row in enumerate(et_case["table"].itertuples()):
        window[(dates >= row.start) & (dates <= row.end)] = 1000 + number  # any integer labels
    dataset["et_window"] = (("basin", "date"), window[None, :])
    per_basin, _ = evaluation.score_predictions(_predictions({BASIN: "imp_hbv"}, qobs), dataset)
    assert per_basin.loc[BASIN, "ET_NSE"] == pytest.approx(et_case["expected"], rel=1e-10)
    assert per_basin.loc[BASIN, "ET_windows"] == et_case["n_windows"]


def test_et_is_not_available_without_modis_or_simulated_et(
    qobs: pd.Series, camels_bfi: pd.Series, tmp_path: Path
) -> None:
    per_basin, summary = evaluation.score_predictions(
        _predictions({BASIN: "imp_hbv"}, qobs), _processed([BASIN], camels_bfi)
    )
    assert np.isnan(per_basin.loc[BASIN, "ET_NSE"])
    assert summary["ET_NSE_median"] is None and summary["n_basins_ET"] == 0
    paths = evaluation.write_metrics(tmp_path, per_basin, summary)
    assert json.loads(paths["metrics"].read_text())["ET_NSE_median"] is None
    csv_row = paths["per_basin"].read_text().splitlines()[1]
    assert ",n/a," in csv_row
    no_sim_et = _predictions({BASIN: "imp_hbv"}, qobs, with_et=False)
    et_modis = pd.DataFrame({BASIN: pd.Series(1.0, index=qobs.index)})
    per_basin, _ = evaluation.score_predictions(no_sim_et, _processed([BASIN], camels_bfi, et_modis))
    assert np.isnan(per_basin.loc[BASIN, "ET_NSE"])


# ---------------------------------------------------------------------------------------
# outputs and errors
# ---------------------------------------------------------------------------------------
def test_write_metrics_is_flat_json_and_a_csv_that_reads_back(
    qobs: pd.Series, camels_bfi: pd.Series, tmp_path: Path
) -> None:
    assignment = {"01022500": "seq_hbv", "01030500": "imp_hbv", "01031500": "imp_hbv_cr"}
    per_basin, summary = evaluation.score_predictions(
        _predictions(assignment, qobs), _processed(list(assignment), camels_bfi)
    )
    out = tmp_path / "eval" / "model"
    paths = evaluation.write_metrics(out, per_basin, summary)
    written = json.loads(paths["metrics"].read_text())
    assert set(written) == set(summary)
    assert all(isinstance(v, (int, float, type(None))) for k, v in written.items() if k != "failed_basins")
    assert written["n_basins_failed"] == 0 and written["failed_basins"] == ""
    assert written["NSE_median"] == pytest.approx(summary["NSE_median"])
    for name in metrics.METRIC_NAMES:
        if name != "n_obs":
            assert f"{name}_median" in written and f"{name}_mean" in written
    back = pd.read_csv(paths["per_basin"], dtype={"basin": str}).set_index("basin")
    assert list(back.index) == list(assignment)
    pd.testing.assert_frame_equal(back, per_basin, check_exact=False, rtol=1e-12, check_dtype=False)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_basin_metrics.csv"]


def test_failed_basins_are_marked_counted_and_left_out_of_the_medians(qobs: pd.Series, camels_bfi: pd.Series) -> None:
    """A basin the caller reports failed, and one whose simulated flow is NaN on a scored day,
    get a status with the reason and empty metrics; the medians come from the others only."""
    assignment = {"01022500": "seq_hbv", "01030500": "imp_hbv", "01031500": "imp_hbv_cr"}
    pred = _predictions(assignment, qobs)
    dataset = _processed(list(assignment), camels_bfi)
    reference, _ = evaluation.score_predictions(pred, dataset)
    qsim = pred["qsim"].values.copy()
    qsim[list(pred["basin"].values).index("01030500"), 100] = np.nan
    broken = pred.assign(qsim=(pred["qsim"].dims, qsim))

    per_basin, summary = evaluation.score_predictions(broken, dataset, failed={"01031500": "solver diverged"})

    assert per_basin.loc["01022500", "status"] == "ok"
    assert per_basin.loc["01031500", "status"] == "failed: solver diverged"
    assert per_basin.loc["01030500", "status"].startswith("failed: simulated flow is not finite on ")
    for basin in ("01030500", "01031500"):
        assert per_basin.loc[basin, list(metrics.METRIC_NAMES)].isna().all(), basin
    assert summary["n_basins_failed"] == 2 and summary["failed_basins"] == "01030500 01031500"
    assert summary["NSE_median"] == pytest.approx(reference.loc["01022500", "NSE"])
    assert summary["n_basins"] == 3 and summary["n_basins_scored"] == 1


def test_write_metrics_leaves_previous_files_intact_on_bad_summary(tmp_path: Path) -> None:
    frame = pd.DataFrame({"NSE": [0.5]}, index=pd.Index(["01022500"], name="basin"))
    evaluation.write_metrics(tmp_path, frame, {"NSE_median": 0.5})
    with pytest.raises(DataError, match="scalars"):
        evaluation.write_metrics(tmp_path, frame, {"NSE_median": [0.1, 0.2]})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"NSE_median": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "per_basin_metrics.csv"]


def test_malformed_inputs_raise_data_errors(qobs: pd.Series, camels_bfi: pd.Series, tmp_path: Path) -> None:
    pred = _predictions({BASIN: "imp_hbv"}, qobs)
    dataset = _processed([BASIN], camels_bfi)
    with pytest.raises(DataError, match="'qsim'"):
        evaluation.score_predictions(pred.drop_vars("qsim"), dataset)
    with pytest.raises(DataError, match="Q_unrouted"):
        evaluation.score_predictions(pred.drop_vars("Q_unrouted"), dataset)
    with pytest.raises(DataError, match="01022500"):
        evaluation.score_predictions(pred, _processed(["01030500"], camels_bfi))
    with pytest.raises(DataError, match="baseflow_index"):
        evaluation.score_predictions(pred, dataset.drop_vars("baseflow_index"))
    with pytest.raises(DataError, match="does not exist"):
        evaluation.load_predictions(tmp_path / "predictions.nc")


def test_load_predictions_round_trips_a_netcdf_file(qobs: pd.Series, camels_bfi: pd.Series, tmp_path: Path) -> None:
    pred = _predictions({BASIN: "seq_hbv"}, qobs)
    path = tmp_path / "predictions.nc"
    pred.to_netcdf(path)
    loaded = evaluation.load_predictions(path)
    a, _ = evaluation.score_predictions(pred, _processed([BASIN], camels_bfi))
    b, _ = evaluation.score_predictions(loaded, _processed([BASIN], camels_bfi))
    pd.testing.assert_frame_equal(a, b)
    (tmp_path / "broken.nc").write_text("not netCDF")
    with pytest.raises(DataError, match="broken.nc"):
        evaluation.load_predictions(tmp_path / "broken.nc")


def test_et_modis_as_the_data_layer_writes_it_scores_the_same(
    et_case: dict, qobs: pd.Series, camels_bfi: pd.Series, tmp_path: Path
) -> None:
    """The MODIS-format fixture written as a MOD16A2 basin file, read by benchmark.data.modis."""
    modis = pytest.importorskip("benchmark.data.modis")
    table = et_case["table"]
    lines = [",".join(modis.MODIS_HEADER)]
    for row in table.itertuples():
        et = "3276.7" if np.isnan(row.et_mm) else f"{row.et_mm:.10f}"  # fill code where missing
        lines.append(f"{row.start.year},{row.start.month},{row.start.day},0,{et},0,0,0,0")
    path = tmp_path / f"{BASIN}{modis.MODIS_SUFFIX}"
    path.write_text("\n".join(lines) + "\n")
    daily = modis.daily_et(modis.read_modis_et(path))
    record = pd.date_range("1980-10-01", "1995-12-31", freq="D")
    et_modis = pd.DataFrame({BASIN: daily.reindex(record)})
    per_basin, _ = evaluation.score_predictions(
        _predictions({BASIN: "imp_hbv"}, qobs), _processed([BASIN], camels_bfi, et_modis)
    )
    assert per_basin.loc[BASIN, "ET_windows"] == et_case["n_windows"]
    assert per_basin.loc[BASIN, "ET_NSE"] == pytest.approx(et_case["expected"], rel=1e-8)


def test_two_real_basins_with_different_models(qobs: pd.Series, camels_bfi: pd.Series) -> None:
    """01022500: the authors' implicit HBV; 01031500: the CAMELS SAC-SMA run, which has no
    flow components, so its BFI is n/a while the other basin's is scored."""
    sacsma_file = (
        CAMELS_HYDRO.parents[1] / "model_output" / "flow_timeseries" / "daymet" / "01" / "01031500_05_model_output.txt"
    )
    frame = pd.read_csv(sacsma_file, sep=r"\s+")
    frame.index = pd.DatetimeIndex(pd.to_datetime({"year": frame.YR, "month": frame.MNTH, "day": frame.DY}))
    sacsma = frame[PERIOD]
    pred = _predictions({BASIN: "imp_hbv", "01031500": "imp_hbv"}, qobs)
    other = {"basin": "01031500"}
    pred["qsim"].loc[other] = sacsma["MOD_RUN"].to_numpy()
    pred["qobs"].loc[other] = sacsma["OBS_RUN"].to_numpy()
    pred["ET"].loc[other] = sacsma["ET"].to_numpy()
    pred["Q2"].loc[other] = np.nan
    pred["Q_unrouted"].loc[other] = np.nan
    per_basin, summary = evaluation.score_predictions(pred, _processed([BASIN, "01031500"], camels_bfi))
    expected = metrics.basin_metrics(sacsma["MOD_RUN"].to_numpy(), sacsma["OBS_RUN"].to_numpy())
    for key, value in expected.items():
        np.testing.assert_equal(per_basin.loc["01031500", key], value, err_msg=key)
    assert per_basin.loc["01031500", "NSE"] > per_basin.loc[BASIN, "NSE"]  # calibrated vs mid-range parameters
    assert np.isnan(per_basin.loc["01031500", "BFI"]) and np.isfinite(per_basin.loc[BASIN, "BFI"])
    assert summary["NSE_median"] == pytest.approx(per_basin["NSE"].mean())  # median of two = mean
    assert summary["BFI_median"] == per_basin.loc[BASIN, "BFI"]
