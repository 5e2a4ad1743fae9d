"""Training and evaluation end to end on the ``ci`` profile (4 real basins) with the fast dHBV.

Specifications: same seed -> identical weights and metrics; a training killed mid-epoch
(SIGKILL) and resumed with ``--resume`` ends exactly where an uninterrupted run ends; a
non-finite simulation stops with a TrainingError naming the epoch, the basin and the date,
and the MLflow run ends FAILED with the error; the evaluation writes predictions over the
test period.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import xarray as xr
from mlflow.tracking import MlflowClient

from benchmark.cli import main as cli_main
from benchmark.errors import TrainingError
from benchmark.training.evaluate import evaluate_model
from benchmark.artifacts import CHECKPOINT_NAME
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.trainer import train_model
from tests.limits import HANG_GUARD_S
from tests.training_fixtures import (  # noqa: F401 - fixtures
    KILL_MID_EPOCH_2,
    ci_data_dir,
    ci_dataset,
    ci_params,
    hbvbench_command,
    same_threads_env,
    write_params,
)

MODEL = "dhbv"
EPOCHS = 2


def _assert_same_weights(dir_a: Path, dir_b: Path) -> None:
    a = load_checkpoint(dir_a / CHECKPOINT_NAME)["model_state"]
    b = load_checkpoint(dir_b / CHECKPOINT_NAME)["model_state"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    """One uninterrupted ci training + evaluation of dhbv, tracked in the session store."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    params = ci_params(folder, ci_data_dir, experiment="training-uninterrupted")
    result = train_model(params, MODEL, epochs=EPOCHS, dataset=ci_dataset)
    per_basin, summary = evaluate_model(params, MODEL, dataset=ci_dataset)
    return folder, params, result, per_basin, summary


def test_training_writes_checkpoint_log_and_tracked_run(uninterrupted, mlflow_tracking_uri):
    folder, params, result, per_basin, summary = uninterrupted
    model_dir = folder / "models" / MODEL
    assert {p.name for p in model_dir.iterdir()} >= {"checkpoint.pt", "normalization.json", "train_log.csv"}
    log = pd.read_csv(model_dir / "train_log.csv")
    assert log["epoch"].tolist() == [1, 2] and log["train_loss"].notna().all()
    assert log["val_loss"].notna().all() and (log["val_loss"] > 0).all()
    assert load_checkpoint(model_dir / CHECKPOINT_NAME)["epoch"] == EPOCHS

    pred = xr.open_dataset(folder / "eval" / MODEL / "predictions.nc")
    profile = params.active
    assert str(pred["date"].values[0])[:10] == str(profile.test.start)
    assert str(pred["date"].values[-1])[:10] == str(profile.test.end)
    assert {"qsim", "qobs", "Q_unrouted", "Q2", "ET", "param_BETA", "param_FC", "route_a"} <= set(pred.data_vars)
    assert pred["qsim"].notnull().all()
    metrics = json.loads((folder / "eval" / MODEL / "metrics.json").read_text())
    assert metrics["NSE_median"] == pytest.approx(summary["NSE_median"])
    assert summary["n_basins"] == 4

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == MODEL and run.data.tags["scheme"] == "sequential"
    assert run.data.tags["profile"] == "ci"
    assert run.data.params["torch_threads"] == str(torch.get_num_threads())  # the budget it trained with
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")] == pytest.approx(
        log["val_loss"].tolist())
    assert "test.NSE_median" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"per_basin_metrics.csv", "predictions.nc", "hydrographs.png", "metric_cdf.png"} <= artifacts


def test_validation_loss_is_the_training_loss_over_the_held_out_period(uninterrupted, ci_dataset):
    """The last epoch's val_loss = eq. 36 of the final network over the profile's validation
    period (2000-10-01..2002-09-30 on ci: after the test period), recomputed independently."""
    from benchmark.models.registry import get_model_spec
    from benchmark.training.evaluate import predict
    from benchmark.training.loss import rmse_combined_loss
    from benchmark.training.normalization import NormalizationStats
    from benchmark.training.network import build_model
    from benchmark.data.dataset import select_profile_basins
    from benchmark.training.series import day_index, series_tensors

    folder, params, result, _, _ = uninterrupted
    period = params.active.validation
    assert period is not None and period.start > params.active.test.end
    stats = NormalizationStats.load(result.model_dir / "normalization.json")
    data = series_tensors(select_profile_basins(ci_dataset, params), stats, torch.device("cpu"), torch.float32)
    model = build_model(get_model_spec(MODEL), params, stats.n_inputs)
    model.network.load_state_dict(load_checkpoint(result.model_dir / CHECKPOINT_NAME)["model_state"])
    start, end = day_index(data.dates, period.start, "v"), day_index(data.dates, period.end, "v")
    series, _, _ = predict(model, data, start - params.train.test_warmup_days, start, end, chunk_basins=4)
    expected = rmse_combined_loss(torch.as_tensor(series["Q"], dtype=torch.float32), data.qobs[start : end + 1])
    assert result.history[-1]["val_loss"] == pytest.approx(float(expected), rel=1e-6)
    assert result.history[-1]["val_loss"] != pytest.approx(result.history[-1]["train_loss"], rel=1e-3)


