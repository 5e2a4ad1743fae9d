"""Specification of benchmark.tracking: where MLflow runs go and what each run records.

Runs read back through ``MlflowClient`` (the session's SQLite store) and, in the server
test, through a real ``mlflow server``'s REST API with plain urllib.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from benchmark import tracking
from benchmark.config import load_params
from benchmark.errors import ConfigError
from tests.limits import HANG_GUARD_S

BASIN = "01022500"


@dataclasses.dataclass(frozen=True)
class ModelSpecLike:
    """The fields of ``benchmark.models.registry.ModelSpec`` that tracking reads."""

    name: str
    scheme: str
    substeps: int
    capillary_rise: bool
    gradient: str


DHBV_ADJ_CR = ModelSpecLike("dhbv_adj_cr", "implicit", 1, True, "adjoint")


def _experiment(prefix: str) -> str:
    """A fresh experiment name: the session store is shared by all tests."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def reference_table(reference_dir: Path) -> pd.DataFrame:
    """The authors' metric table for basin 01022500 (a real per-series metrics table)."""
    return pd.read_csv(reference_dir / "metrics_reference.csv", index_col="series")


@pytest.fixture(scope="module")
def reference_predictions(reference_dir: Path) -> xr.Dataset:
    """The authors' implicit-HBV run for basin 01022500 in the predictions.nc layout."""
    sim = pd.read_csv(reference_dir / "imp_hbv.csv", index_col="date", parse_dates=True)
    obs = pd.read_csv(reference_dir / "forcing_01022500.csv", index_col="date", parse_dates=True)
    as_2d = lambda series: (("basin", "date"), series.to_numpy(dtype="float32")[None, :])  # noqa: E731
    return xr.Dataset(
        {"qsim": as_2d(sim["Q_routed"]), "qobs": as_2d(obs["qobs"]), "Q2": as_2d(sim["Q2"])},
        coords={"basin": [BASIN], "date": sim.index.to_numpy()},
        attrs={"model": "reference_imp_hbv"},
    )


# --------------------------------------------------------------------------------------
# Where runs are stored
# --------------------------------------------------------------------------------------


def test_default_store_is_sqlite_at_an_absolute_path_under_the_repo(monkeypatch, repo_root):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == f"sqlite:///{repo_root}/mlflow.db"
    assert tracking.tracking_uri().startswith("sqlite:////")
    assert tracking.artifact_root() == repo_root / "mlartifacts"


def test_a_relative_sqlite_uri_is_made_absolute_and_artifacts_sit_next_to_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///runs/bench.db")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/runs/bench.db"
    assert tracking.artifact_root() == tmp_path / "runs" / "mlartifacts"


@pytest.mark.parametrize("uri", ["./mlruns", "mlruns", "/tmp/mlruns", "file:///tmp/mlruns"])
def test_the_legacy_file_store_is_refused_with_a_pointer_to_sqlite(monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ConfigError, match="legacy file store.*sqlite:///"):
        tracking.tracking_uri()


