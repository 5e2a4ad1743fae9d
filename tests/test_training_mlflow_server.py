"""The ci profile of one model tracked on a real ``mlflow server`` (127.0.0.1), read back over REST."""

from __future__ import annotations

from benchmark.training.evaluate import evaluate_model
from benchmark.training.trainer import train_model
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params  # noqa: F401 - fixtures

EXPERIMENT = "training-on-server"


def test_ci_run_is_readable_through_the_rest_api(use_mlflow_server, tmp_path, ci_data_dir, ci_dataset):
    server = use_mlflow_server
    params = ci_params(tmp_path, ci_data_dir, experiment=EXPERIMENT)
    result = train_model(params, "dhbv", epochs=1, dataset=ci_dataset)
    _, summary = evaluate_model(params, "dhbv", dataset=ci_dataset)

    experiment = server.api("experiments/get-by-name", query={"experiment_name": EXPERIMENT})["experiment"]
    runs = server.api("runs/search", body={"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in runs] == [result.mlflow_run_id]
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"] == "dhbv-seed111111"

    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["model"] == "dhbv" and tags["scheme"] == "sequential" and tags["profile"] == "ci"
    assert tags["structure"] == "standard" and "git_commit" in tags
    run_params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert run_params["profile.hidden_size"] == "32" and run_params["train.alpha"] == "0.25"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test.NSE_median"] == summary["NSE_median"]
    assert metrics["train_wall_s"] > 0 and metrics["train_peak_memory_mb"] > 0

    history = server.api("metrics/get-history", query={"run_id": result.mlflow_run_id, "metric_key": "train_loss"})
    assert [m["step"] for m in history["metrics"]] == [1]
    assert history["metrics"][0]["value"] == result.history[0]["train_loss"]

    listed = server.api("artifacts/list", query={"run_id": result.mlflow_run_id})
    paths = {f["path"] for f in listed["files"]}
    assert {"per_basin_metrics.csv", "predictions.nc", "hydrographs.png", "metric_cdf.png", "training"} <= paths
