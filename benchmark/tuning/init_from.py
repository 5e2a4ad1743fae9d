"""``hbvbench train --init-from REF``: start a model from another model's network (explorer -> fine-tune).

``REF`` is resolved in this order:

1. a path: a training folder (``<models_dir>/<model>``), its ``checkpoint.pt``, or a
   trial's ``network.pt``;
2. an MLflow run id of a tuning trial (its ``network/network.pt`` artifact);
3. an Optuna study name in the tuning storage (``tune.storage`` or the default SQLite file):
   its best completed trial, through that trial's MLflow run (or, when the run is not in
   the current MLflow store, the trial's local ``network.pt``).

The source's hyperparameters come along: for a trial, the ones the study sampled plus the
network shape (``hidden_size``, ``nmul``); for a training checkpoint, only the shape. The
fine-tune is trained with them (they override the profile and ``train:``), so
``train --model dhbv_adj --init-from dhbv-ci`` trains the adjoint model with the explorer's
learning rate, dropout, loss alpha... and starts from its weights.

Weights are copied tensor by tensor where names and shapes match. The output layer's rows
are matched by HBV parameter name and component (``k = i * nmul + m``) plus the two routing
rows, so ``dhbv -> dhbv_adj`` (the same 13 parameters) copies everything, and
``dhbv -> dhbv_adj_cr`` copies all rows but those of ``C`` and ``NDC``, which keep their
fresh initialization. A layer is transferred whole or not at all: different hidden sizes or
input counts cannot be mapped, so those layers are left initialized and the transfer report
says so; a transfer that copies nothing is an error.

Lineage: the fine-tune's MLflow run gets tags ``init_from`` (the reference as given),
``init_from.kind``, ``init_from.run_id``, ``init_from.study``, ``init_from.trial`` and
``init_from.transfer``.

Known difference: the fine-tune refits input normalization on its own training period,
which for an explorer from a study is longer than the trial's (the trial leaves out the
validation years), so the inputs the copied weights see are scaled slightly differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark import tracking
from benchmark.artifacts import CHECKPOINT_NAME
from benchmark.config import Params, load_params
from benchmark.errors import ConfigError
from benchmark.models.registry import get_model_spec
from benchmark.training.checkpoint import load_checkpoint, load_torch_file
from benchmark.training.network import N_ROUTING
from benchmark.training.trainer import TrainResult, start_mode, train_model
from benchmark.tuning.objective import NETWORK_ARTIFACT_DIR, NETWORK_FILE, NETWORK_FORMAT
from benchmark.tuning.space import STRUCTURAL_HYPERPARAMETERS, apply_hyperparams
from benchmark.tuning.study import make_storage, storage_url

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class InitSource:
    """A resolved ``--init-from`` reference."""

    reference: str
    kind: str  # "checkpoint", "network", "mlflow_run", "study"
    state_dict: dict[str, torch.Tensor]
    hyperparams: dict[str, Any]
    parameter_names: tuple[str, ...] | None
    nmul: int | None
    tags: dict[str, str] = field(default_factory=dict)

    def apply(self, params: Params) -> Params:
        """``params`` with the source's hyperparameters applied."""
        return apply_hyperparams(params, self.hyperparams, source=f"--init-from {self.reference}")

    def load_into(self, model: Any) -> dict[str, list[str]]:
        """Copy the weights into ``model.network`` (see the module docstring); return the transfer report.

        Raises
        ------
        ConfigError
            When no tensor could be transferred.
        """
        report = transfer_weights(model.network, model.layout, self.state_dict, self.parameter_names, self.nmul)
        if not report["copied"] and not report["rows"]:
            raise ConfigError(f"--init-from {self.reference}: no layer of the source network fits this model ({report})")
        self.tags["init_from.transfer"] = transfer_text(report)
        return report


def transfer_text(report: dict[str, list[str]]) -> str:
    """One line: which tensors were copied whole, by rows, or left initialized."""
    return "; ".join(f"{key}: {', '.join(values) or '-'}" for key, values in report.items())


