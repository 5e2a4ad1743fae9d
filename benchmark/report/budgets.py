"""Training budgets side by side: how much training each model got, so a reader sees whether a
difference in skill may be a difference in budget (see docs/training.md).

Per model and seed:

* **weight updates**: optimizer steps, from the training log (δHBV: the ``iterations`` of
  each epoch in ``train_log.csv``; LSTM: epochs logged in ``epoch_losses.csv`` times
  neuralhydrology's ``max_updates_per_epoch``);
* **samples per update** and **scored days per sample**: a δHBV minibatch holds
  ``batch_basins`` basin windows of ``window_days`` scored days (after ``warmup_days`` of
  spin-up); an LSTM minibatch holds ``batch_size`` sequences of ``seq_length`` input days
  of which ``predict_last_n`` are scored;
* **basin-days scored** = updates x samples per update x scored days per sample (the number
  of (basin, day) targets the loss saw, repeats included);
* **wall time**: the summed per-epoch times of ``train_log.csv`` (δHBV), or the LSTM's
  training seconds (``training.json`` beside its predictions, else the MLflow run's
  ``train_wall_s``).

Sizes are always those a run was trained with, never the current params.yaml: a δHBV
seed's from the setup in its ``checkpoint.pt`` (else its MLflow run's parameters), the
LSTM's from the ``nh_config.yml`` written beside its predictions (or logged to MLflow). A
run without any of them shows ``n/a``. How the default profile's budgets were made equal is
explained in docs/training.md#training-budgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from baselines.nh_lstm import NH_CONFIG_NAME, TRAINING_RECORD
from benchmark.report import styles
from benchmark.report.inputs import ModelResult, ReportInputs, SeedRun, read_mapping
from benchmark.report.tables import NA, Cell, RowGroup, Table, fmt, ordered, training_wall_time

EQUAL_WITHIN = 0.05
"""Two budgets are called equal when they differ by less than this fraction."""


@dataclass(frozen=True)
class Budget:
    """The training budget of one seed of one model (NaN: not known)."""

    updates: float
    samples_per_update: float
    scored_days_per_sample: float
    input_days_per_sample: float
    wall_s: float
    epochs: float
    source: str

    @property
    def basin_days(self) -> float:
        """(basin, day) targets the loss saw: updates x samples x scored days per sample."""
        return self.updates * self.samples_per_update * self.scored_days_per_sample


def _number(mapping: dict[str, Any], key: str) -> float:
    try:
        value = float(mapping[key])
    except (KeyError, TypeError, ValueError):
        return math.nan
    return value


def _logged_updates(run: SeedRun) -> tuple[float, float]:
    """(epochs, weight updates) from a trainer's ``train_log.csv`` (NaN when not logged)."""
    log = run.train_log
    if log is None or "iterations" not in log.columns:
        return (float(len(log)) if log is not None else math.nan), math.nan
    iterations = pd.to_numeric(log["iterations"], errors="coerce").to_numpy(dtype=float)
    return float(len(log)), float(np.nansum(iterations)) if np.isfinite(iterations).any() else math.nan


SIZE_KEYS: tuple[str, ...] = ("batch_basins", "window_days", "warmup_days")


def dhbv_budget(run: SeedRun) -> Budget:
    """The budget of one δHBV seed (sizes from its checkpoint's setup, else its MLflow run's parameters)."""
    sizes, source = {key: math.nan for key in SIZE_KEYS}, "not recorded (no checkpoint, no MLflow run)"
    for recorded, where in ((run.setup, "checkpoint setup"), (run.run_params, "MLflow run parameters")):
        found = {key: _number(recorded, key) for key in SIZE_KEYS}
        if all(math.isfinite(v) for v in found.values()):
            sizes, source = found, where
            break
    epochs, updates = _logged_updates(run)
    wall = training_wall_time(run.train_log)
    if not math.isfinite(wall):
        wall = run.run_metrics.get("train_wall_s", math.nan)
    log = "train_log.csv" if run.train_log is not None else "no train_log.csv"
    return Budget(updates, sizes["batch_basins"], sizes["window_days"], sizes["warmup_days"] + sizes["window_days"],
                  wall, epochs, f"{log}; sizes from {source}")


def read_nh_config(folder: Path | None) -> tuple[dict[str, Any], Path] | None:
    """The neuralhydrology configuration the LSTM was run with (None when not found).

    Raises
    ------
    DataError
        The file exists but is not a YAML mapping.
    """
    if folder is None:
        return None
    path = folder / NH_CONFIG_NAME
    if not path.is_file():
        return None
    return read_mapping(path, "the LSTM's neuralhydrology configuration"), path


def lstm_training_seconds(run: SeedRun) -> float:
    """The LSTM's training seconds: ``training.json`` in its folder, else its MLflow run's ``train_wall_s``.

    Raises
    ------
    DataError
        ``training.json`` exists but is not a JSON object.
    """
    path = run.source / TRAINING_RECORD if run.source is not None else None
    if path is not None and path.is_file():
        return _number(read_mapping(path, "the LSTM's training record"), "train_wall_s")
    return run.run_metrics.get("train_wall_s", math.nan)


