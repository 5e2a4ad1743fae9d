"""Confidence intervals, seeds, paired tests and the evidence section of the leaderboard.

Inputs (tests/report_fixtures.py): the 35 embedded CAMELS basins prepared by the real
``prepare`` stage, δHBV and δHBV.adj simulated with three seeded parameter draws each and
δHBV improved with one, scored by ``benchmark.evaluation`` into the trainer's folder layout
(the first seed in ``eval/<model>/``, the others in ``eval/<model>/seed_<S>/``). The report is
rendered by ``hbvbench report``.

Every statistic the report prints is recomputed here independently, from the per-basin CSV
files, with numpy only: the bootstrap CI (same resampling rule and seed as stated in the
report), the exact Wilcoxon p-value (the null distribution counted by dynamic programming over
rank sums), the normal approximation with ties (written out), the correlation CI.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from benchmark import evaluation
from benchmark.cli import main as cli_main
from benchmark.errors import DataError
from benchmark.report import styles
from benchmark.report.inputs import ModelResult, ReportInputs, collect_from_files
from tests.report_fixtures import SEEDED_SEEDS, require_chromium, seeded_case  # noqa: F401 - session fixture

N_RESAMPLES = 10_000  # stated in the report's CI note (checked below)
BOOTSTRAP_SEED = 20240915


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def seeded_report(seeded_case: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("seeded-report")
    code = cli_main(["--params", str(seeded_case["params"]), "report", "--out", str(out),
                     "--perf-dir", str(out / "no-perf")])
    assert code == 0
    return {**seeded_case, "out": out, "md": out / "leaderboard.md", "html": out / "leaderboard.html"}


def per_basin_csv(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "per_basin_metrics.csv", dtype={"basin": str}, na_values=["n/a"])
    return frame.set_index("basin")


def seed_folders(root: Path, model: str) -> list[Path]:
    return [root / "eval" / model] + sorted((root / "eval" / model).glob("seed_*"))


def seed_mean(root: Path, model: str, column: str) -> pd.Series:
    """Per basin, the mean over the model's seeds (NaN where any seed is NaN)."""
    frames = [per_basin_csv(f)[column] for f in seed_folders(root, model)]
    stacked = pd.concat(frames, axis=1)
    return stacked.mean(axis=1, skipna=False)


def md_row(md: str, label: str, section: str | None = None) -> list[str]:
    text = md.split(section)[1] if section else md
    lines = [line for line in text.splitlines() if line.startswith(f"| {label} |") or line.startswith(f"| **{label}** |")]
    assert lines, f"no markdown row for {label}"
    return [c.strip() for c in lines[0].strip("|").split("|")]


def bootstrap_interval(values: np.ndarray, statistic) -> tuple[float, float]:
    idx = np.random.default_rng(BOOTSTRAP_SEED).integers(0, values.shape[-1], size=(N_RESAMPLES, values.shape[-1]))
    replicates = np.array([statistic(values[..., i]) for i in idx])
    replicates = replicates[np.isfinite(replicates)]
    return tuple(np.percentile(replicates, [2.5, 97.5]))