def test_same_seed_gives_identical_weights_and_metrics(uninterrupted, tmp_path, ci_data_dir, ci_dataset):
    _, _, first, per_basin, _ = uninterrupted
    params = ci_params(tmp_path, ci_data_dir, experiment="training-determinism")
    second = train_model(params, MODEL, epochs=EPOCHS, dataset=ci_dataset, track=False)
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in first.history]
    _assert_same_weights(first.model_dir, second.model_dir)
    again, _ = evaluate_model(params, MODEL, dataset=ci_dataset, track=False)
    pd.testing.assert_frame_equal(again, per_basin)


def test_killed_training_resumes_to_the_same_result(uninterrupted, tmp_path, ci_data_dir, ci_dataset):
    _, params, reference, reference_per_basin, _ = uninterrupted
    params_path = write_params(tmp_path, ci_data_dir, experiment="training-resume")
    model_dir = tmp_path / "models" / MODEL
    args = ("--params", str(params_path), "train", "--model", MODEL, "--epochs", str(EPOCHS))
    kill_at_draw = params.active.iterations_per_epoch + 2
    killer = [sys.executable, "-c", KILL_MID_EPOCH_2.format(kill_at_draw=kill_at_draw), *args]
    env = same_threads_env()
    killed = subprocess.run(killer, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert load_checkpoint(model_dir / CHECKPOINT_NAME)["epoch"] == 1

    done = subprocess.run([*hbvbench_command(*args), "--resume"], env=env, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = load_checkpoint(model_dir / CHECKPOINT_NAME)
    assert resumed["epoch"] == EPOCHS
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in reference.history]
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in reference.history]
    _assert_same_weights(reference.model_dir, model_dir)
    from benchmark.config import load_params

    per_basin, _ = evaluate_model(load_params(params_path), MODEL, dataset=ci_dataset, track=False)
    pd.testing.assert_frame_equal(per_basin, reference_per_basin)


def test_a_non_finite_simulation_names_epoch_basin_and_date_and_fails_the_run(
        tmp_path, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    # An infinite learning rate turns the weights non-finite after the first update; the
    # configuration refuses it, so it is set past the validation (model_copy does not validate).
    params = ci_params(tmp_path, ci_data_dir, experiment="training-nan")
    params = params.model_copy(update={"train": params.train.model_copy(update={"learning_rate": float("inf")})})
    pattern = (r"epoch 1, batch 2/2: the simulation became non-finite \(NaN or infinite storage or flow\) "
               r"for basin (0\d{7}) on (\d{4}-\d\d-\d\d) \(first of \d+ such basin-days\)")
    with pytest.raises(TrainingError, match=pattern) as err:
        train_model(params, MODEL, epochs=1, dataset=ci_dataset)
    basin, day = re.search(pattern, str(err.value)).groups()
    assert basin in params.active.basins
    assert params.active.train.start <= dt.date.fromisoformat(day) <= params.active.train.end
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("training-nan")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert "the simulation became non-finite" in run.data.tags["error"]
    assert str(err.value) in run.data.tags["error"]


def test_cli_rejects_an_unknown_model_with_a_message(tmp_path, ci_data_dir, capsys):
    params_path = write_params(tmp_path, ci_data_dir)
    assert cli_main(["--params", str(params_path), "train", "--model", "no_such_model"]) == 2
    assert "no_such_model" in capsys.readouterr().err


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, ci_data_dir, capsys):
    params_path = write_params(tmp_path, ci_data_dir)
    assert cli_main(["--params", str(params_path), "train", "--model", MODEL, "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
