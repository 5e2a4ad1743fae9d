"""MLflow as its users expect: every training logs an MLflow model (plain weights + the JSON that
rebuilds the network, no pickle) that ``hbvbench evaluate --from-mlflow`` and
``mlflow.pyfunc.load_model`` load back; runs record the prepared dataset as their input; our
experiments carry the tags that make ``mlflow ui`` show them as model training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import tracking
from benchmark.cli import main as cli_main
from benchmark.errors import DataError
from benchmark.training import mlflow_model
from benchmark.training.evaluate import build_trained, evaluate_model, load_trained
from benchmark.training.trainer import train_model
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params, write_params  # noqa: F401 - fixtures

MODEL = "dhbv_adj"  # the implicit scheme: the solver settings must come back with the weights
EPOCHS = 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    """One tracked ci training + evaluation of the adjoint model, in the session store."""
    folder = tmp_path_factory.mktemp("logged-model")
    params_path = write_params(folder, ci_data_dir, experiment="logged-models")
    params = ci_params(folder, ci_data_dir, experiment="logged-models")
    result = train_model(params, MODEL, epochs=EPOCHS, dataset=ci_dataset)
    _, summary = evaluate_model(params, MODEL, dataset=ci_dataset)
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    run = client.get_run(result.mlflow_run_id)
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    return {"folder": folder, "params_path": params_path, "params": params, "run": run, "models": models,
            "summary": summary}


def _numbers(summary: dict) -> dict[str, float]:
    return {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}


def test_a_training_logs_one_mlflow_model_on_its_run(trained):
    assert [m.name for m in trained["models"]] == [mlflow_model.LOGGED_MODEL_NAME]
    outputs = trained["run"].outputs.model_outputs
    assert [o.model_id for o in outputs] == [trained["models"][0].model_id]


def test_the_logged_weights_are_plain_tensors_and_the_description_is_json(trained, tmp_path):
    loaded, params, uri = mlflow_model.download(trained["run"].info.run_id, tmp_path)
    files = tmp_path.rglob(mlflow_model.WEIGHTS_FILE)
    weights = next(files)
    state = torch.load(weights, map_location="cpu", weights_only=True)  # no pickle needed to read it
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    description = json.loads((weights.parent / mlflow_model.CONFIG_FILE).read_text())
    assert description["model"] == MODEL and description["setup"]["profile"] == "ci"
    assert description["epochs"] == EPOCHS and description["params"]["train"]["experiment"] == "logged-models"
    checkpoint = load_trained(trained["params"], MODEL)
    assert set(state) == set(checkpoint.state_dict)
    assert all(torch.equal(state[k], checkpoint.state_dict[k]) for k in state)
    assert uri == f"models:/{trained['models'][0].model_id}"


@pytest.mark.parametrize("form", ["run id", "runs uri", "models uri", "model id"])
def test_evaluate_from_mlflow_rebuilds_the_model_and_reproduces_its_test_metrics(trained, form, tmp_path, capsys):
    run_id, model_id = trained["run"].info.run_id, trained["models"][0].model_id
    reference = {"run id": run_id, "runs uri": f"runs:/{run_id}/model", "models uri": f"models:/{model_id}",
                 "model id": model_id}[form]
    out = tmp_path / "out"
    assert cli_main(["--params", str(trained["params_path"]), "evaluate", "--from-mlflow", reference,
                     "--out", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    expected = _numbers(trained["summary"])
    assert set(expected) <= set(_numbers(again))
    for key, value in expected.items():
        assert again[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_evaluate_from_mlflow_writes_under_the_eval_dir_by_default(trained, capsys):
    model_id = trained["models"][0].model_id
    assert cli_main(["--params", str(trained["params_path"]), "evaluate", "--from-mlflow", model_id]) == 0
    out = trained["folder"] / "eval" / "from_mlflow" / model_id
    assert (out / "metrics.json").is_file() and (out / "predictions.nc").is_file()


@pytest.mark.parametrize("reference, message", [
    ("0123456789abcdef0123456789abcdef", "no such run"),
    ("not-a-reference", "expected an MLflow run id"),
    ("models:/m-00000000000000000000000000000000", "cannot download"),
])
def test_a_bad_reference_is_a_clear_error(trained, reference, message, capsys):
    assert cli_main(["--params", str(trained["params_path"]), "evaluate", "--from-mlflow", reference]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbvbench evaluate: error: ") and message in err and "Traceback" not in err


def test_a_run_without_a_model_says_so(trained, mlflow_tracking_uri, capsys):
    with tracking.run("logged-models", "no-model") as active:
        run_id = active.info.run_id
    assert cli_main(["--params", str(trained["params_path"]), "evaluate", "--from-mlflow", run_id]) == 2
    assert "logged no model named 'model'" in capsys.readouterr().err


def test_evaluate_needs_a_model_or_a_logged_one(trained, capsys):
    assert cli_main(["--params", str(trained["params_path"]), "evaluate"]) == 2
    assert "--model NAME" in capsys.readouterr().err


def test_mlflow_pyfunc_loads_the_model_and_simulates_a_prepared_dataset(trained, ci_dataset):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{trained['models'][0].model_id}")
    flow = model.predict(ci_dataset)
    assert list(flow.columns) == [str(b) for b in ci_dataset["basin"].values]
    assert len(flow) == ci_dataset.sizes["date"] and np.isfinite(flow.to_numpy()).all()
    direct = mlflow_model.simulate(load_trained(trained["params"], MODEL), trained["params"], ci_dataset)
    np.testing.assert_allclose(flow.to_numpy(), direct.to_numpy(), rtol=1e-10, atol=1e-12)


def test_a_bad_weights_file_is_refused_with_its_name(trained, tmp_path):
    checkpoint = load_trained(trained["params"], MODEL)
    files = mlflow_model.save_trained(checkpoint, trained["params"], tmp_path)
    torch.save({"network": build_trained(trained["params"], checkpoint)}, files["weights"])  # a pickled module
    with pytest.raises(DataError, match=str(files["weights"])):
        mlflow_model.load_saved(tmp_path)
    files["weights"].unlink()
    with pytest.raises(DataError, match="missing"):
        mlflow_model.load_saved(tmp_path)


# --------------------------------------------------------------------------- dataset input


def test_the_run_records_the_prepared_dataset_as_its_training_input(trained, ci_data_dir):
    inputs = trained["run"].inputs.dataset_inputs
    assert len(inputs) >= 1
    dataset = inputs[0].dataset
    assert dataset.name == "camels_us-ci"
    assert json.loads(dataset.source)["uri"] == str(ci_data_dir)
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["digest_from"] == "manifest.json"  # no dvc.lock for this temporary folder
    assert len(dataset.digest) == 32


def test_the_digest_is_the_md5_dvc_locked_for_the_data(tmp_path, mlflow_tracking_uri):
    data = tmp_path / "artifacts" / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text("{}")
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  prepare:\n    cmd: hbvbench prepare\n    outs:\n    - path: artifacts/data\n"
        "      md5: 0123456789abcdef0123456789abcdef.dir\n")
    with tracking.run("logged-models", "dataset-input") as active:
        tags = tracking.log_prepared_data(Path("artifacts/data"), "ci", repo=tmp_path)
    assert tags == {"digest_from": "dvc.lock", "dvc.md5": "0123456789abcdef0123456789abcdef.dir"}
    run = MlflowClient(tracking_uri=mlflow_tracking_uri).get_run(active.info.run_id)
    assert run.inputs.dataset_inputs[0].dataset.digest == "0123456789abcdef0123456789abcdef"


# --------------------------------------------------------------------------- experiments


def test_our_experiments_are_marked_as_model_training_with_a_test_metric_view(mlflow_tracking_uri):
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    created = client.get_experiment(tracking.ensure_experiment("kind-new"))
    assert created.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    view = json.loads(created.tags[tracking.SHARED_VIEW_TAG_PREFIX + tracking.RUNS_VIEW_KEY])
    assert "metrics.`test.NSE_median`" in view["selectedColumns"]
    older = client.create_experiment("kind-older")  # made before the tags existed
    assert tracking.ensure_experiment("kind-older") == older
    assert client.get_experiment(older).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_the_runs_table_address_asks_for_the_training_view():
    url = tracking.runs_table_url("http://127.0.0.1:5000/", "7")
    assert url == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                   f"&viewStateShareKey={tracking.RUNS_VIEW_KEY}")