def test_a_tracking_server_uri_is_used_as_given_and_decides_artifact_locations(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    assert tracking.artifact_root() is None


def test_importing_tracking_does_not_import_mlflow(repo_root):
    code = "import sys, benchmark.tracking; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------------------
# Params and tags
# --------------------------------------------------------------------------------------


def test_params_yaml_flattens_to_dotted_keys_with_json_lists(repo_root):
    params = load_params(repo_root / "params.yaml")
    flat = tracking.flatten_params(params)
    ci = params.profiles["ci"]
    assert flat["profile"] == params.profile
    assert flat["data.raw_dir"] == "data/camels_us"
    assert json.loads(flat["profiles.ci.basins"]) == ci.basins
    assert flat["profiles.ci.train.start"] == ci.train.start.isoformat()
    assert flat["profiles.ci.epochs"] == str(ci.epochs)
    assert flat["data.modis_et_dir"] == "None"


def test_flattening_cleans_keys_and_truncates_values_to_mlflow_limits():
    flat = tracking.flatten_params(
        {
            "solver": {"newton tol (mm)": 1e-6, "options": {}},
            "basins@test": ["01022500", "01031500"],
            "start": dt.date(1980, 10, 1),
            "weights": np.array([0.25, 0.75]),
            "note": "x" * 10_000,
            "k" * 300: 1,
        },
        prefix="train",
    )
    assert flat["train.solver.newton tol _mm_"] == "1e-06"
    assert flat["train.solver.options"] == "{}"
    assert json.loads(flat["train.basins_test"]) == ["01022500", "01031500"]
    assert flat["train.start"] == "1980-10-01"
    assert json.loads(flat["train.weights"]) == [0.25, 0.75]
    assert len(flat["train.note"]) == tracking.MAX_PARAM_VALUE_LENGTH
    assert flat["train.note"].endswith(tracking.TRUNCATION_MARK)
    assert all(len(key) <= tracking.MAX_KEY_LENGTH for key in flat)


def test_standard_tags_describe_the_model_profile_and_code_state(repo_root):
    tags = tracking.standard_tags("ci", DHBV_ADJ_CR, repo=repo_root)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True).stdout.strip()
    assert tags["git_commit"] == head
    assert tags["git_dirty"] in ("true", "false")
    assert tags["profile"] == "ci"
    assert tags["model"] == "dhbv_adj_cr"
    assert tags["scheme"] == "implicit"
    assert tags["gradient"] == "adjoint"
    assert tags["structure"] == "capillary_rise"
    assert tags["substeps"] == "1"
    assert tracking.standard_tags("ci", dataclasses.replace(DHBV_ADJ_CR, capillary_rise=False))["structure"] == "standard"


def test_standard_tags_accept_the_real_model_registry(repo_root):
    registry = pytest.importorskip("benchmark.models.registry")
    spec = registry.get_model_spec("dhbv_euler1h")
    tags = tracking.standard_tags("default", spec, repo=repo_root)
    assert tags["model"] == "dhbv_euler1h"
    assert tags["scheme"] == spec.scheme
    assert tags["substeps"] == str(spec.substeps)
    assert tags["structure"] in ("capillary_rise", "standard")


def test_a_run_inside_a_dvc_experiment_is_tagged_with_its_name(repo_root, monkeypatch):
    monkeypatch.delenv(tracking.DVC_EXPERIMENT_ENV, raising=False)
    assert tracking.DVC_EXPERIMENT_TAG not in tracking.standard_tags("ci", repo=repo_root)
    monkeypatch.setenv(tracking.DVC_EXPERIMENT_ENV, "lr-half")  # what `dvc exp run` sets for its stages
    assert tracking.standard_tags("ci", repo=repo_root)[tracking.DVC_EXPERIMENT_TAG] == "lr-half"


OPEN_STORE = """
import sys, time
from pathlib import Path
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
from benchmark import tracking
tracking.ensure_experiment("first-open")
print("ok")
"""


def test_processes_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path, monkeypatch):
    """`dvc queue start -j 2`: two stages create the tables of a new store at the same moment."""
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'new.db'}"}
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(go)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    try:
        time.sleep(3.0)  # let them import (no verdict depends on it: the barrier only makes a race likely)
        go.touch()
        outputs = [worker.communicate(timeout=HANG_GUARD_S)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0, 0], "\n".join(outputs)
    assert _client(env["MLFLOW_TRACKING_URI"]).get_experiment_by_name("first-open") is not None


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=HANG_GUARD_S)


def test_git_state_names_the_commit_and_flags_uncommitted_changes(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    state = tracking.git_state(tmp_path)
    assert len(state["git_commit"]) == 40 and state["git_dirty"] == "false"
    (tmp_path / "untracked.txt").write_text("not part of the code\n")
    assert tracking.git_state(tmp_path)["git_dirty"] == "false"
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    _git(tmp_path, "add", "dvc.lock")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "lock")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # rewritten by dvc repro itself
    assert tracking.git_state(tmp_path)["git_dirty"] == "false"
    (tmp_path / "model.py").write_text("x = 2\n")
    assert tracking.git_state(tmp_path)["git_dirty"] == "true"


def test_git_state_is_empty_outside_a_repository(tmp_path):
    assert tracking.git_state(tmp_path) == {}