def lstm_budget(run: SeedRun) -> Budget:
    """The budget of the LSTM baseline (the neuralhydrology configuration it ran with and its epoch log)."""
    found = read_nh_config(run.source)
    config, source = (found[0], NH_CONFIG_NAME) if found is not None else ({}, f"no {NH_CONFIG_NAME}")
    epochs = float(len(run.train_log)) if run.train_log is not None else _number(config, "epochs")
    per_epoch = _number(config, "max_updates_per_epoch")
    predict_last_n = _number(config, "predict_last_n") if "predict_last_n" in config else 1.0
    log = "epoch_losses.csv" if run.train_log is not None else "no epoch_losses.csv"
    return Budget(epochs * per_epoch, _number(config, "batch_size"), predict_last_n, _number(config, "seq_length"),
                  lstm_training_seconds(run), epochs, f"{source}; {log}")


def model_budgets(model: ModelResult) -> list[Budget] | None:
    """One budget per seed (None for a model not trained here, e.g. SAC-SMA)."""
    if model.name == "sacsma":
        return None
    compute = lstm_budget if model.name == "lstm" else dhbv_budget
    return [compute(run) for run in model.runs]


# --------------------------------------------------------------------------- table

BUDGET_COLUMNS = [
    "Model", "Seeds", "Epochs", "Weight updates", "Samples per update", "Scored days per sample",
    "Basin-days scored", "Input days per sample", "Training wall time (s)", "Source",
]


def _per_seed_text(values: list[float], decimals: int) -> str:
    """One value, or ``mean (min–max)`` when the seeds differ."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return NA
    if len(finite) == 1 or max(finite) == min(finite):
        return f"{finite[0]:,.{decimals}f}"
    return f"{np.mean(finite):,.{decimals}f} ({min(finite):,.{decimals}f}–{max(finite):,.{decimals}f})"


def _budget_row(model: ModelResult, budgets: list[Budget]) -> list[Cell]:
    first = budgets[0]
    return [
        Cell(styles.label(model.name)), Cell(str(len(budgets))),
        Cell(_per_seed_text([b.epochs for b in budgets], 0)),
        Cell(_per_seed_text([b.updates for b in budgets], 0)),
        Cell(fmt(first.samples_per_update, 0)), Cell(fmt(first.scored_days_per_sample, 0)),
        Cell(_per_seed_text([b.basin_days for b in budgets], 0)),
        Cell(fmt(first.input_days_per_sample, 0)),
        Cell(_per_seed_text([b.wall_s for b in budgets], 1)),
        Cell(first.source),
    ]


def ratio_text(numerator: float, denominator: float) -> str:
    """``6.25x`` (n/a when either is unknown)."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return NA
    return f"{numerator / denominator:.2f}x"


def equal_budgets(a: float, b: float) -> bool | None:
    """Whether two budgets agree within :data:`EQUAL_WITHIN` (None when either is unknown)."""
    if not (math.isfinite(a) and math.isfinite(b)) or max(a, b) == 0:
        return None
    return abs(a - b) / max(a, b) < EQUAL_WITHIN


def comparison_notes(rows: list[tuple[ModelResult, list[Budget]]]) -> list[str]:
    """Plain sentences: the LSTM's budget against each δHBV model's."""
    lstm = next((b for m, b in rows if m.name == "lstm"), None)
    if lstm is None:
        return []
    notes = []
    for model, budgets in rows:
        if model.name == "lstm":
            continue
        updates = [equal_budgets(lstm[0].updates, budgets[0].updates),
                   equal_budgets(lstm[0].basin_days, budgets[0].basin_days)]
        if None in updates:
            verdict = "cannot be compared (a budget is not known)"
        elif all(updates):
            verdict = "equal"
        else:
            verdict = "not equal: read the LSTM's row against it with the difference in training in mind"
        notes.append(f"LSTM vs {styles.label(model.name)}: {ratio_text(lstm[0].updates, budgets[0].updates)} the weight "
                     f"updates, {ratio_text(lstm[0].basin_days, budgets[0].basin_days)} the scored basin-days; "
                     f"budgets {verdict}.")
    return notes


def budget_table(inputs: ReportInputs) -> Table | None:
    """Each trained model's budget per seed (None when no model was trained here)."""
    rows: list[tuple[ModelResult, list[Budget]]] = []
    for model in ordered(inputs.models):
        budgets = model_budgets(model)
        if budgets:
            rows.append((model, budgets))
    if not rows:
        return None
    notes = [
        "Per seed (with several seeds: mean, then lowest–highest). Basin-days scored = weight updates x samples per "
        "update x scored days per sample: the (basin, day) targets the loss saw, repeats included. A δHBV sample is "
        "one basin's window (warm-up days simulated, not scored); an LSTM sample is one input sequence of which the "
        "last day(s) are scored. SAC-SMA is CAMELS' calibrated model, not trained here.",
    ] + comparison_notes(rows)
    return Table("budgets", "Training budgets", BUDGET_COLUMNS,
                 [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile",
                           [_budget_row(m, b) for m, b in rows])], notes)
