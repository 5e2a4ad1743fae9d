"""``dvc repro`` trains, evaluates and reports every seed of the profile, in a temporary copy of
the repository (slow).

Specifications, on the ``ci`` profile given two seeds and one differentiable model (the
pipeline's own ``dvc.yaml``, real data, real neuralhydrology):

* one ``dvc repro`` trains and evaluates the model and the LSTM once per seed: the profile's
  first seed in the model's folder, the other in ``seed_<S>/``, each LSTM seed with the
  neuralhydrology configuration and the training record it ran with;
* DVC versions every seed: the stage outputs are the model folders, and deleting one seed's
  evaluation makes exactly that stage stale;
* the leaderboard counts both seeds for both models and lists each seed's budget.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline_resume import Project, _copy_repository

pytestmark = pytest.mark.slow

MODEL = "dhbv"
SEEDS = [111111, 222222]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, mlflow_tracking_uri) -> tuple[Project, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("pipeline-seeds") / "repo"
    _copy_repository(root)
    project = Project(root, mlflow_tracking_uri)

    def ci_with_two_seeds(raw: dict) -> None:
        raw.update(profile="ci")
        raw["train"].update(models=[MODEL])
        raw["profiles"]["ci"]["seeds"] = SEEDS

    project.params(ci_with_two_seeds)
    done = project.dvc("config", "core.no_scm", "true")
    assert done.returncode == 0, done.stderr
    return project, project.dvc("repro")


def test_dvc_repro_trains_and_evaluates_every_seed_of_the_profile(seeded):
    project, repro = seeded
    assert repro.returncode == 0, repro.stdout[-4000:] + repro.stderr[-4000:]
    artifacts = project.root / "artifacts"
    for seed, sub in zip(SEEDS, ("", f"seed_{SEEDS[1]}")):
        assert (artifacts / "models" / MODEL / sub / "checkpoint.pt").is_file()
        summary = json.loads((artifacts / "eval" / MODEL / sub / "metrics.json").read_text())
        assert summary["n_basins"] == 4
        lstm = artifacts / "baselines" / "lstm" / sub
        record = json.loads((lstm / "training.json").read_text())
        assert record["seed"] == seed and record["train_wall_s"] > 0
        assert yaml.safe_load((lstm / "nh_config.yml").read_text())["seed"] == seed
        assert (lstm / "per_basin_metrics.csv").is_file()
    # a different seed trains a different network
    first, second = (json.loads((artifacts / "eval" / MODEL / sub / "metrics.json").read_text())["NSE_median"]
                     for sub in ("", f"seed_{SEEDS[1]}"))
    assert first != second


def test_dvc_versions_every_seed_and_notices_a_missing_one(seeded):
    project, repro = seeded
    assert repro.returncode == 0
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())["stages"]
    assert [o["path"] for o in lock[f"evaluate@{MODEL}"]["outs"]] == [f"artifacts/eval/{MODEL}"]
    assert [o["path"] for o in lock["baseline_lstm"]["outs"]] == ["artifacts/baselines/lstm"]
    clean = project.dvc("status", "dvc.yaml")
    assert clean.returncode == 0 and "changed" not in clean.stdout, clean.stdout
    shutil.rmtree(project.root / "artifacts" / "eval" / MODEL / f"seed_{SEEDS[1]}")
    stale = project.dvc("status", "dvc.yaml")
    assert stale.returncode == 0
    changed = [line.strip().rstrip(":") for line in stale.stdout.splitlines() if line and not line.startswith("\t")]
    assert f"evaluate@{MODEL}" in changed and not any(s.startswith("train") for s in changed), stale.stdout
    restored = project.dvc("checkout", f"evaluate@{MODEL}")
    assert restored.returncode == 0, restored.stderr
    assert (project.root / "artifacts" / "eval" / MODEL / f"seed_{SEEDS[1]}" / "metrics.json").is_file()


def test_the_leaderboard_counts_both_seeds_of_each_trained_model(seeded):
    from benchmark.report import styles
    from tests.test_report_seeds_pipeline import md_row

    project, repro = seeded
    assert repro.returncode == 0
    md = (project.root / "reports" / "leaderboard.md").read_text(encoding="utf-8")
    for model in (MODEL, "lstm"):
        assert md_row(md, styles.label(model))[2] == str(len(SEEDS))
    budgets = md[md.index("Training budgets"):]
    assert md_row(budgets, styles.label("lstm"))[1] == str(len(SEEDS))