def transfer_weights(
    network: torch.nn.Module,
    layout: Any,
    source: dict[str, torch.Tensor],
    source_names: tuple[str, ...] | None,
    source_nmul: int | None,
) -> dict[str, list[str]]:
    """Copy matching tensors of ``source`` into ``network``; output rows matched by parameter name.

    Returns
    -------
    dict
        ``copied`` (whole tensors), ``rows`` (output layer tensors copied row by row, with the
        parameters that were not), ``skipped`` (left as initialized).
    """
    target = network.state_dict()
    report: dict[str, list[str]] = {"copied": [], "rows": [], "skipped": []}
    new_state: dict[str, torch.Tensor] = {}
    layers: dict[str, list[str]] = {}
    for key in target:
        layers.setdefault(key.rsplit(".", 1)[0], []).append(key)
    for keys in layers.values():  # a layer is transferred whole (all its tensors) or not at all
        layer_state: dict[str, torch.Tensor] = {}
        layer_report: dict[str, list[str]] = {"copied": [], "rows": []}
        for key in keys:
            value, src = target[key], source.get(key)
            if src is not None and src.shape == value.shape:
                layer_state[key] = src.to(dtype=value.dtype)
                layer_report["copied"].append(key)
                continue
            mapped = _map_output_rows(key, value, src, layout, source_names, source_nmul)
            if mapped is None:
                break
            layer_state[key], missing = mapped
            layer_report["rows"].append(f"{key} (not: {', '.join(missing) or '-'})")
        else:
            new_state.update(layer_state)
            report["copied"] += layer_report["copied"]
            report["rows"] += layer_report["rows"]
            continue
        report["skipped"] += keys
    network.load_state_dict({**target, **new_state})
    return report


def _map_output_rows(
    key: str, value: torch.Tensor, src: torch.Tensor | None, layout: Any,
    source_names: tuple[str, ...] | None, source_nmul: int | None,
) -> tuple[torch.Tensor, list[str]] | None:
    """Rows of the output layer copied by (parameter, component), or None when they cannot be."""
    if src is None or not key.startswith("output_layer.") or source_names is None or source_nmul != layout.nmul:
        return None
    if src.shape[1:] != value.shape[1:] or src.shape[0] != len(source_names) * source_nmul + N_ROUTING:
        return None
    out = value.clone()
    nmul = layout.nmul
    missing: list[str] = []
    for i, name in enumerate(layout.parameter_names):
        if name not in source_names:
            missing.append(name)
            continue
        j = source_names.index(name)
        out[i * nmul : (i + 1) * nmul] = src[j * nmul : (j + 1) * nmul].to(dtype=value.dtype)
    out[-N_ROUTING:] = src[-N_ROUTING:].to(dtype=value.dtype)
    return out, missing


# ----------------------------------------------------------------------------- resolution


def _from_network_payload(payload: dict[str, Any], reference: str, kind: str) -> InitSource:
    hyperparams = dict(payload.get("hyperparams", {}))
    sampled = payload.get("sampled")
    if sampled is not None:
        hyperparams = {k: v for k, v in hyperparams.items() if k in sampled or k in STRUCTURAL_HYPERPARAMETERS}
    return InitSource(
        reference=reference,
        kind=kind,
        state_dict=payload["state_dict"],
        hyperparams=hyperparams,
        parameter_names=tuple(payload["parameter_names"]),
        nmul=int(payload["nmul"]),
        tags={"init_from": reference, "init_from.kind": kind, "init_from.model": str(payload.get("model"))},
    )


def _from_path(path: Path, reference: str) -> InitSource:
    if path.is_dir():
        path = path / NETWORK_FILE if (path / NETWORK_FILE).is_file() else path / CHECKPOINT_NAME
    payload = load_torch_file(path, "--init-from file")
    if isinstance(payload, dict) and payload.get("format") == NETWORK_FORMAT:
        return _from_network_payload(payload, reference, "network")
    ckpt = load_checkpoint(path)
    setup = ckpt.get("setup", {})
    names: tuple[str, ...] | None
    try:
        names = tuple(get_model_spec(ckpt["model"]).parameter_names)
    except KeyError:
        names = None
    return InitSource(
        reference=reference,
        kind="checkpoint",
        state_dict=ckpt["model_state"],
        hyperparams={k: setup[k] for k in STRUCTURAL_HYPERPARAMETERS if k in setup},
        parameter_names=names,
        nmul=setup.get("nmul"),
        tags={"init_from": reference, "init_from.kind": "checkpoint", "init_from.model": str(ckpt.get("model"))},
    )


