"""The neuralhydrology LSTM baseline: configuration from params.yaml, run folders, the epoch-loss
hook, and (slow) a real 1-epoch training on 4 real basins whose test predictions our metric
code scores exactly as neuralhydrology's own ``calculate_metrics`` does."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from baselines import nh_lstm
from benchmark.config import Period
from benchmark.data.dataset import profile_basins
from benchmark.errors import ConfigError, DataError
from tests.baselines_fixtures import TINY_BASINS, tiny_data_dir, tiny_dataset, tiny_params  # noqa: F401 - fixtures

CAMELS = Path(__file__).resolve().parent.parent / "data" / "camels_us"


# ----------------------------------------------------------------------------- configuration


def test_validation_period_is_the_last_years_of_training() -> None:
    train = Period(start=dt.date(1980, 10, 1), end=dt.date(1995, 9, 30))
    assert nh_lstm.validation_period(train, 2) == Period(start=dt.date(1993, 10, 1), end=dt.date(1995, 9, 30))
    short = Period(start=dt.date(1990, 10, 1), end=dt.date(1991, 3, 31))
    assert nh_lstm.validation_period(short, 1) == short  # clipped to the training period


def test_generated_config_is_accepted_by_neuralhydrology(tmp_path: Path, tiny_data_dir: Path) -> None:
    from neuralhydrology.utils.config import Config

    params = tiny_params(tmp_path, tiny_data_dir)
    config, folder, dropped = nh_lstm.prepare_run_folder(params, TINY_BASINS, tmp_path / "lstm")
    cfg = Config(dict(config))  # raises on any key neuralhydrology does not know
    assert cfg.train_start_date == pd.Timestamp("1990-10-01") and cfg.train_end_date == pd.Timestamp("1992-09-30")
    assert cfg.test_start_date == pd.Timestamp("1992-10-01") and cfg.test_end_date == pd.Timestamp("1993-09-30")
    assert cfg.validation_start_date == pd.Timestamp("1991-10-01")  # last year of training
    assert cfg.dynamic_inputs == ["prcp(mm/day)", "srad(W/m2)", "tmax(C)", "tmin(C)", "vp(Pa)"]
    assert cfg.target_variables == ["QObs(mm/d)"]
    assert (cfg.hidden_size, cfg.seq_length, cfg.epochs, cfg.batch_size) == (8, 30, 1, 32)
    assert cfg.device == "cpu" and cfg.dataset == nh_lstm.DATASET_KEY
    assert (folder / "basins.txt").read_text().split() == TINY_BASINS
    assert (folder / "nh_config.yml").is_file()
    # all 35 Table A1 attributes vary over these four basins, so none is dropped
    assert dropped == [] and len(cfg.static_attributes) == 35


def test_paper_profile_uses_the_kratzert_2019_setup() -> None:
    from benchmark.config import load_params

    paper = load_params().baselines.lstm_for("paper")
    assert (paper.hidden_size, paper.seq_length, paper.batch_size, paper.epochs) == (256, 270, 256, 30)
    assert paper.output_dropout == 0.4 and paper.initial_forget_bias == 5.0 and paper.clip_gradient_norm == 1.0
    assert paper.learning_rate == {0: 1e-3, 11: 5e-4, 21: 1e-4} and paper.loss == "NSE"


def test_missing_profile_entry_is_a_config_error(tmp_path: Path, tiny_data_dir: Path) -> None:
    params = tiny_params(tmp_path, tiny_data_dir)
    with pytest.raises(ConfigError, match="baselines.lstm.nonexistent"):
        params.baselines.lstm_for("nonexistent")


def test_constant_attributes_are_dropped_and_categoricals_coded_like_the_prepared_data(
    tiny_dataset: xr.Dataset,
) -> None:
    kept, dropped = nh_lstm.usable_static_attributes(CAMELS, ["01022500", "01031500"])
    assert dropped == ["dom_land_cover"]  # both "Mixed Forests": no spread, neuralhydrology would refuse it
    assert "dom_land_cover" not in kept and len(kept) == 34
    ours = nh_lstm.table_a1_attributes(CAMELS, TINY_BASINS)
    prepared = tiny_dataset["attributes"].sel(basin=TINY_BASINS).to_pandas()
    assert list(ours.columns) == list(prepared.columns)
    np.testing.assert_allclose(ours.to_numpy(), prepared.to_numpy(), rtol=1e-6, equal_nan=True)


def test_unknown_config_key_is_rejected_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus_key"):
        nh_lstm.train_and_test({"bogus_key": 1, "run_dir": str(tmp_path)})


def test_each_invocation_gets_its_own_run_folder_and_the_out_folder_keeps_the_newest_config(
    tmp_path: Path, tiny_data_dir: Path
) -> None:
    params = tiny_params(tmp_path, tiny_data_dir)
    _, first, _ = nh_lstm.prepare_run_folder(params, TINY_BASINS, tmp_path / "lstm")
    second_config, second, _ = nh_lstm.prepare_run_folder(params, TINY_BASINS, tmp_path / "lstm", seed=7)
    assert first != second and first.is_dir() and second.is_dir()
    newest = yaml.safe_load((tmp_path / "lstm" / nh_lstm.NH_CONFIG_NAME).read_text())
    assert newest == second_config and newest["seed"] == 7
    assert newest == yaml.safe_load((second / nh_lstm.NH_CONFIG_NAME).read_text())
    assert not (tmp_path / "lstm" / "nh_runs" / "latest").exists()  # no symlink: DVC outputs stay plain files


def test_held_out_test_basins_get_their_own_list_and_attributes_come_from_the_training_basins(
    tmp_path: Path, tiny_data_dir: Path
) -> None:
    params = tiny_params(tmp_path, tiny_data_dir)
    train, held_out = TINY_BASINS[:2], TINY_BASINS[2:]
    config, folder, dropped = nh_lstm.prepare_run_folder(params, train, tmp_path / "lstm", test_basins=held_out)
    assert (folder / "basins.txt").read_text().split() == train
    assert (folder / "test_basins.txt").read_text().split() == held_out
    assert config["train_basin_file"] == config["validation_basin_file"] == str((folder / "basins.txt").resolve())
    assert config["test_basin_file"] == str((folder / "test_basins.txt").resolve())
    assert dropped == nh_lstm.usable_static_attributes(CAMELS, train)[1] == ["dom_land_cover"]  # constant on 2 basins


def test_profile_basin_missing_from_the_prepared_dataset_is_a_data_error(tmp_path: Path, tiny_data_dir: Path) -> None:
    params = tiny_params(tmp_path, tiny_data_dir)
    with pytest.raises(DataError, match=r"basins \['01022500', .* of profile 'tiny' are not in the processed dataset"):
        profile_basins(params, ["01031500"])


# ----------------------------------------------------------------------------- epoch log hook


def test_epoch_hook_parses_neuralhydrologys_epoch_summaries() -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    hook = nh_lstm.EpochLogHook(lambda epoch, values: seen.append((epoch, values)))
    logger = logging.getLogger("neuralhydrology.training.basetrainer")
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(hook)
    try:  # the exact formats of neuralhydrology 1.13 BaseTrainer.train_and_validate
        logger.info("Epoch 1 average loss: avg_loss: 0.13003, avg_total_loss: 0.13003")
        logger.info("Epoch 1 average validation loss: 0.11459 -- Median validation metrics: "
                    "avg_loss: 0.11459, NSE: 0.15539, KGE: 0.05637")
        logger.info("Epoch 2 average loss: avg_loss: 0.10000, avg_total_loss: 0.10000")
        logger.info("Setting learning rate to 0.0005")  # not an epoch summary: ignored
    finally:
        logger.removeHandler(hook)
        logger.setLevel(previous)
    table = hook.epochs
    assert list(table["epoch"]) == [1, 2]
    assert table.loc[0, "train_loss"] == pytest.approx(0.13003)
    assert table.loc[0, "valid_loss"] == pytest.approx(0.11459)
    assert table.loc[0, "valid_NSE"] == pytest.approx(0.15539) and table.loc[0, "valid_KGE"] == pytest.approx(0.05637)
    assert np.isnan(table.loc[1, "valid_loss"]) and table.loc[1, "train_loss"] == pytest.approx(0.1)
    assert [epoch for epoch, _ in seen] == [1, 1, 2]
    assert "train_avg_loss" not in table and "valid_avg_loss" not in table  # duplicates of the totals


# ----------------------------------------------------------------------------- conversion


def _fake_results(dates: pd.DatetimeIndex, basins: list[str]) -> dict:
    """neuralhydrology's result layout (basin -> '1D' -> xr) around known numbers."""
    rng = np.random.default_rng(0)
    results = {}
    for basin in basins:
        sim = rng.normal(1.0, 1.0, (len(dates), 1))
        obs = rng.gamma(2.0, 1.0, (len(dates), 1))
        frame = xr.Dataset(
            {"QObs(mm/d)_obs": (("date", "time_step"), obs), "QObs(mm/d)_sim": (("date", "time_step"), sim)},
            coords={"date": dates, "time_step": [0]},
        )
        results[basin] = {"1D": {"xr": frame, "NSE": 0.0}}
    return results


