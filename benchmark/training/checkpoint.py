"""Checkpoints: what they hold, how they are read safely, and when one may be used.

A checkpoint (``checkpoint.pt``) holds only tensors and plain Python values (dicts, lists,
str, int, float, bool, None) and is read with ``torch.load(weights_only=True)``: a file that
would need to unpickle anything else (a crafted file that runs code when loaded, an object
of an older hbvbench) is refused before any of it is executed. Every ``.pt`` file hbvbench
reads (training checkpoints, tuning ``network.pt``) goes through :func:`load_torch_file`.

Format :data:`CHECKPOINT_FORMAT` (2) holds:

* ``model`` (registry name), ``seed``, ``epoch`` (last finished), ``epochs`` (planned total);
* ``setup``: the training setup (:func:`benchmark.training.trainer.setup_fingerprint`:
  profile, basins, periods, sizes, rates, the model's dynamic parameters) and ``code``, the
  sha256 of the model, solver and training sources;
* ``structure``: scheme, substeps, capillary rise, gradient, parameter names (and which are
  dynamic), nmul, number of inputs, and the shape of every network tensor;
* the weights, optimizer, sampler and random-number states, the loss history and the MLflow
  run id.

Format 1 (before the ``structure``/``code`` entries) is refused with a request to train again.
:func:`check_model` refuses a checkpoint of another model, structure or configuration with a
message that names what differs.
"""

from __future__ import annotations

import hashlib
from importlib import resources
import pickle
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import ConfigError, TrainingError

CHECKPOINT_FORMAT = 2
#: Source folders whose content decides what a training run computes (the DVC train stage's code deps).
CODE_FOLDERS: tuple[str, ...] = ("models", "solvers", "training")
#: Setup entries that must agree between a checkpoint and the configuration evaluating it.
EVALUATION_SETUP_KEYS: tuple[str, ...] = ("profile", "basins")


def code_fingerprint() -> str:
    """sha256 over the Python sources of ``benchmark/{models,solvers,training}`` (paths and bytes).

    The sources are those of the imported package (read as package resources), wherever it is
    installed: it is the code that computes, not a file of the repository being worked on.
    """
    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for relative, data in sorted(_python_sources(resources.files("benchmark") / folder, f"benchmark/{folder}")):
            digest.update(relative.encode())
            digest.update(data)
    return digest.hexdigest()


def _python_sources(folder: Any, prefix: str) -> list[tuple[str, bytes]]:
    """``(path, bytes)`` of every ``*.py`` below a package resource folder."""
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _python_sources(entry, f"{prefix}/{entry.name}")
        elif entry.name.endswith(".py"):
            found.append((f"{prefix}/{entry.name}", entry.read_bytes()))
    return found


def network_structure(model: Any, spec: Any, n_inputs: int) -> dict[str, Any]:
    """What a checkpoint's weights fit: scheme, parameters, sizes and every tensor's shape."""
    layout = model.layout
    described = {key: getattr(spec, key, None) for key in ("scheme", "substeps", "capillary_rise", "gradient")}
    return {
        **{key: value if value is None or isinstance(value, (bool, int)) else str(value)
           for key, value in described.items()},
        "parameter_names": list(layout.parameter_names),
        "dynamic_parameters": list(layout.dynamic_parameters),
        "nmul": int(layout.nmul),
        "n_inputs": int(n_inputs),
        "tensor_shapes": {name: list(value.shape) for name, value in model.network.state_dict().items()},
    }


def load_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure a TrainingError.

    Raises
    ------
    TrainingError
        Missing file; a file needing arbitrary unpickling (refused, nothing of it runs);
        a truncated or corrupt file. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no {what} at {path}; train the model first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(
            f"{what} {path} was refused: it holds more than tensors and plain values, and loading it could run "
            f"code ({first_line}); only load files hbvbench wrote, or train again"
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle/storage errors of a corrupt or truncated file
        raise TrainingError(f"{what} {path} cannot be read (corrupt or truncated?): {type(exc).__name__}: {exc}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (:func:`load_torch_file`) and check its format.

    Raises
    ------
    TrainingError
        Unreadable, refused, not an hbvbench checkpoint, or of an older format.
    """
    ckpt = load_torch_file(path)
    if not isinstance(ckpt, dict) or "format" not in ckpt or "model_state" not in ckpt:
        raise TrainingError(f"{path} is not an hbvbench checkpoint")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{path} is an hbvbench checkpoint of format {ckpt['format']!r}; this version reads format "
            f"{CHECKPOINT_FORMAT} only (older ones lack the structure and code fingerprint): train the model again"
        )
    return ckpt


def _differences(have: dict[str, Any], want: dict[str, Any], keys: Any) -> list[str]:
    out = []
    for key in keys:
        old, new = have.get(key), want.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list) and len(repr(old)) + len(repr(new)) > 100:
            lost = [x for x in old if x not in new]
            added = [x for x in new if x not in old]
            what = (f"only in the checkpoint {_short(lost)}, only now {_short(added)}" if lost or added
                    else "the same entries in another order")
            out.append(f"{key}: {what}")
        else:
            out.append(f"{key}: {_short(old)} in the checkpoint, {_short(new)} now")
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def setup_differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """``key: old in the checkpoint, new now`` for every setup entry that differs."""
    keys = sorted(set(have) | set(want))
    out = _differences(have, want, [k for k in keys if k != "code"])
    if have.get("code") != want.get("code"):
        out.append("code: the sources of benchmark/" + "/, ".join(CODE_FOLDERS) + "/ changed")
    return out


def check_model(ckpt: dict[str, Any], path: Path, *, model_name: str, structure: dict[str, Any],
                setup: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model, structure or configuration.

    Parameters
    ----------
    ckpt, path
        The checkpoint (:func:`load_checkpoint`) and where it was read.
    model_name
        The registry name it is used as.
    structure
        :func:`network_structure` of the model the weights go into.
    setup
        The current setup; its :data:`EVALUATION_SETUP_KEYS` entries must equal the checkpoint's.

    Raises
    ------
    ConfigError
        Naming each difference and what to do.
    """
    if ckpt.get("model") != model_name:
        raise ConfigError(
            f"{path} holds a {ckpt.get('model')!r} model, not {model_name!r} (copied from another model's folder?); "
            f"train {model_name} to get its own checkpoint"
        )
    differs = _differences(ckpt.get("structure", {}), structure, sorted(structure))
    if differs:
        raise ConfigError(f"{path} does not fit the {model_name} network built from this configuration: "
                          + "; ".join(differs) + f"; train {model_name} again")
    differs = _differences(ckpt.get("setup", {}), setup, EVALUATION_SETUP_KEYS)
    if differs:
        raise ConfigError(f"{path} was trained on another configuration: " + "; ".join(differs)
                          + f"; train {model_name} again with this configuration")


def check_complete(ckpt: dict[str, Any], path: Path, model_name: str) -> None:
    """TrainingError when the checkpoint is from a training that has not finished all its epochs."""
    epoch, epochs = ckpt.get("epoch"), ckpt.get("epochs")
    if isinstance(epoch, int) and isinstance(epochs, int) and epoch < epochs:
        raise TrainingError(
            f"{path} is from an unfinished training (epoch {epoch} of {epochs}; killed or crashed?): "
            f"run `hbvbench train --model {model_name}` again to finish it (it continues where it stopped)"
        )
