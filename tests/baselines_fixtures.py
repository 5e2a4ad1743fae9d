"""Shared helpers of tests/test_baselines_*.py: params with a small ``tiny`` profile and its data.

The profile uses real embedded CAMELS-US basins on short periods; its dataset is built by the
real ``prepare`` stage into a temporary folder (never the repository's artifacts/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.config import Params, load_params
from tests.paths import DEFAULT_PARAMS, REPO_ROOT

#: Real basins: 01031500 has the one embedded CAMELS SAC-SMA file; 01121000 lacks
#: ``geol_2nd_class`` (NaN attribute, filled for neuralhydrology); 02053200 is the one with a
#: different land cover (so ``dom_land_cover`` varies and is kept).
TINY_BASINS = ["01022500", "01031500", "01121000", "02053200"]
TINY_PROFILE: dict[str, Any] = {
    "description": "tests: 3 basins, 2 training years, 1 test year",
    "basins": TINY_BASINS,
    "train": {"start": "1990-10-01", "end": "1992-09-30"},
    "test": {"start": "1992-10-01", "end": "1993-09-30"},
    "warmup_days": 365,
    "epochs": 1,
    "batch_basins": 3,
    "window_days": 365,
    "hidden_size": 8,
    "nmul": 1,
    "seeds": [111111],
}
TINY_LSTM: dict[str, Any] = {
    "hidden_size": 8,
    "seq_length": 30,
    "epochs": 1,
    "batch_size": 32,
    "learning_rate": {0: 1.0e-3},
    "max_updates_per_epoch": 8,
    "eval_batch_size": 512,
    "validation_years": 1,
}


def write_params(
    folder: Path, data_dir: Path, *, basins: list[str] | None = None, experiment: str = "hbvbench-baselines-tests",
    **lstm: Any,
) -> Path:
    """A params.yaml in ``folder``: the repository's with profile ``tiny`` and outputs redirected."""
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["train"] = {**raw.get("train", {}), "experiment": experiment}
    raw["profile"] = "tiny"
    raw["profiles"]["tiny"] = {**TINY_PROFILE, "basins": basins or TINY_BASINS}
    raw["data"] = {**raw.get("data", {}), "raw_dir": str(REPO_ROOT / "data" / "camels_us"),
                   "processed_dir": str(data_dir)}
    raw["baselines"] = {**raw.get("baselines", {}), "device": "cpu", "out_dir": str(folder / "baselines")}
    raw["baselines"]["lstm"] = {**raw["baselines"].get("lstm", {}), "tiny": {**TINY_LSTM, **lstm}}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The processed ``tiny`` dataset (3 real basins), prepared once per session."""
    from benchmark.data.prepare import prepare

    folder = tmp_path_factory.mktemp("baselines-data")
    prepare(load_params(write_params(folder, folder / "processed")))
    return folder / "processed"


@pytest.fixture(scope="session")
def tiny_dataset(tiny_data_dir: Path):
    """The prepared ``tiny`` dataset, loaded."""
    from benchmark.data.dataset import load_dataset

    return load_dataset(tiny_data_dir)


def tiny_params(folder: Path, data_dir: Path, **kwargs: Any) -> Params:
    """Validated ``tiny`` params writing into ``folder`` (keyword arguments of :func:`write_params`)."""
    return load_params(write_params(folder, data_dir, **kwargs))