def test_results_become_predictions_with_negative_flows_clipped() -> None:
    dates = pd.date_range("1992-10-01", "1993-09-30")
    results = _fake_results(dates, ["02053200", "01022500"])
    pred = nh_lstm.results_to_predictions(results, period=Period(start=dates[0].date(), end=dates[-1].date()))
    assert list(pred["basin"].values) == ["01022500", "02053200"]  # sorted
    assert pred.attrs["model"] == "lstm_nh" and pred["qsim"].dtype == np.float32
    raw = results["01022500"]["1D"]["xr"]["QObs(mm/d)_sim"].values[:, 0]
    np.testing.assert_allclose(pred["qsim"].sel(basin="01022500").values, np.clip(raw, 0, None), rtol=1e-6)
    assert (pred["qsim"].values >= 0).all() and (raw < 0).any()


def test_results_not_covering_the_test_period_are_rejected() -> None:
    dates = pd.date_range("1992-10-02", "1993-09-30")
    with pytest.raises(DataError, match="expected the test period 1992-10-01"):
        nh_lstm.results_to_predictions(_fake_results(dates, ["01022500"]),
                                       period=Period(start=dt.date(1992, 10, 1), end=dt.date(1993, 9, 30)))
    with pytest.raises(DataError, match="no test results"):
        nh_lstm.results_to_predictions({})


