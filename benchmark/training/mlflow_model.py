"""A trained δHBV model as an MLflow model: logged by training, loaded back without pickle.

Each training logs one MLflow model named :data:`LOGGED_MODEL_NAME` on its run (MLflow 3
"Logged models"). It is a ``python_function`` model built from code
(``benchmark/training/mlflow_pyfunc.py``; MLflow runs that file, it unpickles nothing) with
three artifacts:

- ``weights.pt``: the network's ``state_dict``, tensors only (read with ``weights_only=True``);
- ``normalization.json``: the input normalization fitted on the training period;
- ``model.json``: what rebuilds the network and HBV variant: the registry name, seed, epochs,
  the training setup (profile, shape, dynamic parameters, solver settings) and the validated
  ``params.yaml`` the model was trained with.

``hbvbench evaluate --from-mlflow REF`` (REF: a run id, ``runs:/<run id>/model``,
``models:/<model id>`` or a model id ``m-...``) rebuilds it and evaluates it on the test period
of the profile it was trained on; ``mlflow.pyfunc.load_model(uri).predict(dataset)`` simulates a
prepared dataset (``benchmark.data.dataset.load_dataset``) and returns the routed streamflow
(mm/day) as a date x basin table. Requires the ``hbvbench`` package in the loading environment.
"""

from __future__ import annotations

import json
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmark import tracking
from benchmark.artifacts import NORMALIZATION_NAME
from benchmark.config import Params
from benchmark.errors import ConfigError, DataError
from benchmark.training.device import resolve_device, resolve_dtype
from benchmark.training.evaluate import TrainedNetwork, build_trained, model_spec, predict
from benchmark.training.normalization import NormalizationStats
from benchmark.training.series import series_tensors

LOGGED_MODEL_NAME = "model"
"""Name of the MLflow model every training logs on its run (``runs:/<run id>/model``)."""

MODEL_FORMAT = 1
WEIGHTS_FILE = "weights.pt"
NORMALIZATION_FILE = NORMALIZATION_NAME
CONFIG_FILE = "model.json"
ARTIFACT_KEYS = {"weights": WEIGHTS_FILE, "normalization": NORMALIZATION_FILE, "config": CONFIG_FILE}
"""pyfunc artifact key -> file name (MLflow stores them under ``<model>/artifacts/``)."""

PYFUNC_CODE = ("benchmark.training", "mlflow_pyfunc.py")
"""The models-from-code file MLflow copies into the model and runs to load it."""

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def save_trained(trained: TrainedNetwork, params: Params, folder: Path) -> dict[str, Path]:
    """Write the three model files into ``folder``; returns ``{artifact key: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({key: value.detach().cpu() for key, value in trained.state_dict.items()}, folder / WEIGHTS_FILE)
    trained.stats.save(folder / NORMALIZATION_FILE)
    config = {
        "format": MODEL_FORMAT,
        "model": trained.spec.name,
        "seed": trained.seed,
        "epochs": trained.epochs,
        "setup": trained.setup,
        "mlflow_run_id": trained.mlflow_run_id,
        "params": params.model_dump(mode="json"),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
    return {key: folder / name for key, name in ARTIFACT_KEYS.items()}


def load_saved(folder: Path) -> tuple[TrainedNetwork, Params]:
    """The trained network and the params it was trained with, from the files of :func:`save_trained`.

    Raises
    ------
    DataError
        A file is missing or is not an hbvbench model file (the message names it).
    """
    paths = {key: folder / name for key, name in ARTIFACT_KEYS.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(f"not an hbvbench MLflow model: missing {', '.join(missing)}")
    try:
        config = json.loads(paths["config"].read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{paths['config']} is not JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise DataError(f"{paths['config']} is not an hbvbench model description (format {MODEL_FORMAT})")
    try:
        state = torch.load(paths["weights"], map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read plain tensors means a bad file
        raise DataError(f"{paths['weights']} does not hold plain network weights: {exc}") from None
    params = Params.model_validate(config["params"])
    trained = TrainedNetwork(
        spec=model_spec(config["model"]),
        state_dict=state,
        stats=NormalizationStats.load(paths["normalization"]),
        setup=dict(config["setup"]),
        seed=int(config["seed"]),
        epochs=int(config["epochs"]),
        mlflow_run_id=config.get("mlflow_run_id"),
    )
    return trained, params


def log_trained_model(trained: TrainedNetwork, params: Params) -> str:
    """Log ``trained`` as the MLflow model :data:`LOGGED_MODEL_NAME` of the active run; returns its model id."""
    import mlflow

    code = resources.files(PYFUNC_CODE[0]).joinpath(PYFUNC_CODE[1])
    with tempfile.TemporaryDirectory(prefix="hbvbench-model-") as tmp, resources.as_file(code) as code_path:
        artifacts = save_trained(trained, params, Path(tmp))
        info = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=str(code_path),
            artifacts={key: str(path) for key, path in artifacts.items()},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "hbvbench"],
            metadata={"hbvbench_model": trained.spec.name, "profile": str(trained.setup.get("profile")),
                      "seed": trained.seed, "epochs": trained.epochs},
        )
    return info.model_id


def model_uri(reference: str) -> str:
    """The MLflow model URI of ``reference``: a run id (its newest :data:`LOGGED_MODEL_NAME`),
    ``runs:/...``, ``models:/...`` or a model id ``m-...``.

    Raises
    ------
    ConfigError
        When a run has no logged model, or ``reference`` is none of these.
    """
    reference = reference.strip()
    if reference.startswith(("models:/", "runs:/")):
        return reference
    if reference.startswith("m-"):
        return f"models:/{reference}"
    if _RUN_ID.match(reference):
        return f"models:/{_newest_model_of_run(reference)}"
    raise ConfigError(f"--from-mlflow {reference!r}: expected an MLflow run id, runs:/<run id>/{LOGGED_MODEL_NAME}, "
                      "models:/<model id> or a model id m-...")


def _newest_model_of_run(run_id: str) -> str:
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"--from-mlflow {run_id}: no such run in {tracking.tracking_uri()}") from None
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{LOGGED_MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    if not models:
        raise ConfigError(f"--from-mlflow {run_id}: the run logged no model named {LOGGED_MODEL_NAME!r} "
                          "(runs of hbvbench train log one when they finish)")
    return models[0].model_id


def download(reference: str, dest: Path) -> tuple[TrainedNetwork, Params, str]:
    """Download the model of ``reference`` (see :func:`model_uri`) into ``dest`` and read it.

    Returns
    -------
    trained, params, uri
        The network, the params it was trained with, and the resolved model URI.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking.configure()
    uri = model_uri(reference)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"--from-mlflow {reference}: cannot download {uri} from {tracking.tracking_uri()}: "
                          f"{exc}") from None
    trained, params = load_saved(local / "artifacts")
    return trained, params, uri


def simulate(trained: TrainedNetwork, params: Params, dataset: Any) -> Any:
    """Routed streamflow (mm/day) of ``trained`` over every day and basin of a prepared dataset.

    Returns
    -------
    pandas.DataFrame
        Index ``date``, one column per basin.
    """
    cpu = params.model_copy(update={"train": params.train.model_copy(update={"device": "cpu"})})
    model = build_trained(cpu, trained)
    data = series_tensors(dataset, trained.stats, resolve_device("cpu"), resolve_dtype(params.train.dtype))
    last = len(data.dates) - 1
    series, _, _ = predict(model, data, 0, 0, last, max(1, params.active.batch_basins))
    return pd.DataFrame(series["Q"], index=pd.Index(data.dates, name="date"), columns=list(data.basins))
