"""``--all-seeds --workers N``: the seeds of a profile as parallel processes.

Specifications:

* a child runs exactly the single-seed command: ``--all-seeds`` becomes ``--seed S``,
  ``--workers`` is dropped, every other option is kept, and the child gets its share of the
  cores as ``--threads`` unless the command line names a thread count;
* by default every seed runs at once, at most two processes per core;
* a seed that fails does not hide the others: they finish and write their outputs, and the
  command ends with one error naming the failed seed (exit 2), its own message printed under
  its ``[seed S]`` prefix.

The end-to-end run of the pipeline with two seeds (``tests/test_pipeline_seeds.py``, slow)
trains, evaluates and runs the LSTM through this path.
"""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main as cli_main
from benchmark.parallel_seeds import child_argv, default_workers
from tests.test_bad_inputs import Workspace, trained_dhbv, workspace  # noqa: F401 - fixtures
from tests.training_fixtures import ci_data_dir, ci_params  # noqa: F401 - fixtures


def test_a_child_runs_the_single_seed_command_with_every_other_option():
    argv = ["--params", "p.yaml", "train", "--model", "dhbv", "--all-seeds", "--workers", "3", "--restart"]
    assert child_argv(argv, 222222, 1) == [
        "--threads", "1", "--params", "p.yaml", "train", "--model", "dhbv", "--seed", "222222", "--restart"]
    assert child_argv(["evaluate", "--workers=2", "--all-seeds"], 7, None) == ["evaluate", "--seed", "7"]


def test_a_thread_count_on_the_command_line_is_kept():
    argv = ["train", "--model", "dhbv", "--all-seeds", "--threads", "2"]
    assert child_argv(argv, 1, 1) == ["train", "--model", "dhbv", "--seed", "1", "--threads", "2"]


@pytest.mark.parametrize(("seeds", "cores", "workers"), [(1, 2, 1), (2, 2, 2), (3, 2, 3), (5, 2, 4), (3, 16, 3)])
def test_every_seed_runs_at_once_up_to_two_per_core(seeds, cores, workers):
    assert default_workers(seeds, cores) == workers


def test_a_failed_seed_is_named_and_the_others_still_finish(workspace: Workspace, capsys):
    workspace.profile(seeds=[111111, 222222])  # the workspace's model is trained for the first seed only
    capsys.readouterr()
    code = cli_main(["--params", str(workspace.params), "evaluate", "--model", "dhbv", "--all-seeds", "--workers", "2"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith("hbvbench evaluate: error: 1 of 2 seeds failed: seed 222222 (exit 2"), err
    assert "[seed 222222] hbvbench evaluate: error: " in out
    assert "[seed 111111] evaluated dhbv (seed 111111)" in out
    summary = json.loads((workspace.artifacts / "eval" / "dhbv" / "metrics.json").read_text())
    assert summary["n_basins"] == 4
    assert not (workspace.artifacts / "eval" / "dhbv" / "seed_222222").exists()
