"""Shared helpers of the tests/test_training_*.py files: a prepared ``ci`` dataset and params.

The dataset is built once per test session from the real embedded CAMELS-US files by the
real ``prepare`` stage, into a temporary folder (never the repository's artifacts/).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.config import Params, load_params
from tests.paths import DEFAULT_PARAMS, REPO_ROOT


def write_params(folder: Path, data_dir: Path, *, profile: str = "ci", **train: object) -> Path:
    """A params.yaml in ``folder`` using the repository's, with data and outputs redirected there."""
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profile"] = profile
    raw["data"] = {**raw.get("data", {}), "raw_dir": str(REPO_ROOT / "data" / "camels_us"), "processed_dir": str(data_dir)}
    raw["train"] = {
        **raw.get("train", {}),
        "models_dir": str(folder / "models"),
        "eval_dir": str(folder / "eval"),
        "device": "cpu",
        **train,
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def ci_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The processed ``ci`` dataset (4 real basins), prepared once per session."""
    from benchmark.data.prepare import prepare

    folder = tmp_path_factory.mktemp("training-data")
    params_path = write_params(folder, folder / "processed")
    prepare(load_params(params_path))
    return folder / "processed"


@pytest.fixture(scope="session")
def ci_dataset(ci_data_dir: Path):
    from benchmark.data.dataset import load_dataset

    return load_dataset(ci_data_dir)


def ci_params(folder: Path, data_dir: Path, **train: object) -> Params:
    """Validated ``ci`` params writing into ``folder``."""
    return load_params(write_params(folder, data_dir, **train))
