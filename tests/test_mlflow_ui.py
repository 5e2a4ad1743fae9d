"""What an MLflow user sees: ``hbvbench ui`` starts a real ``mlflow ui`` on the runs of a δHBV
training, the LSTM and SAC-SMA baselines, and its printed address opens, in headless Chromium,
the runs table of the model-training view with every model's test NSE, KGE, FLV and FHV side by
side (the screenshot is kept in the test's folder and its path printed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.report.browser import find_chromium, open_app_page
from benchmark.training.evaluate import evaluate_model
from benchmark.training.trainer import train_model
from tests.conftest import MlflowServer, _free_port, _stop_process_group, _wait_until_healthy
from tests.limits import SERVER_START_S
from tests.training_fixtures import ci_data_dir, ci_dataset, write_params  # noqa: F401 - fixtures

EXPERIMENT = "ui-runs-table"


@pytest.fixture(scope="module")
def three_model_kinds(tmp_path_factory, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    """A δHBV training + evaluation, the LSTM baseline and the SAC-SMA baseline, tracked."""
    from baselines.commands import run_lstm, run_sacsma
    from benchmark.config import load_params

    folder = tmp_path_factory.mktemp("ui-runs")
    params_path = write_params(folder, ci_data_dir, experiment=EXPERIMENT)
    params = load_params(params_path)
    params = params.model_copy(update={"baselines": params.baselines.model_copy(
        update={"out_dir": folder / "baselines"})})
    train_model(params, "dhbv", epochs=1, dataset=ci_dataset)
    evaluate_model(params, "dhbv", dataset=ci_dataset)
    run_lstm(params)
    run_sacsma(params)
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {run.data.tags["model"]: run for run in client.search_runs([experiment.experiment_id])}
    return {"params_path": params_path, "runs": runs, "experiment_id": experiment.experiment_id}


@pytest.mark.slow
def test_every_model_kind_logs_the_same_test_metric_names(three_model_kinds):
    runs = three_model_kinds["runs"]
    assert set(runs) == {"dhbv", "lstm_nh", "sacsma"}
    shown = {tracking.test_metric_name(key) for key in tracking.RUNS_TABLE_METRICS}
    for model, run in runs.items():
        assert shown <= set(run.data.metrics), model
        assert run.inputs.dataset_inputs[0].dataset.name == "camels_us-ci", model


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on PATH")
def test_hbvbench_ui_opens_the_runs_table_with_every_models_test_metrics(three_model_kinds, mlflow_tracking_uri,
                                                                          tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_tracking_uri}
    port = _free_port()
    command = [sys.executable, "-m", "benchmark.cli", "--params", str(three_model_kinds["params_path"]), "ui",
               "--port", str(port), "--experiment", EXPERIMENT]
    log_path = tmp_path / "ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        first_line = process.stdout.readline().decode()
        url = re.search(r"(http://\S+)", first_line).group(1)
        assert url == tracking.runs_table_url(f"http://127.0.0.1:{port}", three_model_kinds["experiment_id"])
        server = MlflowServer(url=f"http://127.0.0.1:{port}", backend_uri=mlflow_tracking_uri,
                              artifacts_dir=tmp_path, log_path=log_path)
        _wait_until_healthy(server, process)
        runs = three_model_kinds["runs"]
        names = [run.info.run_name for run in runs.values()]
        ready = " && ".join(f"document.body.innerText.includes({json.dumps(name)})" for name in names)
        page = open_app_page(url, ready, width=2600, height=900, timeout=SERVER_START_S)
    finally:
        _stop_process_group(process)
    screenshot = tmp_path / "mlflow_runs_table.png"
    screenshot.write_bytes(page.screenshot)
    print(f"\nscreenshot of the MLflow runs table: {screenshot}")

    assert "Model training" in page.text and "Runs" in page.text
    for key in tracking.RUNS_TABLE_METRICS:
        assert tracking.test_metric_name(key) in page.text  # a column of the table
    for model, run in runs.items():
        assert run.info.run_name in page.text
        for key in ("NSE_median", "KGE_median"):
            value = run.data.metrics[tracking.test_metric_name(key)]
            assert repr(value) in page.text, (model, key, value)  # the UI prints the stored double
    assert "camels_us-ci" in page.text  # the dataset input column
    assert "model" in page.text.split("dhbv-seed", 1)[1]  # its logged model, in the Models column


@pytest.mark.slow
def test_with_a_tracking_server_hbvbench_ui_prints_the_address_on_it(use_mlflow_server, capsys):
    from benchmark.cli import main as cli_main

    assert cli_main(["ui", "--experiment", EXPERIMENT + "-server"]) == 0
    experiment = MlflowClient(tracking_uri=use_mlflow_server.url).get_experiment_by_name(EXPERIMENT + "-server")
    assert capsys.readouterr().out.strip().endswith(tracking.runs_table_url(use_mlflow_server.url,
                                                                            experiment.experiment_id))
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.TRAINING_EXPERIMENT_KIND