def exact_wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided exact p of the signed-rank statistic: the number of sign patterns per rank sum
    counted by dynamic programming (no ties, no zeros)."""
    n = differences.size
    order = np.argsort(np.abs(differences))
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    w_plus = int(ranks[differences > 0].sum())
    counts = [1] + [0] * (n * (n + 1) // 2)
    for k in range(1, n + 1):
        counts = [counts[s] + (counts[s - k] if s >= k else 0) for s in range(len(counts))]
    total = 2 ** n
    lower, upper = sum(counts[: w_plus + 1]) / total, sum(counts[w_plus:]) / total
    return min(1.0, 2 * min(lower, upper))


def p_text(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


# --------------------------------------------------------------------------- confidence intervals


def test_a_confidence_interval_is_recomputed_from_the_per_basin_files(seeded_report):
    md = seeded_report["md"].read_text(encoding="utf-8")
    assert f"({N_RESAMPLES} resamples of the basins, numpy default_rng seed {BOOTSTRAP_SEED})" in md
    # three seeds: the median over basins of each basin's seed-mean NSE
    nse = seed_mean(seeded_report["root"], "dhbv", "NSE").to_numpy()
    assert np.isfinite(nse).all() and nse.size == 35
    low, high = bootstrap_interval(nse, np.median)
    assert md_row(md, styles.label("dhbv"))[3] == f"{np.median(nse):.3f} [{low:.3f}, {high:.3f}]"
    # one seed: straight from its per-basin file
    kge = per_basin_csv(seeded_report["root"] / "eval" / "dhbv_cr")["KGE"].to_numpy()
    low, high = bootstrap_interval(kge, np.median)
    assert md_row(md, styles.label("dhbv_cr"))[4] == f"{np.median(kge):.3f} [{low:.3f}, {high:.3f}]"


def test_the_bfi_correlation_and_its_interval_are_recomputed_from_the_per_basin_bfi(seeded_report):
    frame = per_basin_csv(seeded_report["root"] / "eval" / "dhbv_cr")
    pair = np.vstack([frame["BFI"].to_numpy(), frame["BFI_camels"].to_numpy()])
    r = np.corrcoef(pair)[0, 1]
    low, high = bootstrap_interval(pair, lambda p: np.corrcoef(p)[0, 1] if np.ptp(p[0]) and np.ptp(p[1]) else np.nan)
    cell = md_row(seeded_report["md"].read_text(encoding="utf-8"), styles.label("dhbv_cr"), "### Hydrological")[3]
    assert cell == f"{r:.3f} [{low:.3f}, {high:.3f}]"
    # the evaluation's own BFI_r agrees with the recomputed one
    assert evaluation.bfi_correlation(frame["BFI"], frame["BFI_camels"]) == pytest.approx(r, abs=1e-12)


def test_each_seed_is_scored_and_the_seed_spread_is_shown(seeded_report):
    md = seeded_report["md"].read_text(encoding="utf-8").split("### Per-seed medians and seed spread")[1]
    medians = []
    for folder, seed in zip(seed_folders(seeded_report["root"], "dhbv"), SEEDED_SEEDS):
        value = np.median(per_basin_csv(folder)["NSE"].to_numpy())
        medians.append(value)
        row = [r for r in md.splitlines() if r.startswith(f"| {styles.label('dhbv')} | {seed} |")]
        assert row and row[0].split("|")[3].strip() == f"{value:.3f}"
    spread = md_row(md, f"{styles.label('dhbv')}: spread")
    assert spread[1] == "3 seeds"
    assert spread[2] == f"{min(medians):.3f}–{max(medians):.3f} (sd {np.std(medians, ddof=1):.3f})"
    assert md_row(seeded_report["md"].read_text(encoding="utf-8"), styles.label("dhbv"))[2] == "3"


# --------------------------------------------------------------------------- paired tests


def test_a_wilcoxon_p_value_is_recomputed_by_exact_enumeration(seeded_report):
    from benchmark.report.statistics import wilcoxon_test

    root = seeded_report["root"]
    adj, seq = seed_mean(root, "dhbv_adj", "KGE"), seed_mean(root, "dhbv", "KGE")
    differences = (adj - seq).dropna().to_numpy()
    assert differences.size == 35 and np.all(differences != 0)
    assert np.unique(np.abs(differences)).size == differences.size  # no ties: the exact test applies
    expected = exact_wilcoxon_p(differences)
    assert wilcoxon_test(adj.to_numpy(), seq.to_numpy()).p == pytest.approx(expected, rel=1e-9)
    paired = seeded_report["md"].read_text(encoding="utf-8").split("### Paired tests")[1]
    block = paired.split(f"*A = {styles.label('dhbv_adj')}, B = {styles.label('dhbv')} (adjoint vs sequential)*")[1]
    row = md_row(block, "KGE")
    assert row[1] == "35" and row[5] == p_text(expected)
    wins = int((differences > 0).sum())
    assert row[7] == f"{wins} / {35 - wins} / 0"
    low, high = bootstrap_interval(differences, np.median)
    assert row[4] == f"{np.median(differences):+.3f} [{low:+.3f}, {high:+.3f}]"


def test_the_normal_approximation_with_ties_is_written_out(seeded_report):
    """Metrics rounded to 0.01 give tied magnitudes and zeros: the normal approximation with tie
    correction (no continuity correction) on the non-zero differences, which the report rounds
    to 12 decimals first (floating-point noise must not break ties)."""
    from benchmark.report.statistics import wilcoxon_test

    root = seeded_report["root"]
    a = seed_mean(root, "dhbv_adj", "NSE").round(2).to_numpy()
    b = seed_mean(root, "dhbv", "NSE").round(2).to_numpy()
    d = np.round(a - b, 12)
    d = d[d != 0]
    assert np.unique(np.abs(d)).size < d.size  # ties present
    n = d.size
    ranks = pd.Series(np.abs(d)).rank(method="average").to_numpy()
    w_plus = ranks[d > 0].sum()
    _, tie_sizes = np.unique(np.abs(d), return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - np.sum(tie_sizes ** 3 - tie_sizes) / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(variance)
    expected = 2 * (1 - 0.5 * (1 + math.erf(abs(z) / math.sqrt(2))))
    result = wilcoxon_test(a, b)
    assert result.method == "normal" and result.n_nonzero == n
    assert result.p == pytest.approx(expected, rel=1e-9)


def test_holm_adjusts_step_down():
    from benchmark.report.statistics import holm

    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> kept monotone at 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.5, math.nan, 0.9])
    assert adjusted[0] == pytest.approx(1.0) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(1.0)


def _model(name: str, frame: pd.DataFrame) -> ModelResult:
    return ModelResult.single(name, frame.copy())


def _inputs(*models: ModelResult) -> ReportInputs:
    return ReportInputs(models=list(models), published={}, perf=[], provenance={"profile": "default"})


def _with(frame: pd.DataFrame, column: str, values: np.ndarray) -> pd.DataFrame:
    out = frame.copy()
    out[column] = values
    return out


def _bold_rows(table, column: int) -> list[str]:
    return [row[0].text for row in table.groups[0].rows if row[column].best]


def test_best_is_marked_only_where_the_difference_is_significant(seeded_case):
    """On real per-basin values: lowering every basin's NSE by 0.02 is significant (exact p =
    2/2^35); a symmetric ±0.02 change that leaves a higher median is not, and is not bold."""
    from benchmark.report.tables import streamflow_table

    frame = per_basin_csv(seeded_case["root"] / "eval" / "dhbv")
    nse = frame["NSE"].to_numpy()
    worse = _model("dhbv_adj", _with(frame, "NSE", nse - 0.02))
    table = streamflow_table(_inputs(_model("dhbv", frame), worse))
    assert _bold_rows(table, 3) == [styles.label("dhbv")]
    assert _bold_rows(table, 4) == []  # KGE identical: no winner

    order = np.argsort(nse)
    noise = np.where(np.arange(nse.size) % 2 == 0, 0.02, -0.02)[np.argsort(order)]  # alternate along the ranks
    mixed = _model("dhbv_adj", _with(frame, "NSE", nse + noise))
    table = streamflow_table(_inputs(_model("dhbv", frame), mixed))
    medians = {row[0].text: row[3].value for row in table.groups[0].rows}
    assert medians[styles.label("dhbv_adj")] != medians[styles.label("dhbv")]
    assert _bold_rows(table, 3) == []


def test_the_evidence_section_supports_contradicts_or_cannot_tell(seeded_case):
    from benchmark.report.comparisons import Comparisons
    from benchmark.report.evidence import CANNOT_TELL, CONTRADICTS, FINDINGS, SUPPORTS, judge

    frame = per_basin_csv(seeded_case["root"] / "eval" / "dhbv")
    kge = frame["KGE"].to_numpy()
    finding = next(f for f in FINDINGS if f.metric == "KGE")
    noise = np.where(np.arange(kge.size) % 2 == 0, 0.01, -0.01)[np.argsort(np.argsort(kge))]
    cases = {SUPPORTS: kge + 0.02, CONTRADICTS: kge - 0.02, CANNOT_TELL: kge + noise}
    for verdict, adjoint_kge in cases.items():
        inputs = _inputs(_model("dhbv", frame), _model("dhbv_adj", _with(frame, "KGE", adjoint_kge)))
        judgement = judge(finding, "dhbv_adj", "dhbv", inputs, Comparisons())
        assert judgement.verdict == verdict
    absent = judge(finding, "dhbv_adj_cr", "dhbv_cr", inputs, Comparisons())
    assert absent.verdict == CANNOT_TELL and "not in this run" in absent.reason


def test_the_committed_style_report_has_the_evidence_and_paired_sections(seeded_report):
    md = seeded_report["md"].read_text(encoding="utf-8")
    assert md.index("## What the evidence says") < md.index("## Tables")
    evidence = md.split("## What the evidence says")[1].split("## Tables")[0]
    assert "Decision rule:" in evidence
    rows = [r for r in evidence.splitlines() if r.startswith("| The adjoint") or r.startswith("| Capillary")]
    assert len(rows) == 8
    assert all(r.rstrip(" |").rsplit("|", 1)[1].strip() in ("supports", "contradicts", "cannot tell") for r in rows)
    # the adjoint vs sequential KGE verdict follows the paired table's Holm p and direction
    from benchmark.report.comparisons import Comparisons
    from benchmark.report.evidence import judgements

    inputs = collect_from_files(root=seeded_report["root"], params_path=seeded_report["params"], lookup_run_ids=False)
    verdicts = {(j.finding.metric, j.better): j.verdict for j in judgements(inputs, Comparisons())}
    kge_row = next(r for r in rows if "KGE" in r and f"| {styles.label('dhbv_adj')} vs {styles.label('dhbv')} |" in r)
    assert kge_row.rstrip(" |").endswith(verdicts[("KGE", "dhbv_adj")])
    assert "### Paired tests of the paper's comparisons" in md and "### Training budgets" in md


# --------------------------------------------------------------------------- ensembles


def test_the_ensemble_score_equals_scoring_the_mean_of_the_seeds_predictions(seeded_report):
    from benchmark.data.dataset import load_dataset
    from benchmark.ensemble import score_ensemble

    dataset = load_dataset(seeded_report["data"])
    preds = [xr.load_dataset(f / "predictions.nc") for f in seed_folders(seeded_report["root"], "dhbv")]
    mean = preds[0][["qobs"]].copy()
    for variable in ("qsim", "Q2", "Q_unrouted", "ET"):
        mean[variable] = sum(p[variable].astype("float64") for p in preds) / len(preds)
    expected, _ = evaluation.score_predictions(mean, dataset)
    got, summary = score_ensemble(preds, dataset)
    pd.testing.assert_frame_equal(got, expected, rtol=1e-12, atol=0)
    assert summary["BFI_r"] == pytest.approx(evaluation.bfi_correlation(expected["BFI"], expected["BFI_camels"]))
    row = md_row(seeded_report["md"].read_text(encoding="utf-8"), f"{styles.label('dhbv')} ensemble")
    assert row[2] == "3" and row[3].startswith(f"{np.median(expected['NSE']):.3f} [")


def test_a_nan_in_one_seed_makes_the_ensemble_basin_nan_not_better(seeded_case):
    from benchmark.data.dataset import load_dataset
    from benchmark.ensemble import score_ensemble

    dataset = load_dataset(seeded_case["data"])
    preds = [xr.load_dataset(f / "predictions.nc") for f in seed_folders(seeded_case["root"], "dhbv")]
    basin = str(preds[1]["basin"].values[3])
    preds[1]["qsim"].loc[{"basin": basin}] = preds[1]["qsim"].sel(basin=basin).where(
        np.arange(preds[1].sizes["date"]) != 10)
    per_basin, _ = score_ensemble(preds, dataset)
    assert np.isnan(per_basin.loc[basin, "NSE"])
    assert np.isfinite(per_basin.drop(index=basin)["NSE"]).all()


def test_seeds_whose_observations_differ_cannot_be_averaged(seeded_case):
    from benchmark.ensemble import mean_prediction

    preds = [xr.load_dataset(f / "predictions.nc") for f in seed_folders(seeded_case["root"], "dhbv")]
    preds[2]["qobs"] = preds[2]["qobs"] * 1.01
    with pytest.raises(DataError, match=r"cannot average seeds: the observed flow qobs of .*seed_33"):
        mean_prediction(preds, names=[str(f) for f in seed_folders(seeded_case["root"], "dhbv")])


def test_without_the_processed_dataset_the_report_says_the_ensembles_were_not_scored(seeded_case, tmp_path):
    import yaml

    raw = yaml.safe_load(seeded_case["params"].read_text())
    raw["data"]["processed_dir"] = str(tmp_path / "nowhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    inputs = collect_from_files(root=tmp_path, params_path=tmp_path / "params.yaml", lookup_run_ids=False)
    assert all(m.ensemble is None for m in inputs.models)
    assert any(n.startswith("Seed ensembles not scored: processed dataset") and "nowhere" in n for n in inputs.notes)


# --------------------------------------------------------------------------- seed folders


def _copy_eval(seeded_case: dict[str, Path], tmp_path: Path) -> Path:
    shutil.copytree(seeded_case["root"] / "eval" / "dhbv", tmp_path / "eval" / "dhbv")
    return tmp_path / "eval"


def test_a_seed_outside_the_profile_is_left_out_and_said_so(seeded_case, tmp_path):
    eval_dir = _copy_eval(seeded_case, tmp_path)
    (eval_dir / "dhbv" / "seed_33").rename(eval_dir / "dhbv" / "seed_44")
    with xr.open_dataset(eval_dir / "dhbv" / "seed_44" / "predictions.nc") as ds:
        ds = ds.load()
    ds.attrs["seed"] = 44
    ds.to_netcdf(eval_dir / "dhbv" / "seed_44" / "predictions.nc")
    inputs = collect_from_files(root=tmp_path, eval_dir=eval_dir, params_path=seeded_case["params"],
                                lookup_run_ids=False)
    assert inputs.models[0].seeds == (11, 22)
    assert any("seed_44 left out: seed 44 is not one of the other seeds [22, 33]" in n for n in inputs.notes)


def test_a_seed_of_the_profile_that_was_not_evaluated_is_named(seeded_case, tmp_path):
    eval_dir = _copy_eval(seeded_case, tmp_path)
    shutil.rmtree(eval_dir / "dhbv" / "seed_33")
    inputs = collect_from_files(root=tmp_path, eval_dir=eval_dir, params_path=seeded_case["params"],
                                lookup_run_ids=False)
    assert inputs.models[0].seeds == (11, 22)
    assert "dhbv: 2 of the profile's 3 seeds; seed 33 not evaluated, so its statistics cover fewer seeds." in inputs.notes


def test_a_seed_folder_with_a_bad_name_or_a_contradicting_seed_is_a_clear_error(seeded_case, tmp_path, capsys):
    eval_dir = _copy_eval(seeded_case, tmp_path)
    (eval_dir / "dhbv" / "seed_33").rename(eval_dir / "dhbv" / "seed_x")
    code = cli_main(["--params", str(seeded_case["params"]), "report", "--eval-dir", str(eval_dir),
                     "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("hbvbench report: error: ") and "seed_x: a seed folder must be named seed_<integer seed>" in err
    assert not (tmp_path / "out" / "leaderboard.md").exists()
    (eval_dir / "dhbv" / "seed_x").rename(eval_dir / "dhbv" / "seed_33")
    (eval_dir / "dhbv" / "seed_22").rename(eval_dir / "dhbv" / "seed_99")
    with pytest.raises(DataError, match=r"was written by seed 22, but its folder seed_99 says seed 99"):
        collect_from_files(root=tmp_path, eval_dir=eval_dir, params_path=seeded_case["params"], lookup_run_ids=False)


def test_a_failed_basin_is_counted_and_named_with_its_seed_and_reason(seeded_case, tmp_path):
    from benchmark.data.dataset import load_dataset

    eval_dir = _copy_eval(seeded_case, tmp_path)
    dataset = load_dataset(seeded_case["data"])
    folder = eval_dir / "dhbv" / "seed_22"
    pred = xr.load_dataset(folder / "predictions.nc")
    basin = str(pred["basin"].values[5])
    reason = "Newton did not converge on 3.0 % of its simulated days"
    per_basin, summary = evaluation.score_predictions(pred, dataset, failed={basin: reason})
    evaluation.write_metrics(folder, per_basin, summary)
    out = tmp_path / "out"
    assert cli_main(["--params", str(seeded_case["params"]), "report", "--eval-dir", str(eval_dir),
                     "--out", str(out), "--perf-dir", str(tmp_path / "no-perf")]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    row = md_row(md, styles.label("dhbv"))
    assert row[1] == "34 of 35 basins (1 failed)"  # a basin failed in any seed has no seed-mean value
    assert (f"{styles.label('dhbv')}: 1 failed basin, left out of its medians (docs/metrics.md#failed-basins): "
            f"{basin} (seed 22: {reason}).") in md
    nse = seed_mean(tmp_path, "dhbv", "NSE").drop(index=basin)
    assert row[3].startswith(f"{np.median(nse):.3f} [")


# --------------------------------------------------------------------------- budgets


def test_the_lstm_budget_is_read_from_the_configuration_and_the_record_it_ran_with(tmp_path):
    from baselines.nh_lstm import prepare_run_folder
    from benchmark.config import load_params
    from benchmark.report.budgets import lstm_budget
    from benchmark.report.inputs import SeedRun
    from tests.training_fixtures import write_params

    params = load_params(write_params(tmp_path, tmp_path / "data"))
    basins = list(params.active.basins)
    prepare_run_folder(params, basins, tmp_path / "lstm")  # writes nh_runs/<name>/nh_config.yml and lstm/nh_config.yml
    settings = params.baselines.lstm_for("ci")
    run = SeedRun(None, pd.DataFrame(), {}, source=tmp_path / "lstm")
    budget = lstm_budget(run)
    assert budget.updates == settings.epochs * settings.max_updates_per_epoch
    assert (budget.samples_per_update, budget.scored_days_per_sample) == (settings.batch_size, 1)
    assert budget.input_days_per_sample == settings.seq_length
    assert budget.basin_days == budget.updates * settings.batch_size
    assert budget.source.startswith("nh_config.yml")
    assert math.isnan(budget.wall_s)  # no training record, no MLflow run: not known, not invented
    (tmp_path / "lstm" / "training.json").write_text('{"seed": 111111, "train_wall_s": 12.5}')
    assert lstm_budget(run).wall_s == 12.5
    (tmp_path / "lstm" / "training.json").write_text("[12.5]")
    with pytest.raises(DataError, match=r"lstm/training.json: expected a mapping \(the LSTM's training record\)"):
        lstm_budget(run)


def test_a_dhbv_budget_takes_its_sizes_from_the_checkpoint_never_from_params_yaml():
    from benchmark.report.budgets import dhbv_budget
    from benchmark.report.inputs import SeedRun

    log = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.5, 0.4], "iterations": [3, 3], "epoch_wall_s": [1.0, 2.0]})
    run = SeedRun(1, pd.DataFrame(), {}, train_log=log,
                  setup={"batch_basins": 7, "window_days": 100, "warmup_days": 50, "iterations_per_epoch": 3})
    budget = dhbv_budget(run)
    assert (budget.updates, budget.samples_per_update, budget.scored_days_per_sample) == (6, 7, 100)
    assert budget.basin_days == 6 * 7 * 100 and budget.input_days_per_sample == 150 and budget.wall_s == 3.0
    assert budget.source == "train_log.csv; sizes from checkpoint setup"
    unknown = dhbv_budget(SeedRun(1, pd.DataFrame(), {}, train_log=log))
    assert math.isnan(unknown.basin_days) and "not recorded" in unknown.source


# --------------------------------------------------------------------------- figures / browser


def test_the_ecdf_figure_has_seed_bands_and_the_page_loads_offline(seeded_report):
    md = seeded_report["md"].read_text(encoding="utf-8")
    assert "shaded, the range (lowest to highest) of its seeds' ECDFs" in md
    require_chromium()
    from benchmark.report.browser import inspect_page

    page = inspect_page(seeded_report["html"])
    assert page.console_errors == [] and page.failed_requests == []
    assert [u for u in page.requests if u != page.url and not u.startswith("data:")] == []
    assert page.images and all(img["complete"] and img["naturalWidth"] > 0 for img in page.images)
