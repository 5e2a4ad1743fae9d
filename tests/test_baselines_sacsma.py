"""The SAC-SMA baseline: the real CAMELS model_output file of 01031500 scored with our metrics;
basins without a file are counted ("k of n basins"), never invented."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from baselines.sacsma import load_sacsma
from benchmark.config import Period
from benchmark.errors import DataError
from tests.baselines_fixtures import TINY_BASINS, tiny_data_dir, tiny_dataset, tiny_params  # noqa: F401 - fixtures

CAMELS = Path(__file__).resolve().parent.parent / "data" / "camels_us"
SAC_FILE = CAMELS / "model_output" / "flow_timeseries" / "daymet" / "01" / "01031500_05_model_output.txt"
TEST = Period(start=dt.date(1992, 10, 1), end=dt.date(1993, 9, 30))  # the tiny profile's test period


def _direct_columns(start: str, end: str) -> pd.DataFrame:
    """MOD_RUN and OBS_RUN read straight from the real file with numpy (independent of our reader)."""
    table = np.loadtxt(SAC_FILE, skiprows=1)
    dates = pd.to_datetime({"year": table[:, 0], "month": table[:, 1], "day": table[:, 2]})
    frame = pd.DataFrame({"MOD_RUN": table[:, 10], "OBS_RUN": table[:, 11]}, index=pd.DatetimeIndex(dates))
    return frame.loc[start:end]


def _direct_qobs_mm(start: str, end: str) -> pd.Series:
    """USGS flow of 01031500 in mm/day from the raw file and area_gages2 (data/README.md formula)."""
    topo = pd.read_csv(CAMELS / "camels_attributes_v2.0" / "camels_topo.txt", sep=";", dtype={"gauge_id": str})
    area_km2 = float(topo.set_index("gauge_id").loc["01031500", "area_gages2"])
    flow = pd.read_csv(CAMELS / "usgs_streamflow" / "01" / "01031500_streamflow_qc.txt", sep=r"\s+", header=None,
                       names=["gauge", "y", "m", "d", "q", "flag"], dtype={"gauge": str})
    index = pd.DatetimeIndex(pd.to_datetime({"year": flow.y, "month": flow.m, "day": flow.d}))
    q = pd.Series(flow.q.to_numpy(float), index=index).where(lambda s: s >= 0)
    return (q * 0.0283168 * 86400 / (area_km2 * 1e6) * 1e3).loc[start:end]


def _nse(sim: np.ndarray, obs: np.ndarray) -> float:
    ok = np.isfinite(obs)
    sim, obs = sim[ok], obs[ok]
    return float(1.0 - np.sum((sim - obs) ** 2) / np.sum((obs - obs.mean()) ** 2))


@pytest.fixture(scope="module")
def sacsma_run(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path, mlflow_tracking_uri: str):
    from baselines.commands import run_sacsma

    folder = tmp_path_factory.mktemp("sacsma-run")
    params = tiny_params(folder, tiny_data_dir, experiment="baselines-sacsma-test")
    summary = run_sacsma(params, mlflow_enabled=True)
    return params, Path(summary["out_dir"]), summary


def test_01031500_is_scored_from_the_real_camels_file(sacsma_run) -> None:
    _, out, _ = sacsma_run
    direct = _direct_columns("1992-10-01", "1993-09-30")
    qobs = _direct_qobs_mm("1992-10-01", "1993-09-30")
    per_basin = pd.read_csv(out / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
    vs_obs_run = pd.read_csv(out / "vs_obs_run" / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
    # leaderboard row: MOD_RUN against our observed flow
    expected = _nse(direct["MOD_RUN"].to_numpy(), qobs.reindex(direct.index).to_numpy())
    assert per_basin.loc["01031500", "NSE"] == pytest.approx(expected, abs=1e-5)
    # cross-check: MOD_RUN against the file's own OBS_RUN
    expected_own = _nse(direct["MOD_RUN"].to_numpy(), direct["OBS_RUN"].to_numpy())
    assert vs_obs_run.loc["01031500", "NSE"] == pytest.approx(expected_own, abs=1e-5)
    assert 0.3 < expected < 1.0  # a calibrated model on a humid New England basin
    pred = xr.load_dataset(out / "predictions.nc")
    np.testing.assert_allclose(pred["qsim"].sel(basin="01031500").values, direct["MOD_RUN"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(pred["qobs_camels"].sel(basin="01031500").values, direct["OBS_RUN"].to_numpy(),
                               rtol=1e-6)


def test_report_row_says_k_of_n_basins(sacsma_run) -> None:
    _, out, summary = sacsma_run
    assert summary["coverage"] == "1 of 4 basins"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_basins"] == 1 and metrics["n_basins_selected"] == 4 and metrics["n_basins_with_output"] == 1
    pred = xr.load_dataset(out / "predictions.nc")
    assert list(pred["basin"].values) == ["01031500"]  # nothing invented for the others
    assert pred.attrs["coverage"] == "1 of 4 basins" and pred.attrs["model"] == "sacsma"
    assert pred.attrs["basins_without_output"].split() == [b for b in TINY_BASINS if b != "01031500"]
    assert pd.Timestamp(pred["date"].values[0]) == pd.Timestamp("1992-10-01") and pred.sizes["date"] == 365
    assert "ET" in pred and (pred["ET"].values >= 0).all()


def test_sacsma_run_is_logged_to_mlflow(sacsma_run, mlflow_tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("baselines-sacsma-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["model"] == "sacsma"
    assert run.data.tags["coverage"] == "1 of 4 basins"
    assert np.isfinite(run.data.metrics["test.NSE_median"])
    assert np.isfinite(run.data.metrics["test_vs_obs_run.NSE_median"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"per_basin_metrics.csv", "predictions.nc", "hydrographs.png"} <= artifacts


def test_calibration_runs_of_a_basin_are_averaged(tmp_path: Path) -> None:
    """CAMELS ships one file per calibration seed; qsim is their mean MOD_RUN."""
    raw = tmp_path / "camels"
    folder = raw / "model_output" / "flow_timeseries" / "daymet" / "01"
    folder.mkdir(parents=True)
    shutil.copy(SAC_FILE, folder / "01031500_05_model_output.txt")
    lines = SAC_FILE.read_text().splitlines()
    doubled = [lines[0]]
    for line in lines[1:]:  # a second "seed": the real file with MOD_RUN doubled
        fields = line.split()
        fields[10] = f"{2 * float(fields[10]):.7f}"
        doubled.append(" ".join(fields))
    (folder / "01031500_11_model_output.txt").write_text("\n".join(doubled) + "\n")
    output = load_sacsma(raw, ["01031500"], TEST)
    direct = _direct_columns("1992-10-01", "1993-09-30")
    np.testing.assert_allclose(output.predictions["qsim"].sel(basin="01031500").values,
                               1.5 * direct["MOD_RUN"].to_numpy(), rtol=1e-5)
    assert output.runs_per_basin == {"01031500": ["05", "11"]}
    assert output.predictions.attrs["qobs_source"] == "CAMELS SAC-SMA file OBS_RUN"  # no dataset given


def test_no_basin_with_output_is_a_data_error() -> None:
    with pytest.raises(DataError, match="none of the 2 selected basins has SAC-SMA output"):
        load_sacsma(CAMELS, ["01022500", "02053200"], TEST)


def test_period_outside_the_file_is_a_data_error() -> None:
    before = Period(start=dt.date(1980, 1, 1), end=dt.date(1980, 12, 31))  # the file starts 1980-10-01
    with pytest.raises(DataError, match="01031500_05_model_output.txt.*does not contain the period 1980-01-01"):
        load_sacsma(CAMELS, ["01031500"], before)


def test_cli_writes_the_artifacts(tmp_path: Path, tiny_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.cli import main
    from tests.baselines_fixtures import write_params

    params_path = write_params(tmp_path, tiny_data_dir)
    code = main(["--params", str(params_path), "baseline", "sacsma", "--no-mlflow", "--out", str(tmp_path / "sac")])
    assert code == 0
    assert "(1 of 4 basins)" in capsys.readouterr().out
    assert {"predictions.nc", "metrics.json", "per_basin_metrics.csv"} <= {p.name for p in (tmp_path / "sac").iterdir()}
