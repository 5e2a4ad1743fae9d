"""The tuning building blocks: search-space config, hyperparameters applied to a configuration,
the validation split, weight transfer between variants, dead-worker clean-up (all fast)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from benchmark.config import load_params
from benchmark.errors import ConfigError
from benchmark.models.registry import get_model_spec
from benchmark.training.network import DifferentiableHBV
from benchmark.tuning.init_from import transfer_weights
from benchmark.tuning.objective import metric_direction, trial_params
from benchmark.tuning.space import (
    apply_hyperparams,
    load_hyperparams_file,
    params_as_trained,
    suggest,
    validation_period,
)
from benchmark.tuning.study import fail_dead_trials, make_storage, open_study, split_trials
from tests.tuning_fixtures import write_tune_params

DATA_DIR = Path("/nonexistent-data")  # these tests never read data


@pytest.fixture()
def params(tmp_path):
    return load_params(write_tune_params(tmp_path, DATA_DIR, experiment="unit"))


def _with_tune(tmp_path: Path, **tune) -> Path:
    path = write_tune_params(tmp_path, DATA_DIR, experiment="unit")
    raw = yaml.safe_load(path.read_text())
    raw["tune"].update(tune)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"hidden": {"type": "int", "low": 8, "high": 64}}, "unknown hyperparameters ['hidden']"),
        ({"nmul": {"type": "categorical"}}, "needs a non-empty `choices`"),
        ({"learning_rate": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log scale needs low > 0"),
        ({"dropout": {"type": "float", "low": 0.5, "high": 0.1}}, "high 0.1 is below low 0.5"),
        ({"dropout": {"type": "float", "low": 0.1, "high": 0.5, "bogus": 1}}, "bogus"),
    ],
)
def test_bad_search_space_entries_fail_naming_the_key(tmp_path, entry, message):
    with pytest.raises(ConfigError, match="tune.search_space") as err:
        load_params(_with_tune(tmp_path, search_space=entry))
    assert message in str(err.value)


def test_repository_params_declare_a_valid_search_space():
    params = load_params()
    assert {"learning_rate", "hidden_size", "dropout", "nmul", "alpha", "warmup_days", "dynamic_parameters", "newton_tol"} <= set(
        params.tune.search_space
    )
    assert params.tune.search_space["newton_tol"].schemes == ["implicit"]


def test_validation_period_is_the_last_training_year_and_never_the_test_period(tmp_path, params):
    assert validation_period(params) == type(validation_period(params))(start=dt.date(1994, 10, 1), end=dt.date(1995, 9, 30))
    overlapping = load_params(_with_tune(tmp_path, validation={"start": "1995-01-01", "end": "1996-06-30"}))
    with pytest.raises(ConfigError, match="overlaps the test period 1995-10-01..2000-09-30"):
        validation_period(overlapping)
    too_long = load_params(_with_tune(tmp_path, validation_years=5))
    with pytest.raises(ConfigError, match="fewer than window_days"):
        validation_period(too_long)


def test_a_trial_trains_before_the_validation_period_with_its_hyperparameters(tmp_path, params):
    out = tmp_path / "trial_0003"
    trial = trial_params(params, {"dropout": 0.2, "hidden_size": 16, "dynamic_parameters": "BETA"}, out)
    assert trial.active.train.start == params.active.train.start
    assert trial.active.train.end == dt.date(1994, 9, 30)
    assert trial.active.hidden_size == 16 and trial.train.dropout == 0.2
    assert trial.train.dynamic_parameters == ["BETA"]
    assert trial.train.models_dir == out
    assert validation_period(trial) == validation_period(params), "trials score the study's validation years"
    assert params.active.hidden_size == 8, "the study's configuration is left unchanged"


def test_impossible_hyperparameters_are_config_errors_naming_the_key(params):
    with pytest.raises(ConfigError, match=r"train.dropout: Input should be less than 1 \(got 1.5\)"):
        apply_hyperparams(params, {"dropout": 1.5})
    with pytest.raises(ConfigError, match="unknown hyperparameters \\['lr'\\]"):
        apply_hyperparams(params, {"lr": 0.1})


def test_entries_limited_to_other_schemes_are_not_sampled(params):
    space = {
        **params.tune.search_space,
        "newton_tol": load_params().tune.search_space["newton_tol"],
    }
    fixed = optuna.trial.FixedTrial({"dropout": 0.3, "alpha": 0.2, "dynamic_parameters": "BETA", "newton_tol": 1e-5})
    assert suggest(fixed, space, "sequential") == {"dropout": 0.3, "alpha": 0.2, "dynamic_parameters": "BETA"}
    assert suggest(fixed, space, "implicit")["newton_tol"] == 1e-5


def test_best_params_file_feeds_train_and_evaluation_rebuilds_the_trained_shape(tmp_path, params):
    best = tmp_path / "best_params.yaml"
    best.write_text(yaml.safe_dump({"study": "s", "best_trial": 2, "hyperparams": {"hidden_size": 16, "nmul": 1, "alpha": 0.3}}))
    tuned = apply_hyperparams(params, load_hyperparams_file(best), source=str(best))
    assert (tuned.active.hidden_size, tuned.active.nmul, tuned.train.alpha) == (16, 1, 0.3)
    setup = {"hidden_size": 16, "nmul": 1, "dynamic_parameters": ["BETA"], "newton_tol": None, "alpha": 0.3}
    rebuilt = params_as_trained(params, setup)
    assert (rebuilt.active.hidden_size, rebuilt.active.nmul, rebuilt.train.dynamic_parameters) == (16, 1, ["BETA"])
    assert rebuilt.train.alpha == params.train.alpha, "only what defines the model is taken from the checkpoint"


def test_objective_metrics_need_a_direction():
    assert metric_direction("KGE") == "maximize" and metric_direction("absFLV") == "minimize"
    with pytest.raises(ConfigError, match="'bias' cannot be an objective"):
        metric_direction("bias")


def test_trials_split_evenly_over_workers():
    assert split_trials(5, 2) == [3, 2]
    assert split_trials(2, 2) == [1, 1]
    assert sum(split_trials(7, 3)) == 7


def _network(model: str, nmul: int = 2, hidden: int = 8, seed: int = 0) -> DifferentiableHBV:
    torch.manual_seed(seed)
    return DifferentiableHBV(get_model_spec(model), n_inputs=38, hidden_size=hidden, nmul=nmul, dropout=0.0)


def test_weights_transfer_whole_between_variants_with_the_same_parameters():
    src, dst = _network("dhbv", seed=1), _network("dhbv_adj", seed=2)
    report = transfer_weights(dst.network, dst.layout, src.network.state_dict(), src.layout.parameter_names, 2)
    assert report["rows"] == [] and report["skipped"] == []
    for key, value in src.network.state_dict().items():
        assert torch.equal(dst.network.state_dict()[key], value)


def test_output_rows_transfer_by_parameter_name_to_a_capillary_rise_variant():
    src, dst = _network("dhbv", seed=1), _network("dhbv_adj_cr", seed=2)
    fresh = {k: v.clone() for k, v in dst.network.state_dict().items()}
    report = transfer_weights(dst.network, dst.layout, src.network.state_dict(), src.layout.parameter_names, 2)
    assert report["skipped"] == []
    assert any("C, NDC" in entry for entry in report["rows"])
    new, old = dst.network.state_dict()["output_layer.weight"], src.network.state_dict()["output_layer.weight"]
    names_dst, names_src = dst.layout.parameter_names, src.layout.parameter_names
    for name in ("BETA", "FC", "BETAET"):
        i, j = names_dst.index(name), names_src.index(name)
        assert torch.equal(new[2 * i : 2 * i + 2], old[2 * j : 2 * j + 2])
    for name in ("C", "NDC"):
        i = names_dst.index(name)
        assert torch.equal(new[2 * i : 2 * i + 2], fresh["output_layer.weight"][2 * i : 2 * i + 2])
    assert torch.equal(new[-2:], old[-2:]), "routing rows"
    assert torch.equal(dst.network.state_dict()["lstm.weight_hh_l0"], src.network.state_dict()["lstm.weight_hh_l0"])


def test_a_network_of_another_width_transfers_nothing():
    src, dst = _network("dhbv", hidden=8), _network("dhbv_adj", hidden=16)
    report = transfer_weights(dst.network, dst.layout, src.network.state_dict(), src.layout.parameter_names, 2)
    assert report["copied"] == [] and report["rows"] == []


def test_trials_of_dead_workers_are_failed_and_live_ones_left_running(tmp_path, params):
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = open_study(params, "dhbv", "dead", storage, "KGE")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead, alive = study.ask(), study.ask()
    for trial, pid in ((dead, int(dead_pid.stdout)), (alive, os.getpid())):
        trial.set_user_attr("worker_pid", pid)
        trial.set_user_attr("worker_host", socket.gethostname())
    assert fail_dead_trials(study) == [dead.number]
    states = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert states[dead.number].state == TrialState.FAIL
    assert "died" in states[dead.number].user_attrs["error"]
    assert states[alive.number].state == TrialState.RUNNING


def test_a_study_is_not_continued_with_another_model_or_metric(tmp_path, params):
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    open_study(params, "dhbv", "pinned", storage, "KGE")
    with pytest.raises(ConfigError, match="model: 'dhbv' -> 'dhbv_adj'"):
        open_study(params, "dhbv_adj", "pinned", storage, "KGE")
    with pytest.raises(ConfigError, match="created to maximize, but RMSE needs minimize"):
        open_study(params, "dhbv", "pinned", storage, "RMSE")


def test_init_from_and_resume_exclude_each_other_before_the_source_is_looked_up(tmp_path, params, capsys):
    from benchmark.cli import main as cli_main
    from benchmark.tuning.init_from import train_from

    with pytest.raises(ConfigError, match="--resume and --init-from exclude each other"):
        train_from(params, "dhbv", str(tmp_path / "no-such-model"), resume=True)
    path = write_tune_params(tmp_path, DATA_DIR, experiment="unit")
    code = cli_main(["--params", str(path), "train", "--model", "dhbv", "--init-from", "no-such-study", "--resume"])
    assert code == 2
    assert "hbvbench train: error: --resume and --init-from exclude each other" in capsys.readouterr().err
