"""The ungauged-basin (PUB) spatial k-fold protocol (benchmark.pub, docs/training.md#ungauged-basins-pub).

Specification:

* the committed folds partition each profile's basins and are the HUC-02-stratified
  proposal of ``hbvbench pub folds``;
* a held-out evaluation refuses a checkpoint trained on any of its basins, naming them;
* on the ``ci`` profile's 4 real basins in 2 folds, ``hbvbench pub run`` + ``pub report``
  score every basin exactly once per model, as a basin outside the training basins recorded
  in the fold's checkpoint, with finite metrics, and write the leaderboard.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import yaml

from benchmark.cli import main as cli_main
from benchmark.config import load_params
from benchmark.data.camels import list_basins
from benchmark.errors import ConfigError
from benchmark.pub.folds import huc_regions, propose_folds, training_basins
from benchmark.pub.runner import fold_params
from tests.paths import REPO_ROOT
from tests.training_fixtures import ci_data_dir, write_params  # noqa: F401 - session fixture

CAMELS = REPO_ROOT / "data" / "camels_us"


def test_the_committed_folds_hold_out_every_basin_once_stratified_by_region():
    params = load_params(REPO_ROOT / "params.yaml")
    embedded = list_basins(CAMELS)
    for profile, folds in params.pub.folds.items():
        chosen = params.profiles[profile].basins
        basins = embedded if chosen == "all" else list(chosen)
        assert sorted(b for fold in folds for b in fold) == sorted(basins), profile
        regions = huc_regions(CAMELS, basins)
        assert folds == propose_folds(regions, len(folds)), f"pub.folds.{profile} is not `hbvbench pub folds`' proposal"
    default = params.pub.folds["default"]
    assert [len(fold) for fold in default] == [7] * 5
    regions = huc_regions(CAMELS, embedded)
    assert all({regions[b] for b in fold} == set(regions.values()) for fold in default), "every fold spans every region"


def test_proposed_folds_differ_in_size_by_at_most_one_and_deal_each_region_out():
    regions = {f"0100000{i}": "01" for i in range(7)} | {f"0300000{i}": "03" for i in range(3)}
    folds = propose_folds(regions, 3)
    assert sorted(len(f) for f in folds) == [3, 3, 4]
    per_region = [sum(regions[b] == "01" for b in fold) for fold in folds]
    assert max(per_region) - min(per_region) <= 1
    with pytest.raises(ConfigError, match="--folds 11"):
        propose_folds(regions, 11)


def test_pub_folds_prints_yaml_that_reads_back_as_the_committed_folds(capsys):
    assert cli_main(["pub", "folds", "--profile", "ci", "--folds", "2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"ci": load_params(REPO_ROOT / "params.yaml").pub.folds["ci"]}


def test_a_held_out_evaluation_refuses_the_basins_the_model_trained_on(tmp_path, ci_data_dir):
    from benchmark.training.evaluate import evaluate_trained, load_trained
    from benchmark.training.trainer import train_model

    params = load_params(write_params(tmp_path, ci_data_dir, epochs=1))
    params = params.model_copy(update={"pub": params.pub.model_copy(update={"out_dir": tmp_path / "pub"})})
    trained_on = ["01022500", "01031500"]
    train_params = fold_params(params, trained_on, 1)
    train_model(train_params, "dhbv", track=False)
    trained = load_trained(train_params, "dhbv")
    assert list(trained.setup["basins"]) == trained_on and list(trained.stats.basins) == trained_on
    out = tmp_path / "held_out"
    with pytest.raises(ConfigError, match=r"trained on basins \['01031500'\]"):
        evaluate_trained(fold_params(params, ["01031500", "02053200"], 1), trained, out, held_out=True)
    assert not out.exists()
    with pytest.raises(ConfigError, match="basins"):  # the gauged evaluation refuses other basins as before
        evaluate_trained(fold_params(params, ["01047000", "02053200"], 1), trained, out)
    _, summary = evaluate_trained(fold_params(params, ["01047000", "02053200"], 1), trained, out, held_out=True)
    assert summary["train_basins"] == "01022500 01031500" and summary["test_basins"] == "01047000 02053200"
    assert json.loads((out / "metrics.json").read_text())["test_basins"] == "01047000 02053200"


@pytest.mark.slow
def test_the_pub_protocol_runs_end_to_end_on_the_ci_basins_in_two_folds(tmp_path, ci_data_dir):
    path = write_params(tmp_path, ci_data_dir)
    raw = yaml.safe_load(path.read_text())
    raw["baselines"].update(out_dir=str(tmp_path / "baselines"), device="cpu")
    raw["pub"].update(out_dir=str(tmp_path / "pub"), report_dir=str(tmp_path / "reports" / "pub"))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(path)
    folds = params.pub.folds["ci"]
    assert len(folds) == 2 and "lstm" in params.pub.models

    assert cli_main(["--params", str(path), "pub", "run"]) == 0
    assert cli_main(["--params", str(path), "pub", "report"]) == 0

    all_basins = sorted(b for fold in folds for b in fold)
    for model in params.pub.models:
        scored: list[str] = []
        for number, fold in enumerate(folds, start=1):
            folder = tmp_path / "pub" / "ci" / f"fold_{number}" / model
            summary = json.loads((folder / "metrics.json").read_text())
            assert summary["test_basins"].split() == sorted(fold)
            assert summary["train_basins"].split() == training_basins(folds, number)
            if model == "lstm":  # neuralhydrology's own record of the basin files it ran with
                record = json.loads((folder / "training.json").read_text())
                trained_on, tested = record["train_basins"], record["test_basins"]
            else:  # the checkpoint's and the normalization's record of the training basins
                checkpoint = torch.load(folder / "checkpoint.pt", weights_only=True)
                trained_on = checkpoint["setup"]["basins"]
                assert json.loads((folder / "normalization.json").read_text())["basins"] == trained_on
                tested = json.loads((folder / "metrics.json").read_text())["test_basins"].split()
            assert not set(trained_on) & set(fold), f"{model} fold {number} trained on a held-out basin"
            assert sorted(tested) == sorted(fold)
            per_basin = pd.read_csv(folder / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
            assert sorted(per_basin.index) == sorted(fold)
            assert per_basin[["NSE", "KGE"]].notna().all().all(), f"{model} fold {number}: a NaN metric"
            scored += list(per_basin.index)
        assert sorted(scored) == all_basins, f"{model}: not every basin scored exactly once"

    board = json.loads((tmp_path / "reports" / "pub" / "leaderboard.json").read_text())
    assert [row["model"] for row in board["models"]] == params.pub.models
    for row in board["models"]:
        assert row["n_basins"] == len(all_basins) and row["n_folds"] == 2
        assert all(isinstance(row[f"{m}_median"], float) for m in ("NSE", "KGE")), row
        assert row["NSE_low"] <= row["NSE_median"] <= row["NSE_high"]
    markdown = (tmp_path / "reports" / "pub" / "leaderboard.md").read_text()
    assert "δHBV.adj" in markdown and "\\|FLV\\|" in markdown and "| fold 1 | fold 2 |" in markdown
    assert (tmp_path / "reports" / "pub" / "leaderboard.csv").is_file()


def test_the_report_puts_the_gauged_median_and_the_pub_gap_beside_each_model():
    from benchmark.pub.report import PubModelScores, fold_markdown, markdown, rows

    basins = [f"0100000{i}" for i in range(5)]
    held_out = pd.DataFrame({"NSE": [0.1, 0.2, 0.3, 0.4, 0.5], "KGE": [0.0, 0.1, 0.2, 0.3, 0.4],
                             "fold": [1, 1, 2, 2, 2]}, index=basins)
    gauged = pd.DataFrame({"NSE": [0.5, 0.6, 0.7, 0.8, 0.9], "KGE": [0.4, 0.5, 0.6, 0.7, float("nan")]}, index=basins)
    record = rows([PubModelScores("dhbv", held_out, 5, gauged)])[0]
    assert record["NSE_median"] == pytest.approx(0.3) and record["gauged_NSE_median"] == pytest.approx(0.7)
    assert record["gap_NSE"] == pytest.approx(-0.4)
    assert record["gap_KGE"] == pytest.approx(0.2 - 0.55)  # the gauged NaN basin is left out of its median
    assert record["NSE_low"] <= 0.3 <= record["NSE_high"] and record["n_basins"] == 5
    without = rows([PubModelScores("dhbv", held_out, 5, None)])[0]
    assert math.isnan(without["gauged_NSE_median"]) and math.isnan(without["gap_NSE"])
    text = markdown([record, without], load_params(REPO_ROOT / "params.yaml"))
    assert "| δHBV | 5 | 5 of 5 | 0.300 [" in text and "| -0.400 |" in text and "| n/a | n/a |" in text
    assert "| δHBV | 0.150 | 0.400 |" in fold_markdown([PubModelScores("dhbv", held_out, 2, None)])