def _dvc(project: Path, *args: str) -> None:
    dvc = Path(sys.executable).parent / "dvc"
    done = subprocess.run([str(dvc), *args], cwd=project, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr


def test_data_hash_is_the_md5_dvc_locked_for_the_prepared_data(tmp_path, reference_dir):
    """A real DVC project: the tag follows the prepared data's content, not its path or time."""
    assert tracking.dvc_data_hash(tmp_path) is None  # no dvc.lock yet
    shutil.copy(reference_dir / "forcing_01022500.csv", tmp_path / "raw.csv")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  prepare:\n"
        "    cmd: mkdir -p artifacts/data && cp raw.csv artifacts/data/camels.csv\n"
        "    deps: [raw.csv]\n"
        "    outs: [artifacts/data]\n"
    )
    _dvc(tmp_path, "init", "--no-scm", "-q")
    _dvc(tmp_path, "repro", "-q")
    first = tracking.dvc_data_hash(tmp_path)
    assert first is not None and first.endswith(".dir") and len(first) == 36
    assert tracking.dvc_data_hash(tmp_path, "artifacts/data") == first
    assert tracking.dvc_data_hash(tmp_path, tmp_path / "artifacts" / "data" / "camels.csv") == first
    assert tracking.dvc_data_hash(tmp_path, "elsewhere") is None
    assert tracking.standard_tags("ci", repo=tmp_path)["data_md5"] == first

    with (tmp_path / "raw.csv").open("a") as raw:
        raw.write("2010-01-01,0,0,0,0,0,0\n")
    _dvc(tmp_path, "repro", "-q")
    assert tracking.dvc_data_hash(tmp_path) not in (None, first)


# --------------------------------------------------------------------------------------
# Runs on the session's SQLite store
# --------------------------------------------------------------------------------------


