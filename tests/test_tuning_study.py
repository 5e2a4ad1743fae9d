"""End-to-end Optuna studies on the real ``ci`` data: interrupt + continue, parallel workers,
and the explorer (dhbv) -> fine-tune (dhbv_adj) workflow.

The interrupt and the workers tests are marked slow: they start fresh Python processes (the
CLI, spawned workers), 40-90 s apiece on a 2-core machine. The explorer test runs in-process
(about 10 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from benchmark.tuning.objective import FAIL_TRIALS_ENV
from benchmark.tuning.study import storage_url
from tests.limits import HANG_GUARD_S
from tests.paths import REPO_ROOT
from tests.training_fixtures import ci_data_dir, ci_dataset  # noqa: F401 - fixtures
from tests.tuning_fixtures import tune_params, write_tune_params


def _load(study_name: str, params) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=storage_url(params))


def _tune_cli(params_path: Path, *extra: str, fail_trials: str = "") -> subprocess.Popen:
    env = {**os.environ, FAIL_TRIALS_ENV: fail_trials, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "--params", str(params_path), "tune", "--model", "dhbv", *extra],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_for_complete_trial(proc: subprocess.Popen, study_name: str, params) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = _load(study_name, params).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        except KeyError:  # study not created yet
            trials = []
        if trials:
            return
        time.sleep(0.2)
    out = proc.communicate(timeout=30)[0] if proc.poll() is not None else ""
    raise AssertionError(f"no trial completed before the process ended or the deadline:\n{out[-3000:]}")


@pytest.mark.slow
def test_interrupted_study_continues_and_records_a_failing_trial(tmp_path, ci_data_dir, mlflow_tracking_uri):
    params_path = write_tune_params(tmp_path, ci_data_dir, experiment="tune-interrupt")
    params = tune_params(tmp_path, ci_data_dir, experiment="tune-interrupt")
    study_name = "interrupted"

    first = _tune_cli(params_path, "--trials", "3", "--study", study_name)
    _wait_for_complete_trial(first, study_name, params)
    first.send_signal(signal.SIGINT)  # Ctrl-C while the next trial runs
    out = first.communicate(timeout=HANG_GUARD_S)[0]
    assert first.returncode == 130, out[-3000:]
    assert "interrupted" in out

    before = _load(study_name, params).get_trials(deepcopy=False)
    assert all(t.state != TrialState.RUNNING for t in before), "Ctrl-C left a trial RUNNING"
    assert sum(t.state == TrialState.COMPLETE for t in before) >= 1
    n_before = len(before)

    deliberate = n_before + 1  # the second trial of the rerun fails on purpose
    second = _tune_cli(params_path, "--trials", "3", "--study", study_name, fail_trials=str(deliberate))
    out = second.communicate(timeout=HANG_GUARD_S)[0]
    assert second.returncode == 0, out[-3000:]

    study = _load(study_name, params)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(trials) == n_before + 3
    assert sorted(numbers) == list(range(len(trials))), "trial numbers must be unique and consecutive"
    by_number = {t.number: t for t in trials}
    assert by_number[deliberate].state == TrialState.FAIL
    assert "failure injected" in by_number[deliberate].user_attrs["error"]
    assert by_number[n_before].state == TrialState.COMPLETE
    assert by_number[n_before + 2].state == TrialState.COMPLETE

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"optimization_history.png", "param_importances.png", "best_params.yaml"} <= artifacts
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    by_trial = {int(r.data.tags["optuna.trial"]): r for r in children}
    assert by_trial[deliberate].info.status == "FAILED"
    assert "failure injected" in by_trial[deliberate].data.tags["error"]
    best = by_trial[study.best_trial.number]
    assert best.info.status == "FINISHED"
    assert best.data.metrics["objective"] == pytest.approx(study.best_value)
    assert len(client.get_metric_history(best.info.run_id, "val_KGE_median")) == 1
    assert float(best.data.params["hp.dropout"]) == pytest.approx(study.best_trial.params["dropout"])
    assert best.data.params["validation"] == study.user_attrs["validation"] == "1994-10-01..1995-09-30"
    assert best.data.params["train_period"] == "1990-10-01..1994-09-30"
    best_file = tmp_path / "tuning" / study_name / "best_params.yaml"
    assert best_file.is_file()


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(tmp_path, ci_data_dir, mlflow_tracking_uri):
    from benchmark.tuning.runner import run_tuning

    params = tune_params(tmp_path, ci_data_dir, experiment="tune-workers")
    result = run_tuning(params, "dhbv", trials=2, workers=2, study_name="parallel")

    trials = _load("parallel", params).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    pids = {t.user_attrs["worker_pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids, "each worker process must run one trial"
    assert {t.user_attrs["worker_index"] for t in trials} == {0, 1}
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.data.tags["worker_pid"] == str(trial.user_attrs["worker_pid"])


def test_explorer_study_then_adjoint_fine_tune_starts_from_the_best_network(tmp_path, ci_data_dir, mlflow_tracking_uri):
    from benchmark.config import load_params
    from benchmark.training.evaluate import evaluate_model
    from benchmark.artifacts import CHECKPOINT_NAME
    from benchmark.training.checkpoint import load_checkpoint
    from benchmark.tuning.init_from import train_from
    from benchmark.tuning.runner import run_tuning

    params_path = write_tune_params(tmp_path, ci_data_dir, experiment="tune-explorer")
    explorer = run_tuning(load_params(params_path), "dhbv", trials=2, study_name="explorer")
    assert explorer.best is not None
    assert not list((tmp_path / "tuning").rglob("work")), "a finished trial leaves no in-progress state"
    best_network = torch.load(explorer.best["network_path"], weights_only=True)

    # The fine-tune keeps its own learning rate (not tuned here); 1e-30 (the configuration refuses 0)
    # moves no float32 weight by even one unit in the last place, so they stay as they start.
    fine = load_params(params_path).model_copy(
        update={"train": load_params(params_path).train.model_copy(update={"learning_rate": 1e-30})}
    )
    result = train_from(fine, "dhbv_adj", "explorer", epochs=1)

    ckpt = load_checkpoint(result.model_dir / CHECKPOINT_NAME)
    assert set(ckpt["model_state"]) == set(best_network["state_dict"])
    for key, value in best_network["state_dict"].items():
        assert torch.equal(ckpt["model_state"][key], value), key
    sampled = explorer.best["hyperparams"]
    assert ckpt["setup"]["dropout"] == pytest.approx(sampled["dropout"])
    assert ckpt["setup"]["alpha"] == pytest.approx(sampled["alpha"])
    assert ckpt["setup"]["dynamic_parameters"] == sampled["dynamic_parameters"].split(",")
    assert ckpt["setup"]["learning_rate"] == 1e-30

    run = MlflowClient(tracking_uri=mlflow_tracking_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["init_from"] == "explorer"
    assert run.data.tags["init_from.study"] == "explorer"
    assert run.data.tags["init_from.run_id"] == explorer.best["mlflow_run_id"]
    assert run.data.tags["init_from.trial"] == str(explorer.best["best_trial"])
    assert "skipped: -" in run.data.tags["init_from.transfer"]

    _, summary = evaluate_model(fine, "dhbv_adj")
    assert summary["n_basins"] == 2


def test_a_pruned_trial_stops_early_and_its_run_says_so(tmp_path, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    from benchmark.tuning.objective import Objective

    params = tune_params(tmp_path, ci_data_dir, experiment="tune-prune", epochs=3)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=10.0))
    study.optimize(Objective(params, "dhbv", "pruned", None, ci_dataset), n_trials=1)

    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1], "pruned after the first of three epochs"
    run = MlflowClient(tracking_uri=mlflow_tracking_uri).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["optuna.state"] == "PRUNED"
    assert "objective" not in run.data.metrics
