"""The ``train:`` section of params.yaml, the epoch override, solver-stat bookkeeping, DVC stages."""

from __future__ import annotations

import pytest
import yaml

from benchmark.config import load_params
from tests.paths import DEFAULT_PARAMS, REPO_ROOT
from benchmark.errors import ConfigError
from benchmark.training.solver_stats import merge_solver_stats, public_stats
from benchmark.training.trainer import _resolve_seed_epochs


def test_repository_params_train_the_four_dhbv_variants_and_the_two_gr4j_models():
    params = load_params()
    assert params.train.models == ["dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr", "gr4j", "gr4j_adj"]
    assert params.train.alpha == 0.25 and params.train.learning_rate == 1.0


def test_train_epochs_overrides_the_profile_only_when_set():
    params = load_params(overrides={"profile": "ci"})
    assert params.train.epochs is None
    assert _resolve_seed_epochs(params, None, None) == (params.active.seeds[0], params.active.epochs)
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["train"]["epochs"] = 7
    overridden = load_params(overrides={"profile": "ci", "train": raw["train"]})
    assert _resolve_seed_epochs(overridden, 5, None) == (5, 7)
    assert _resolve_seed_epochs(overridden, 5, 2) == (5, 2)  # the command line wins


def test_unknown_train_key_is_rejected_with_its_name(tmp_path):
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["train"]["learning_rat"] = 0.5
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="train.learning_rat"):
        load_params(path)


def test_solver_stats_sum_counts_keep_maxima_and_weight_means():
    total: dict[str, float] = {}
    merge_solver_stats(total, {"n_not_converged": 1.0, "max_residual": 1e-4, "mean_iterations": 2.0, "n_system_days": 100.0, "tol": 1e-5})
    merge_solver_stats(total, {"n_not_converged": 2.0, "max_residual": 5e-5, "mean_iterations": 4.0, "n_system_days": 300.0, "tol": 1e-5})
    assert public_stats(total) == {
        "n_not_converged": 3.0, "max_residual": 1e-4, "mean_iterations": 3.5, "n_system_days": 400.0, "tol": 1e-5,
    }


def test_dvc_train_and_evaluate_stages_run_every_seed_of_every_model_in_train_models():
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    stages = dvc["stages"]
    for name, folder in (("train", "${train.models_dir}"), ("evaluate", "${train.eval_dir}")):
        assert stages[name]["matrix"] == {"model": "${train.models}"}
        assert stages[name]["cmd"].endswith(f"hbvbench {name} --model ${{item.model}} --all-seeds")
        assert stages[name]["outs"] == [f"{folder}/${{item.model}}"]  # every seed_<S> folder inside it
        assert "profiles" in stages[name]["params"]  # a profile's seeds
    assert stages["baseline_lstm"]["cmd"].endswith("hbvbench baseline lstm --all-seeds")
    assert "train.epochs" in stages["train"]["params"]
    params = load_params(REPO_ROOT / "params.yaml")
    assert dvc["metrics"][:len(params.train.models)] == [f"${{train.eval_dir}}/{m}/metrics.json" for m in params.train.models]


def test_other_seeds_than_the_profiles_first_get_their_own_folders():
    from benchmark.artifacts import eval_dir, model_dir

    params = load_params(overrides={"profile": "ci"})
    first = params.active.seeds[0]
    assert model_dir(params, "dhbv") == model_dir(params, "dhbv", first)
    assert model_dir(params, "dhbv", first + 1) == model_dir(params, "dhbv") / f"seed_{first + 1}"
    assert eval_dir(params, "dhbv", first + 1).name == f"seed_{first + 1}"


@pytest.mark.parametrize("period, overlapped", [({"start": "2000-01-01", "end": "2001-12-31"}, "test"),
                                                ({"start": "1991-10-01", "end": "1992-09-30"}, "training")])
def test_a_validation_period_inside_the_training_or_test_period_is_rejected(tmp_path, period, overlapped):
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profiles"]["ci"]["validation"] = period
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"profiles.ci.*overlaps the {overlapped} period"):
        load_params(path)