def test_a_run_records_params_tags_curves_tables_datasets_and_figures(
    mlflow_tracking_uri, repo_root, reference_table, reference_predictions, tmp_path
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiment = _experiment("record")
    params = load_params(repo_root / "params.yaml")
    train_loss = [1.31, 0.92, 0.75, 0.70]
    with tracking.run(experiment, "dhbv_adj_cr-seed111111", tags=tracking.standard_tags("ci", DHBV_ADJ_CR),
                      params=params) as active:
        run_id = active.info.run_id
        assert tracking.log_metrics_series("train_loss", train_loss) == 4
        tracking.log_dataframe(reference_table, "metrics/per_basin_metrics.csv")
        tracking.log_dataset(reference_predictions, "predictions")
        fig, ax = plt.subplots()
        reference_predictions["qsim"].sel(basin=BASIN).plot(ax=ax)
        tracking.log_figure(fig, "plots/hydrograph_01022500.png")
        plt.close(fig)
        system = tracking.log_system_metrics(wall_time_s=12.5)

    client = _client(mlflow_tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "dhbv_adj_cr-seed111111"
    assert run.data.params["profiles.ci.basins"] == json.dumps(params.profiles["ci"].basins)
    assert run.data.params["profile"] == params.profile
    assert run.data.tags["structure"] == "capillary_rise" and run.data.tags["profile"] == "ci"

    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(enumerate(train_loss))
    assert run.data.metrics["wall_time_s"] == 12.5
    assert run.data.metrics["peak_memory_mb"] == pytest.approx(system["peak_rss_mb"])
    assert 10 < run.data.metrics["peak_rss_mb"] < 1_000_000

    # Artifacts land next to the store, never in ./mlruns of the current directory.
    store_dir = Path(mlflow_tracking_uri[len("sqlite:///"):]).parent
    assert run.info.artifact_uri.startswith((store_dir / "mlartifacts").as_uri())
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    table = pd.read_csv(local / "metrics" / "per_basin_metrics.csv", index_col="series")
    pd.testing.assert_frame_equal(table, reference_table)
    with xr.open_dataset(local / "predictions.nc") as back:
        xr.testing.assert_identical(back.load(), reference_predictions)
    png = (local / "plots" / "hydrograph_01022500.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_crashing_body_ends_the_run_failed_with_the_traceback_logged(mlflow_tracking_uri, tmp_path):
    import mlflow

    experiment = _experiment("crash")
    with pytest.raises(FloatingPointError, match="non-finite loss at epoch 3"):
        with tracking.run(experiment, "dhbv-seed1", params={"epochs": 5}) as active:
            run_id = active.info.run_id
            raise FloatingPointError(f"non-finite loss at epoch 3, basins {BASIN}")
    assert mlflow.active_run() is None

    client = _client(mlflow_tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == f"FloatingPointError: non-finite loss at epoch 3, basins {BASIN}"
    error = Path(client.download_artifacts(run_id, "error.txt", str(tmp_path))).read_text()
    assert error.startswith("Traceback (most recent call last)")
    assert 'raise FloatingPointError(f"non-finite loss at epoch 3' in error
    assert run.data.params["epochs"] == "5"


def test_an_interrupted_run_ends_killed(mlflow_tracking_uri):
    experiment = _experiment("interrupt")
    with pytest.raises(KeyboardInterrupt):
        with tracking.run(experiment, "dhbv-seed1") as active:
            run_id = active.info.run_id
            raise KeyboardInterrupt
    run = _client(mlflow_tracking_uri).get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"] == "KeyboardInterrupt"


def test_nested_runs_are_children_of_the_active_run_and_fail_on_their_own(mlflow_tracking_uri):
    experiment = _experiment("nested")
    with tracking.run(experiment, "tuning") as parent:
        with tracking.run(experiment, "trial-0", nested=True, params={"lr": 1.0}) as child:
            tracking.log_metrics_series("val_loss", [0.9, 0.8])
            ok_child = child.info.run_id
        with pytest.raises(ValueError):
            with tracking.run(experiment, "trial-1", nested=True) as child:
                failed_child = child.info.run_id
                raise ValueError("trial diverged")
        parent_id = parent.info.run_id

    client = _client(mlflow_tracking_uri)
    assert client.get_run(parent_id).info.status == "FINISHED"
    for run_id, status in ((ok_child, "FINISHED"), (failed_child, "FAILED")):
        run = client.get_run(run_id)
        assert run.info.status == status
        assert run.data.tags["mlflow.parentRunId"] == parent_id
    assert "error" not in client.get_run(parent_id).data.tags


def test_runs_left_open_inside_a_crashing_run_are_closed_with_it(mlflow_tracking_uri):
    import mlflow

    experiment = _experiment("leftopen")
    with pytest.raises(RuntimeError):
        with tracking.run(experiment, "outer") as outer:
            inner = mlflow.start_run(nested=True, run_name="inner-not-closed")
            raise RuntimeError("crash while a child run is open")
    assert mlflow.active_run() is None
    client = _client(mlflow_tracking_uri)
    assert client.get_run(outer.info.run_id).info.status == "FAILED"
    assert client.get_run(inner.info.run_id).info.status == "FAILED"


def test_a_run_can_be_reopened_to_continue_its_curves(mlflow_tracking_uri):
    experiment = _experiment("resume")
    with tracking.run(experiment, "dhbv-seed1", params={"epochs": 4}) as first:
        tracking.log_metrics_series("train_loss", [1.0, 0.8])
    with tracking.run(experiment, "ignored", params={"epochs": 4}, run_id=first.info.run_id):
        tracking.log_metrics_series("train_loss", [0.7, 0.65], step_start=2)
    client = _client(mlflow_tracking_uri)
    history = sorted(client.get_metric_history(first.info.run_id, "train_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.8), (2, 0.7), (3, 0.65)]
    assert client.get_run(first.info.run_id).info.run_name == "dhbv-seed1"


def test_reopening_a_run_with_changed_params_is_refused_and_leaves_it_untouched(mlflow_tracking_uri):
    experiment = _experiment("resume-changed")
    with tracking.run(experiment, "dhbv-seed1", params={"train": {"epochs": 4, "lr": 1.0}}) as first:
        pass
    with pytest.raises(tracking.TrackingError, match=r"train.epochs: '4' -> '8'"):
        with tracking.run(experiment, "dhbv-seed1", params={"train": {"epochs": 8, "lr": 1.0}}, run_id=first.info.run_id):
            pytest.fail("the body must not run")
    run = _client(mlflow_tracking_uri).get_run(first.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"train.epochs": "4", "train.lr": "1.0"}


def test_summary_metrics_skip_values_that_are_not_numbers(mlflow_tracking_uri):
    summary = {"NSE_median": 0.71, "ET_NSE_median": "n/a", "BFI_r": math.nan, "n_basins": 35, "KGE": {"median": 0.7}}
    with tracking.run(_experiment("summary"), "dhbv") as active:
        skipped = tracking.log_metrics_dict(summary, prefix="test")
    assert skipped == ["test.ET_NSE_median", "test.BFI_r"]
    run = _client(mlflow_tracking_uri).get_run(active.info.run_id)
    assert run.data.metrics == {"test.NSE_median": 0.71, "test.n_basins": 35.0, "test.KGE.median": 0.7}
    assert run.data.tags["metrics_not_available"] == "test.ET_NSE_median,test.BFI_r"


def test_logging_outside_a_run_is_an_error_not_a_stray_run(mlflow_tracking_uri, reference_table):
    import mlflow

    before = len(_client(mlflow_tracking_uri).search_runs(["0"]))
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        tracking.log_dataframe(reference_table, "table.csv")
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        tracking.log_metrics_series("loss", [1.0])
    assert mlflow.active_run() is None
    assert len(_client(mlflow_tracking_uri).search_runs(["0"])) == before


def test_query_runs_tabulates_an_experiment_for_the_report(mlflow_tracking_uri):
    experiment = _experiment("query")
    for model, nse in (("dhbv", 0.70), ("dhbv_adj", 0.72)):
        with tracking.run(experiment, model, tags={"model": model, "profile": "ci"}, params={"seed": 111111}):
            tracking.log_metrics_dict({"NSE_median": nse})
    with pytest.raises(ZeroDivisionError):
        with tracking.run(experiment, "broken", tags={"model": "dhbv_rk4", "profile": "ci"}):
            1 / 0

    runs = tracking.query_runs(experiment)
    assert len(runs) == 3
    assert runs["tags.mlflow.runName"].tolist() == ["broken", "dhbv_adj", "dhbv"]  # newest first
    finished = tracking.query_runs(experiment, "attributes.status = 'FINISHED'")
    assert dict(zip(finished["tags.model"], finished["metrics.NSE_median"])) == {"dhbv": 0.70, "dhbv_adj": 0.72}
    assert set(finished["params.seed"]) == {"111111"}


def test_query_runs_of_a_missing_experiment_says_which(mlflow_tracking_uri):
    with pytest.raises(tracking.TrackingError, match="no MLflow experiment named 'never-ran'"):
        tracking.query_runs("never-ran")
    assert tracking.query_runs("never-ran", missing_ok=True).empty


# --------------------------------------------------------------------------------------
# A real tracking server, read back through its REST API
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_runs_logged_to_a_real_mlflow_server_read_back_through_rest(use_mlflow_server, reference_table):
    server = use_mlflow_server
    experiment = _experiment("server")
    with tracking.run(experiment, "dhbv-seed111111", tags={"profile": "ci", "model": "dhbv"},
                      params={"train": {"epochs": 2, "basins": [BASIN]}}) as active:
        run_id = active.info.run_id
        tracking.log_metrics_series("train_loss", [1.2, 0.9])
        tracking.log_dataframe(reference_table, "per_basin_metrics.csv")
    with pytest.raises(ValueError):
        with tracking.run(experiment, "dhbv-crash") as crashed:
            raise ValueError("bad basin")

    run = server.api("runs/get", query={"run_id": run_id})["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"train.epochs": "2", "train.basins": json.dumps([BASIN])}
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["train_loss"] == 0.9
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["profile"] == "ci"

    experiment_id = run["info"]["experiment_id"]
    found = server.api("runs/search", body={"experiment_ids": [experiment_id], "filter": "tags.model = 'dhbv'"})
    assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]
    failed = server.api("runs/search", body={"experiment_ids": [experiment_id], "filter": "attributes.status = 'FAILED'"})
    assert [r["info"]["run_id"] for r in failed["runs"]] == [crashed.info.run_id]

    # Artifacts went through the server into its --artifacts-destination.
    listed = server.api("artifacts/list", query={"run_id": run_id})
    assert [f["path"] for f in listed["files"]] == ["per_basin_metrics.csv"]
    stored = list(server.artifacts_dir.rglob("per_basin_metrics.csv"))
    assert len(stored) == 1
    pd.testing.assert_frame_equal(pd.read_csv(stored[0], index_col="series"), reference_table)
    assert list(server.artifacts_dir.rglob("error.txt"))
