"""End to end on the ``ci`` profile: train and evaluate the sequential and the adjoint model with
the real trainer (tracked in MLflow), score SAC-SMA from CAMELS, render the report, open it in
headless Chromium. Slow (40 s to 2 min on a 2-core CPU): ``pytest -m slow``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.cli import main as cli_main
from tests.training_fixtures import ci_data_dir, write_params  # noqa: F401 - session fixture

pytestmark = pytest.mark.slow


def test_ci_pipeline_report_renders_and_loads_offline(ci_data_dir, mlflow_tracking_uri, tmp_path, repo_root):
    from baselines.sacsma import run_sacsma_baseline
    from benchmark.config import load_params
    from benchmark.report.browser import find_chromium, inspect_page
    from benchmark.training.evaluate import evaluate_model
    from benchmark.training.trainer import train_model

    params_path = write_params(tmp_path, ci_data_dir, experiment="report-ci-pipeline")
    raw = yaml.safe_load(params_path.read_text())
    raw["baselines"]["out_dir"] = str(tmp_path / "baselines")
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    run_ids = {}
    for model in ("dhbv", "dhbv_adj"):
        run_ids[model] = train_model(params, model).mlflow_run_id
        evaluate_model(params, model)
    run_sacsma_baseline(params)

    out = tmp_path / "reports"
    assert cli_main(["--params", str(params_path), "report", "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")

    # provenance: the trainer's MLflow runs and the ci profile
    for model, run_id in run_ids.items():
        assert f"{model}: {run_id}" in md
    assert "- **profile**: `ci`" in md
    # cost table: seconds per iteration recomputed from the trainer's own log
    log = pd.read_csv(tmp_path / "models" / "dhbv" / "train_log.csv")
    per_iteration = log["epoch_wall_s"].sum() / log["iterations"].sum()
    cost_row = [r for r in md.split("### Computational cost")[1].splitlines() if r.startswith("| δHBV |")][0]
    assert f"| {per_iteration:.2f} |" in cost_row
    # streamflow table: the adjoint model's median NSE from its per-basin file
    per_basin = pd.read_csv(tmp_path / "eval" / "dhbv_adj" / "per_basin_metrics.csv", na_values=["n/a"])
    assert f"| {np.nanmedian(per_basin['NSE']):.3f} [" in [r for r in md.splitlines() if r.startswith("| δHBV.adj |")][0]
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["adjoint_minus_sequential.png", "ecdf_nse_kge.png", "hydrographs.png", "parameters.png",
                       "training_curves.png"]

    if find_chromium() is None and os.environ.get("HBVBENCH_ALLOW_NO_BROWSER") == "1":
        pytest.skip("no Chromium and HBVBENCH_ALLOW_NO_BROWSER=1")
    page = inspect_page(out / "leaderboard.html")
    folder = Path(os.environ.get("HBVBENCH_TEST_ARTIFACTS", repo_root / "reports" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    (tmp_path / "shot.png").write_bytes(page.screenshot)
    shutil.copy(tmp_path / "shot.png", folder / "leaderboard_ci_pipeline.png")
    assert page.console_errors == [] and page.failed_requests == []
    assert [u for u in page.requests if u != page.url and not u.startswith("data:")] == []
    assert len(page.images) == len(figures) and all(i["naturalWidth"] > 0 for i in page.images)
