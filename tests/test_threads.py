"""Thread budget: parallel hbvbench processes share the cores instead of each taking all of them.

Precedence: ``--threads`` > ``train.threads`` > ``cores // workers`` for a process that knows
it is one of several (tuning workers, torchrun ranks) > torch's default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from benchmark import threads
from benchmark.cli import build_parser, thread_budget
from benchmark.cli import main as cli_main
from benchmark.errors import ConfigError
from tests.paths import DEFAULT_PARAMS, REPO_ROOT


def _params_file(folder: Path, **train: object) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profile"] = "ci"
    raw["data"]["raw_dir"] = str(REPO_ROOT / "data" / "camels_us")
    raw["train"].update(train)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_an_explicit_count_wins_then_the_params_key_then_the_share_of_the_cores():
    assert threads.choose(3, 2, 4, cores=8) == threads.ThreadBudget(3, "--threads")
    assert threads.choose(None, 2, 4, cores=8) == threads.ThreadBudget(2, "train.threads")
    assert threads.choose(None, None, 4, cores=8).threads == 2
    assert threads.choose(None, None, 3, cores=8).threads == 2  # whole threads, rounded down
    assert threads.choose(None, None, 4, cores=2).threads == 1  # never below one
    assert threads.choose(None, None, 1, cores=8) == threads.ThreadBudget(None, "torch default")
    assert threads.choose() == threads.ThreadBudget(None, "torch default")


@pytest.mark.parametrize("args", [(0, None, None), (None, -1, None), (None, None, 0)])
def test_a_count_below_one_is_refused(args):
    with pytest.raises(ConfigError, match="must be >= 1"):
        threads.choose(*args, cores=4)


def test_params_key_is_validated(tmp_path):
    assert cli_main(["--params", str(_params_file(tmp_path, threads=0)), "prepare"]) == 2


def test_a_torchrun_rank_takes_its_share_of_the_cores(monkeypatch):
    monkeypatch.setenv(threads.LOCAL_WORLD_SIZE_ENV, "2")
    budget = thread_budget(build_parser().parse_args(["train", "--model", "dhbv"]))
    assert budget.threads == max(1, threads.available_cores() // 2) and budget.source.startswith("automatic")
    monkeypatch.setenv(threads.LOCAL_WORLD_SIZE_ENV, "two")
    with pytest.raises(ConfigError, match="LOCAL_WORLD_SIZE='two' is not a whole number"):
        threads.local_workers()


def test_threads_option_goes_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--threads", "2", "train", "--model", "dhbv"]).threads == 2
    assert parser.parse_args(["train", "--model", "dhbv", "--threads", "3"]).threads == 3
    assert parser.parse_args(["--threads", "2", "tune", "--model", "dhbv", "--threads", "1"]).threads == 1
    assert parser.parse_args(["baseline", "lstm", "--threads", "1"]).threads == 1
    assert parser.parse_args(["train", "--model", "dhbv"]).threads is None


def test_a_budget_holds_for_the_command_and_is_undone_after_it():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with threads.applied(threads.ThreadBudget(target, "--threads")):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before


def test_a_command_runs_with_the_params_key_and_records_it(tmp_path):
    """`hbvbench perf` records the thread count torch used: the budget of train.threads."""
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    params = _params_file(tmp_path, threads=target)
    out = tmp_path / "perf"
    assert cli_main(["--params", str(params), "perf", "--basins", "2", "--days", "60", "--nmul", "1",
                     "--repeats", "1", "--variants", "sequential", "--out", str(out)]) == 0
    assert json.loads((out / "perf.json").read_text())["config"]["threads"] == target
    assert torch.get_num_threads() == before


def test_tuning_workers_split_the_cores_unless_told_otherwise(tmp_path):
    from benchmark.config import load_params
    from benchmark.tuning.runner import _threads_per_worker

    params = load_params(_params_file(tmp_path))
    assert _threads_per_worker(None, params, 1) is None  # in-process: the command's own budget
    assert _threads_per_worker(None, params, 2) == max(1, threads.available_cores() // 2)
    assert _threads_per_worker(3, params, 2) == 3
    assert _threads_per_worker(None, load_params(_params_file(tmp_path, threads=2)), 4) == 2
