"""End to end on the ``ci`` profile with two seeds: the real trainer trains and evaluates δHBV and
δHBV.adj once per seed (tracked in MLflow, the trainer's ``seed_<S>`` folder layout), the real
neuralhydrology LSTM and CAMELS SAC-SMA baselines run, ``hbvbench report`` renders the
leaderboard. Every statistic checked here is recomputed from the files the pipeline wrote:
one bootstrap CI, one Wilcoxon p-value (by enumerating the 2^4 sign patterns), the seed
ensemble, the training budgets. Slow (a few minutes on a 2-core CPU): ``pytest -m slow``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from benchmark import evaluation
from benchmark.cli import main as cli_main
from benchmark.report import styles
from tests.report_fixtures import artifact_dir, require_chromium
from tests.training_fixtures import ci_data_dir, write_params  # noqa: F401 - session fixture

pytestmark = pytest.mark.slow

SEEDS = [111111, 222222]
MODELS = ("dhbv", "dhbv_adj")
N_RESAMPLES, BOOTSTRAP_SEED = 10_000, 20240915


@pytest.fixture(scope="module")
def pipeline(ci_data_dir: Path, mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from baselines.commands import run_lstm
    from baselines.sacsma import run_sacsma_baseline
    from benchmark.config import load_params
    from benchmark.training.evaluate import evaluate_model
    from benchmark.training.trainer import train_model

    folder = tmp_path_factory.mktemp("report-seeds-pipeline")
    params_path = write_params(folder, ci_data_dir, experiment="report-seeds-pipeline")
    raw = yaml.safe_load(params_path.read_text())
    raw["profiles"]["ci"]["seeds"] = SEEDS
    raw["baselines"]["out_dir"] = str(folder / "baselines")
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    run_ids = {}
    for model in MODELS:
        for seed in SEEDS:
            run_ids[(model, seed)] = train_model(params, model, seed=seed).mlflow_run_id
            evaluate_model(params, model, seed=seed)
    run_lstm(params, mlflow_enabled=True)
    run_sacsma_baseline(params)
    out = folder / "reports"
    assert cli_main(["--params", str(params_path), "report", "--out", str(out)]) == 0
    return {"root": folder, "params": params_path, "out": out, "md": (out / "leaderboard.md").read_text(encoding="utf-8"),
            "run_ids": run_ids, "data": ci_data_dir}


def seed_dirs(root: Path, model: str, kind: str = "eval") -> list[Path]:
    return [root / kind / model, root / kind / model / f"seed_{SEEDS[1]}"]


def per_basin(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "per_basin_metrics.csv", dtype={"basin": str}, na_values=["n/a"]).set_index("basin")


def seed_mean(root: Path, model: str, column: str) -> pd.Series:
    return pd.concat([per_basin(f)[column] for f in seed_dirs(root, model)], axis=1).mean(axis=1, skipna=False)


def bootstrap_median_interval(values: np.ndarray) -> tuple[float, float]:
    idx = np.random.default_rng(BOOTSTRAP_SEED).integers(0, values.size, size=(N_RESAMPLES, values.size))
    return tuple(np.percentile(np.median(values[idx], axis=1), [2.5, 97.5]))


def md_row(text: str, label: str) -> list[str]:
    rows = [r for r in text.splitlines() if r.startswith(f"| {label} |") or r.startswith(f"| **{label}** |")]
    assert rows, f"no row {label}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_the_trainer_wrote_each_seed_where_the_report_reads_it(pipeline):
    for model in MODELS:
        for folder, seed in zip(seed_dirs(pipeline["root"], model), SEEDS):
            with xr.open_dataset(folder / "predictions.nc") as ds:
                assert int(ds.attrs["seed"]) == seed
        assert md_row(pipeline["md"], styles.label(model))[2] == "2"
    ids = {model: ", ".join(f"{pipeline['run_ids'][(model, s)]} (seed {s})" for s in SEEDS) for model in MODELS}
    for model, text in ids.items():
        assert f"{model}: {text}" in pipeline["md"]


def test_a_ci_is_recomputed_from_the_seeds_per_basin_files(pipeline):
    kge = seed_mean(pipeline["root"], "dhbv_adj", "KGE").to_numpy()
    assert kge.size == 4 and np.isfinite(kge).all()
    low, high = bootstrap_median_interval(kge)
    assert md_row(pipeline["md"], styles.label("dhbv_adj"))[4] == f"{np.median(kge):.3f} [{low:.3f}, {high:.3f}]"


def test_a_wilcoxon_p_value_is_recomputed_by_enumerating_every_sign_pattern(pipeline):
    d = (seed_mean(pipeline["root"], "dhbv_adj", "NSE") - seed_mean(pipeline["root"], "dhbv", "NSE")).to_numpy()
    assert d.size == 4 and np.all(d != 0) and np.unique(np.abs(d)).size == 4
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    sums = [sum(r for r, s in zip(range(1, 5), signs) if s) for signs in itertools.product([0, 1], repeat=4)]
    p = min(1.0, 2 * min(np.mean([s <= observed for s in sums]), np.mean([s >= observed for s in sums])))
    block = pipeline["md"].split(f"*A = {styles.label('dhbv_adj')}, B = {styles.label('dhbv')} (adjoint vs sequential)*")[1]
    row = md_row(block, "NSE")
    assert row[1] == "4" and row[5] == f"{p:.3f}"
    assert float(row[6]) >= p  # Holm never lowers a p-value


def test_the_seed_ensemble_is_the_mean_of_the_seeds_flows_scored_like_one_run(pipeline):
    from benchmark.data.dataset import load_dataset

    preds = [xr.load_dataset(f / "predictions.nc") for f in seed_dirs(pipeline["root"], "dhbv")]
    mean = preds[0][["qobs"]].copy()
    for variable in ("qsim", "Q2", "Q_unrouted", "ET"):
        mean[variable] = (preds[0][variable].astype("float64") + preds[1][variable].astype("float64")) / 2
    scored, _ = evaluation.score_predictions(mean, load_dataset(pipeline["data"]))
    nse = scored["NSE"].to_numpy()
    low, high = bootstrap_median_interval(nse)
    assert md_row(pipeline["md"], f"{styles.label('dhbv')} ensemble")[3] == f"{np.median(nse):.3f} [{low:.3f}, {high:.3f}]"


def test_with_four_basins_nothing_is_bold_and_the_evidence_cannot_tell(pipeline):
    md = pipeline["md"]
    tables = md.split("## Tables")[1].split("## Figures")[0]
    ours = [r for r in tables.splitlines() if r.startswith("| ") and "(published)" not in r]
    assert not any("**" in r for r in ours)
    evidence = md.split("## What the evidence says")[1].split("## Tables")[0]
    verdicts = [r.rstrip(" |").rsplit("|", 1)[1].strip() for r in evidence.splitlines()
                if r.startswith("| The adjoint") or r.startswith("| Capillary")]
    assert len(verdicts) == 8 and set(verdicts) == {"cannot tell"}


def test_the_budgets_come_from_the_train_logs_and_the_lstm_configuration(pipeline):
    from benchmark.config import load_params

    params = load_params(pipeline["params"])
    profile, lstm = params.active, params.baselines.lstm_for("ci")
    budgets = pipeline["md"].split("### Training budgets")[1].split("### ")[0]
    for model in MODELS:
        logs = [pd.read_csv(f / "train_log.csv") for f in seed_dirs(pipeline["root"], model, "models")]
        updates = {int(log["iterations"].sum()) for log in logs}
        assert updates == {profile.epochs * profile.iterations_per_epoch}
        walls = [log["epoch_wall_s"].sum() for log in logs]
        row = md_row(budgets, styles.label(model))
        n_updates = updates.pop()
        assert row[1:9] == ["2", str(profile.epochs), f"{n_updates:,}", str(profile.batch_basins),
                            str(profile.window_days), f"{n_updates * profile.batch_basins * profile.window_days:,}",
                            str(profile.warmup_days + profile.window_days),
                            f"{np.mean(walls):,.1f} ({min(walls):,.1f}–{max(walls):,.1f})"]
        assert row[9].startswith("train_log.csv; sizes from checkpoint setup")  # what the run trained with
    row = md_row(budgets, styles.label("lstm"))
    n_updates = lstm.epochs * lstm.max_updates_per_epoch
    assert row[1:8] == ["1", str(lstm.epochs), f"{n_updates:,}", str(lstm.batch_size), "1",
                        f"{n_updates * lstm.batch_size:,}", str(lstm.seq_length)]
    record = json.loads((pipeline["root"] / "baselines" / "lstm" / "training.json").read_text())
    assert row[8] == f"{record['train_wall_s']:,.1f}"  # the seconds recorded beside its predictions
    ratio = n_updates / (profile.epochs * profile.iterations_per_epoch)
    assert f"LSTM vs {styles.label('dhbv')}: {ratio:.2f}x the weight updates" in budgets and "budgets not equal" in budgets


def test_the_mlflow_source_gives_the_same_seed_mean_rows(pipeline, tmp_path):
    out = tmp_path / "from-mlflow"
    assert cli_main(["--params", str(pipeline["params"]), "report", "--source", "mlflow", "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    for model in MODELS:
        assert md_row(md, styles.label(model))[:9] == md_row(pipeline["md"], styles.label(model))[:9]
        ensemble = f"{styles.label(model)} ensemble"
        assert md_row(md, ensemble)[:9] == md_row(pipeline["md"], ensemble)[:9]


def test_the_seeded_report_loads_offline_in_headless_chromium(pipeline, repo_root):
    from benchmark.report.browser import inspect_page

    require_chromium()
    page = inspect_page(pipeline["out"] / "leaderboard.html")
    (pipeline["root"] / "shot.png").write_bytes(page.screenshot)
    shutil.copy(pipeline["root"] / "shot.png", artifact_dir(repo_root) / "leaderboard_ci_seeds.png")
    assert page.console_errors == [] and page.failed_requests == []
    assert [u for u in page.requests if u != page.url and not u.startswith("data:")] == []
    n_png = len(list((pipeline["out"] / "figures").glob("*.png")))
    assert len(page.images) == n_png >= 5 and all(i["naturalWidth"] > 0 for i in page.images)