# ----------------------------------------------------------------------------- real training


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path, mlflow_tracking_uri: str):
    """One real neuralhydrology run (4 basins, 1 epoch of 8 updates) through the CLI's code path."""
    from baselines.commands import run_lstm

    folder = tmp_path_factory.mktemp("lstm-run")
    params = tiny_params(folder, tiny_data_dir, experiment="baselines-lstm-test")
    summary = run_lstm(params, mlflow_enabled=True)
    return params, Path(summary["out_dir"]), summary


@pytest.mark.slow
def test_lstm_run_writes_the_standard_artifacts(lstm_run, tiny_dataset: xr.Dataset) -> None:
    params, out, summary = lstm_run
    for name in ("predictions.nc", "metrics.json", "per_basin_metrics.csv", "epoch_losses.csv", "nh_metrics.csv",
                 "hydrographs.png", "metric_cdf.png", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert out == Path(params.baselines.out_dir) / "lstm"
    pred = xr.load_dataset(out / "predictions.nc")
    assert list(pred["basin"].values) == TINY_BASINS
    assert pd.Timestamp(pred["date"].values[0]) == pd.Timestamp("1992-10-01")
    assert pd.Timestamp(pred["date"].values[-1]) == pd.Timestamp("1993-09-30")
    assert np.isfinite(pred["qsim"].values).all() and (pred["qsim"].values >= 0).all()
    # observations are the prepared dataset's (the same every model is scored against)
    expected = tiny_dataset["qobs"].sel(basin=TINY_BASINS, date=pred["date"].values).values
    np.testing.assert_array_equal(pred["qobs"].values, expected)
    assert summary["n_basins"] == 4 and np.isfinite(summary["NSE_median"])
    epochs = pd.read_csv(out / "epoch_losses.csv")
    assert list(epochs["epoch"]) == [1] and np.isfinite(epochs.loc[0, ["train_loss", "valid_loss"]]).all()


@pytest.mark.slow
def test_our_nse_kge_equal_neuralhydrologys_calculate_metrics(lstm_run) -> None:
    from neuralhydrology.evaluation.metrics import calculate_metrics

    from benchmark import metrics

    _, out, _ = lstm_run
    pred = xr.load_dataset(out / "predictions.nc")
    ours = pd.read_csv(out / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
    for basin in TINY_BASINS:
        obs = pred["qobs"].sel(basin=basin).astype(np.float64)
        sim = pred["qsim"].sel(basin=basin).astype(np.float64)
        theirs = calculate_metrics(obs, sim, metrics=["NSE", "KGE"], resolution="1D")
        assert metrics.nse(sim.values, obs.values) == pytest.approx(theirs["NSE"], abs=1e-9), basin
        assert metrics.kge(sim.values, obs.values) == pytest.approx(theirs["KGE"], abs=1e-9), basin
        assert ours.loc[basin, "NSE"] == pytest.approx(theirs["NSE"], abs=1e-9)
        assert ours.loc[basin, "KGE"] == pytest.approx(theirs["KGE"], abs=1e-9)


@pytest.mark.slow
def test_neuralhydrologys_target_and_its_own_test_metrics_match_ours(lstm_run) -> None:
    """The LSTM was trained on our qobs (area_gages2) and its tester scored the same days we do:
    its own NSE/KGE (on its float32 copy of the observations) agree with ours to 1e-4."""
    _, out, _ = lstm_run
    theirs = pd.read_csv(out / "nh_metrics.csv", dtype={"basin": str}).set_index("basin")
    ours = pd.read_csv(out / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
    assert sorted(theirs.index) == TINY_BASINS
    for key in ("NSE", "KGE"):
        np.testing.assert_allclose(ours.loc[TINY_BASINS, key], theirs.loc[TINY_BASINS, key], atol=1e-4)


@pytest.mark.slow
def test_lstm_run_is_logged_to_mlflow_like_every_model(lstm_run, mlflow_tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("baselines-lstm-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "lstm_nh" and run.data.tags["profile"] == "tiny"
    assert run.data.params["lstm.hidden_size"] == "8" and run.data.params["lstm.seq_length"] == "30"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1]
    assert np.isfinite(run.data.metrics["test.NSE_median"]) and run.data.metrics["train_wall_s"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"per_basin_metrics.csv", "predictions.nc", "hydrographs.png", "loss_curve.png"} <= artifacts
    nh_files = {a.path for a in client.list_artifacts(run.info.run_id, "neuralhydrology")}
    assert "neuralhydrology/config.yml" in nh_files and "neuralhydrology/epoch_losses.csv" in nh_files
