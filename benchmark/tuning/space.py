"""The search space of ``tune.search_space`` and hyperparameters applied to a configuration.

A *hyperparameters* mapping uses the names of
:data:`benchmark.config.TUNABLE_HYPERPARAMETERS` (``learning_rate``, ``hidden_size``,
``dropout``, ``nmul``, ``alpha``, ``warmup_days``, ``dynamic_parameters``, ``newton_tol``,
...). :func:`apply_hyperparams` writes them into the active profile or the ``train:``
section and re-validates the whole configuration, so an impossible value fails with the
key's name exactly as a bad ``params.yaml`` would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmark.config import TUNABLE_HYPERPARAMETERS, Params, Period, SearchDimension
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


def suggest(trial: Any, space: Mapping[str, SearchDimension], scheme: str) -> dict[str, Any]:
    """Sample the hyperparameters of ``trial`` from ``space``.

    Parameters
    ----------
    trial
        An ``optuna.Trial``.
    space
        ``tune.search_space``.
    scheme
        The model's time scheme; entries whose ``schemes`` exclude it are not sampled.

    Returns
    -------
    dict
        Hyperparameter name -> sampled value (``dynamic_parameters`` still as its string).
    """
    values: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.schemes is not None and scheme not in dim.schemes:
            continue
        if dim.type == "categorical":
            values[name] = trial.suggest_categorical(name, list(dim.choices or []))
        elif dim.type == "int":
            values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), step=dim.step or 1, log=dim.log)
        else:
            values[name] = trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)
    return values


def _format_error(err: ValidationError, source: str) -> str:
    from benchmark.config import format_validation_error

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


def validation_period(params: Params) -> Period:
    """The validation period of a study: ``tune.validation`` or the profile's last training years.

    Raises
    ------
    ConfigError
        When it overlaps the test period, or leaves less than one window of training days.
    """
    profile, tune = params.active, params.tune
    if tune.validation is not None:
        period = tune.validation
    else:
        end = profile.train.end
        day = min(end.day, 28) if (end.month, end.day) == (2, 29) else end.day
        start = dt.date(end.year - tune.validation_years, end.month, day) + dt.timedelta(days=1)
        period = Period(start=start, end=end)
    if not (period.end < profile.test.start or period.start > profile.test.end):
        raise ConfigError(
            f"tune.validation {period.start}..{period.end} overlaps the test period "
            f"{profile.test.start}..{profile.test.end} of profile {params.profile!r}"
        )
    train_days = (period.start - profile.train.start).days
    if period.start <= profile.train.end and train_days < profile.window_days:
        raise ConfigError(
            f"tune validation period {period.start}..{period.end} leaves {train_days} training days in "
            f"profile {params.profile!r}, fewer than window_days={profile.window_days}; lower tune.validation_years"
        )
    return period


def training_end_before(period: Period, params: Params) -> dt.date:
    """Last training day of a trial: the day before validation when it lies inside the training period."""
    train = params.active.train
    if train.start < period.start <= train.end:
        return period.start - dt.timedelta(days=1)
    return train.end


def load_hyperparams_file(path: Path | str) -> dict[str, Any]:
    """Hyperparameters from a YAML file: a ``best_params.yaml`` (its ``hyperparams`` key) or a flat mapping.

    Raises
    ------
    ConfigError
        Missing file, not YAML, a key given twice, or not a mapping.
    """
    from benchmark.config import read_yaml

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
