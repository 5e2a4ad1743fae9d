"""Hyperparameters written into a configuration: the values of ``--hyperparams``, of an
``--init-from`` source, of a tuning trial, or those a checkpoint was trained with.

:func:`apply_hyperparams` writes them into the active profile or the ``train:`` section and
re-validates the whole configuration, so an impossible value fails with the key's name
exactly as a bad ``params.yaml`` would.

The names and where each lives (active profile or ``train:``) are
:data:`benchmark.config.TUNABLE_HYPERPARAMETERS`; the search over them is
:mod:`benchmark.tuning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmark.config import TUNABLE_HYPERPARAMETERS, Params, format_validation_error, read_yaml
from benchmark.errors import ConfigError


#: Hyperparameters that fix the network's shape: always carried from an explorer to a fine-tune.
STRUCTURAL_HYPERPARAMETERS = ("hidden_size", "nmul")


def parse_dynamic_parameters(value: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``"BETA,BETAET"`` -> ``["BETA", "BETAET"]``; ``""`` -> ``[]``; a list passes; None passes."""
    if value is None:
        return None
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return [str(name) for name in value]


def _format_error(err: ValidationError, source: str) -> str:
    items = format_validation_error(source, err).splitlines()[1:]
    return f"hyperparameters from {source} give an invalid configuration: " + "; ".join(i.strip() for i in items)


def apply_hyperparams(
    params: Params,
    hyperparams: Mapping[str, Any],
    *,
    source: str = "hyperparameters",
    profile_updates: Mapping[str, Any] | None = None,
    train_updates: Mapping[str, Any] | None = None,
) -> Params:
    """A copy of ``params`` with ``hyperparams`` written into the active profile / ``train:``.

    Parameters
    ----------
    params
        The configuration to start from.
    hyperparams
        Name -> value, names from :data:`~benchmark.config.TUNABLE_HYPERPARAMETERS`.
    source
        Where the values come from (named in error messages).
    profile_updates, train_updates
        Further raw field updates of the active profile and ``train:`` (e.g. a shortened
        training period, a trial's output folder).

    Returns
    -------
    Params
        Re-validated configuration.

    Raises
    ------
    ConfigError
        Unknown hyperparameter names, or values the configuration rejects.
    """
    unknown = sorted(set(hyperparams) - set(TUNABLE_HYPERPARAMETERS))
    if unknown:
        raise ConfigError(f"{source}: unknown hyperparameters {unknown}; known: {sorted(TUNABLE_HYPERPARAMETERS)}")
    raw = params.model_dump(mode="python")
    profile = dict(raw["profiles"][params.profile])
    train = dict(raw["train"])
    for name, value in hyperparams.items():
        if name == "dynamic_parameters":
            value = parse_dynamic_parameters(value)
        (profile if TUNABLE_HYPERPARAMETERS[name] == "profile" else train)[name] = value
    profile.update(profile_updates or {})
    train.update(train_updates or {})
    raw["profiles"] = {**raw["profiles"], params.profile: profile}
    raw["train"] = train
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def check_dynamic_parameters(params: Params, spec: Any, source: str) -> None:
    """ConfigError when ``train.dynamic_parameters`` names parameters the model does not have."""
    dynamic = params.train.dynamic_parameters
    if dynamic is None:
        return
    stray = [name for name in dynamic if name not in spec.parameter_names]
    if stray:
        raise ConfigError(
            f"{source}: dynamic_parameters {stray} are not parameters of {spec.name} ({', '.join(spec.parameter_names)})"
        )


def current_hyperparams(params: Params, names: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """The values ``params`` gives the hyperparameters ``names`` (default: all tunable ones)."""
    out: dict[str, Any] = {}
    for name in names if names is not None else tuple(TUNABLE_HYPERPARAMETERS):
        section = params.active if TUNABLE_HYPERPARAMETERS[name] == "profile" else params.train
        value = getattr(section, name)
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def load_hyperparams_file(path: Path | str) -> dict[str, Any]:
    """Hyperparameters from a YAML file: a ``best_params.yaml`` (its ``hyperparams`` key) or a flat mapping.

    Raises
    ------
    ConfigError
        Missing file, not YAML, a key given twice, or not a mapping.
    """
    path = Path(path)
    raw = read_yaml(path, "hyperparameters file")
    if isinstance(raw, dict) and isinstance(raw.get("hyperparams"), dict):
        raw = raw["hyperparams"]
    if not isinstance(raw, dict):
        raise ConfigError(f"hyperparameters file {path} must hold a mapping (or a `hyperparams:` mapping)")
    return dict(raw)


#: Hyperparameters that change the trained model itself (its shape, dynamic parameters, solver).
MODEL_DEFINING_HYPERPARAMETERS = ("hidden_size", "nmul", "dynamic_parameters", "newton_tol")


def params_as_trained(params: Params, setup: Mapping[str, Any]) -> Params:
    """``params`` with the model-defining hyperparameters a checkpoint was trained with.

    A model trained with ``--hyperparams`` or ``--init-from`` may differ from
    ``params.yaml`` in network shape, dynamic parameters or Newton tolerance; evaluating it
    needs the values it was trained with (``checkpoint["setup"]``).
    """
    values = {name: setup[name] for name in MODEL_DEFINING_HYPERPARAMETERS if name in setup}
    if values == current_hyperparams(params, list(values)):
        return params
    return apply_hyperparams(params, values, source="the checkpoint's training setup")
