"""Shared helpers of tests/test_tuning*.py: a tiny ``ci`` tuning setup on the real prepared data.

Trials are kept to seconds: 2 basins, 90-day windows and warm-ups, 2 iterations of 2 basins
per epoch, a hidden size of 8 and 2 components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.config import Params, load_params
from tests.training_fixtures import write_params

TUNE_BASINS = ["01022500", "01031500"]

SEARCH_SPACE: dict[str, Any] = {
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "alpha": {"type": "float", "low": 0.1, "high": 0.4},
    "dynamic_parameters": {"type": "categorical", "choices": ["BETA,BETAET", "BETA"]},
}


def write_tune_params(folder: Path, data_dir: Path, *, experiment: str, epochs: int = 1, **tune: Any) -> Path:
    """A ``ci`` params.yaml in ``folder`` with a tiny profile and a study storage in ``folder``."""
    path = write_params(folder, data_dir, test_warmup_days=90)
    raw = yaml.safe_load(path.read_text())
    raw["profiles"]["ci"].update(
        basins=TUNE_BASINS, window_days=90, warmup_days=90, iterations_per_epoch=2, batch_basins=2,
        epochs=epochs, hidden_size=8, nmul=2,
    )
    raw["tune"] = {
        **raw.get("tune", {}),
        "storage": f"sqlite:///{folder / 'optuna.db'}",
        "experiment": experiment,
        "out_dir": str(folder / "tuning"),
        "pruner_startup_trials": 1,
        "search_space": SEARCH_SPACE,
        **tune,
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def tune_params(folder: Path, data_dir: Path, *, experiment: str, **tune: Any) -> Params:
    """Validated params of :func:`write_tune_params`."""
    return load_params(write_tune_params(folder, data_dir, experiment=experiment, **tune))
