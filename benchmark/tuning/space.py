"""The search space of ``tune.search_space``: sampling a trial's hyperparameters, and the
validation period a study scores on.

A *hyperparameters* mapping uses the names of
:data:`benchmark.config.TUNABLE_HYPERPARAMETERS` (``learning_rate``, ``hidden_size``,
``dropout``, ``nmul``, ``alpha``, ``warmup_days``, ``dynamic_parameters``, ``newton_tol``,
...). Writing them into a configuration (:func:`~benchmark.hyperparams.apply_hyperparams`,
re-exported here) lives in :mod:`benchmark.hyperparams`, below training, which needs it too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from benchmark.config import Params, Period, SearchDimension
from benchmark.errors import ConfigError
from benchmark.hyperparams import (  # noqa: F401 - re-exported: applying values is part of the tuning API
    MODEL_DEFINING_HYPERPARAMETERS,
    STRUCTURAL_HYPERPARAMETERS,
    apply_hyperparams,
    check_dynamic_parameters,
    current_hyperparams,
    load_hyperparams_file,
    params_as_trained,
    parse_dynamic_parameters,
)


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





