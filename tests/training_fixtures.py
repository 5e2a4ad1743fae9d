"""Shared helpers of the tests/test_training_*.py files: a prepared ``ci`` dataset and params.

The dataset is built once per test session from the real embedded CAMELS-US files by the
real ``prepare`` stage, into a temporary folder (never the repository's artifacts/).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
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
        "work_dir": str(folder / "work"),
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


def hbvbench_command(*args: str) -> list[str]:
    """The `hbvbench` command line run by this Python (a child process)."""
    return [sys.executable, "-c", "import sys; from benchmark.cli import main; sys.exit(main())", *args]


# Runs `hbvbench train` and SIGKILLs the process from inside when the second minibatch of
# epoch 2 is drawn: one update of epoch 2 is done in memory, none of it is on disk. Killing
# from inside makes the point of the kill exact; a kill sent from outside when the epoch-1
# checkpoint appears could land after epoch 2 on a loaded machine.
KILL_MID_EPOCH_2 = """
import os, signal, sys
from benchmark.training import sampler
from benchmark.cli import main

draw, calls = sampler.WindowSampler.sample, []
def sample_then_die(self):
    calls.append(1)
    if len(calls) == {kill_at_draw}:
        os.kill(os.getpid(), signal.SIGKILL)
    return draw(self)
sampler.WindowSampler.sample = sample_then_die
sys.exit(main())
"""


def same_threads_env() -> dict[str, str]:
    """The environment of a child process that must reproduce this process bit for bit:
    PyTorch's intra-op thread count decides how elementwise work is split, and so the last
    bit of some results; the child gets exactly this process's count."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(torch.get_num_threads())}