def _from_mlflow_run(run_id: str, reference: str) -> InitSource | None:
    """The network artifact of MLflow run ``run_id``; None when the store has no such run/artifact."""
    import tempfile

    from mlflow.exceptions import MlflowException

    client = tracking.client()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, f"{NETWORK_ARTIFACT_DIR}/{NETWORK_FILE}", tmp)
        except (MlflowException, OSError) as exc:
            raise ConfigError(
                f"--init-from {reference}: MLflow run {run_id} has no {NETWORK_ARTIFACT_DIR}/{NETWORK_FILE} "
                f"artifact (is it a tuning trial that completed?): {exc}"
            ) from None
        payload = load_torch_file(Path(local), f"network artifact of MLflow run {run_id}")
    if not isinstance(payload, dict) or payload.get("format") != NETWORK_FORMAT:
        raise ConfigError(f"--init-from {reference}: the network artifact of MLflow run {run_id} is not a "
                          f"{NETWORK_FORMAT} file")
    source = _from_network_payload(payload, reference, "mlflow_run")
    source.tags.update(
        {
            "init_from.run_id": run_id,
            "init_from.study": run.data.tags.get("optuna.study", ""),
            "init_from.trial": run.data.tags.get("optuna.trial", ""),
        }
    )
    return source


def _from_study(name: str, reference: str, params: Params) -> InitSource | None:
    """The best trial of study ``name`` in the tuning storage; None when there is no such study."""
    import optuna
    from optuna.trial import TrialState

    url = storage_url(params)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(url))
    except KeyError:
        return None
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"--init-from {reference}: study {name!r} in {url} has no completed trial yet")
    best = study.best_trial
    run_id = best.user_attrs.get("mlflow_run_id")
    source = _from_mlflow_run(run_id, reference) if run_id else None
    if source is None:
        path = best.user_attrs.get("network_path")
        if not path or not Path(path).is_file():
            raise ConfigError(
                f"--init-from {reference}: the best trial {best.number} of study {name!r} has neither an MLflow run "
                f"in the current store nor a local network file ({path})"
            )
        source = _from_path(Path(path), reference)
    source.kind = "study"
    source.tags.update(
        {
            "init_from": reference,
            "init_from.kind": "study",
            "init_from.study": name,
            "init_from.trial": str(best.number),
            "init_from.run_id": str(run_id or ""),
            "init_from.storage": url.split("@")[-1],
        }
    )
    return source


def resolve_init_source(reference: str, params: Params) -> InitSource:
    """Resolve ``--init-from`` (path, MLflow run id, or study name; see the module docstring).

    Raises
    ------
    ConfigError
        When ``reference`` is none of them, naming where it was looked for.
    """
    path = Path(reference)
    if path.exists():
        return _from_path(path, reference)
    if _RUN_ID.match(reference):
        source = _from_mlflow_run(reference, reference)
        if source is not None:
            return source
    source = _from_study(reference, reference, params)
    if source is not None:
        return source

    raise ConfigError(
        f"--init-from {reference!r} is not a model folder or checkpoint, not an MLflow run in "
        f"{tracking.tracking_uri()}, and not a study in {storage_url(params)}"
    )


def resolve_init_from(reference: str, params: Params | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, hyperparams)`` of an ``--init-from`` reference (see :func:`resolve_init_source`)."""
    if params is None:
        params = load_params()
    source = resolve_init_source(reference, params)
    return source.state_dict, source.hyperparams


def train_from(params: Params, model_name: str, reference: str, **train_options: Any) -> TrainResult:
    """Train ``model_name`` starting from the network of ``reference`` (``hbvbench train --init-from``).

    The source is resolved (:func:`resolve_init_source`), its hyperparameters are applied to
    ``params``, and :func:`~benchmark.training.trainer.train_model` copies its weights into
    the new network and tags the run with its lineage.

    Parameters
    ----------
    params
        The configuration before the source's hyperparameters.
    model_name
        The registry name of the model to train.
    reference
        A model folder, checkpoint, trial network, MLflow run id or study name.
    **train_options
        Passed on to :func:`~benchmark.training.trainer.train_model` (``seed``, ``epochs``,
        ``restart``, ``dataset``, ``track`` ...).

    Raises
    ------
    ConfigError
        ``resume`` together with an init source, or a reference that resolves to nothing.
    """
    start_mode(bool(train_options.get("resume")), bool(train_options.get("restart")), init_given=True)
    source = resolve_init_source(reference, params)
    return train_model(source.apply(params), model_name, init=source, **train_options)
