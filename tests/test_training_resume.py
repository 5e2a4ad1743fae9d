"""Kill, rerun, resume; two processes on one model folder.

Specifications (real ci basins, dhbv, 2 epochs):

* a training killed in the middle of epoch 2 (SIGKILL from inside, at an exact minibatch)
  and then simply run again (what ``dvc repro`` does) continues from epoch 1, says so, takes
  over the dead process's lock, and ends with weights whose sha256 equals that of an
  uninterrupted run with the same seed; the work folder is gone afterwards;
* rerun with another setup, it starts over and says which setting changed; ``--restart``
  starts over too;
* a second ``hbvbench train`` on a model folder that a live training holds stops at once
  (exit 2) naming the first process; the first one finishes unharmed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.artifacts import CHECKPOINT_NAME
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.trainer import train_model
from tests.limits import HANG_GUARD_S
from tests.training_fixtures import (  # noqa: F401 - fixtures
    KILL_MID_EPOCH_2,
    ci_data_dir,
    ci_dataset,
    ci_params,
    hbvbench_command,
    same_threads_env,
    write_params,
)

MODEL = "dhbv"
EPOCHS = 2

# Runs `hbvbench train` and, when minibatch {pause_at_draw} is drawn, writes its pid to
# {ready} and waits until {go} exists: a training that holds its model folder for as long
# as the test needs.
PAUSE_AT_DRAW = """
import os, sys, time
from pathlib import Path
from benchmark.training import sampler
from benchmark.cli import main

draw, calls = sampler.WindowSampler.sample, []
def sample_then_wait(self):
    calls.append(1)
    if len(calls) == {pause_at_draw}:
        Path({ready!r}).write_text(str(os.getpid()))
        while not Path({go!r}).exists():
            time.sleep(0.05)
    return draw(self)
sampler.WindowSampler.sample = sample_then_wait
sys.exit(main())
"""


def weights_sha256(model_dir: Path) -> str:
    """sha256 over the names, shapes and bytes of every tensor of the model's final weights."""
    state = load_checkpoint(model_dir / CHECKPOINT_NAME)["model_state"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(name.encode() + str(tuple(tensor.shape)).encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ci_data_dir, ci_dataset):
    """An uninterrupted 2-epoch run in this process."""
    folder = tmp_path_factory.mktemp("resume-reference")
    result = train_model(ci_params(folder, ci_data_dir), MODEL, epochs=EPOCHS, dataset=ci_dataset, track=False)
    return result, weights_sha256(result.model_dir)


def _kill_mid_epoch_2(params_path: Path, iterations: int) -> None:
    args = ("--params", str(params_path), "train", "--model", MODEL, "--epochs", str(EPOCHS))
    killer = [sys.executable, "-c", KILL_MID_EPOCH_2.format(kill_at_draw=iterations + 2), *args]
    killed = subprocess.run(killer, env=same_threads_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr


def _train(params_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = hbvbench_command("--params", str(params_path), "train", "--model", MODEL, "--epochs", str(EPOCHS), *extra)
    return subprocess.run(command, env=same_threads_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)


def test_a_plain_rerun_after_a_kill_continues_to_the_weights_of_an_uninterrupted_run(
        reference, tmp_path, ci_data_dir, mlflow_tracking_uri):
    result, reference_sha = reference
    params_path = write_params(tmp_path, ci_data_dir, experiment="resume-plain-rerun")
    iterations = ci_params(tmp_path, ci_data_dir).active.iterations_per_epoch
    _kill_mid_epoch_2(params_path, iterations)
    work = tmp_path / "work" / MODEL
    assert load_checkpoint(work / CHECKPOINT_NAME)["epoch"] == 1
    assert (tmp_path / "models" / MODEL / ".hbvbench.lock").is_file()  # the dead holder's record

    done = _train(params_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"continuing the interrupted run from epoch 1 of {EPOCHS}" in done.stdout
    assert "taking over the lock" in done.stderr and "no longer running" in done.stderr
    assert weights_sha256(tmp_path / "models" / MODEL) == reference_sha
    final = load_checkpoint(tmp_path / "models" / MODEL / CHECKPOINT_NAME)
    assert [h["train_loss"] for h in final["history"]] == [h["train_loss"] for h in result.history]
    assert not work.parent.exists(), "a finished run leaves nothing to continue (nor an empty work folder)"
    assert not (tmp_path / "models" / MODEL / ".hbvbench.lock").exists()


@pytest.mark.slow
def test_a_rerun_with_another_setup_starts_over_and_restart_forces_it(reference, tmp_path, ci_data_dir):
    _, reference_sha = reference
    params_path = write_params(tmp_path, ci_data_dir, experiment="resume-other-setup")
    iterations = ci_params(tmp_path, ci_data_dir).active.iterations_per_epoch
    _kill_mid_epoch_2(params_path, iterations)
    raw = yaml.safe_load(params_path.read_text())
    raw["train"]["learning_rate"] = 0.5
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw, sort_keys=False))

    other = _train(changed)

    assert other.returncode == 0, other.stdout + other.stderr
    assert "starting over: the interrupted run" in other.stdout
    assert "learning_rate: 1.0 in the checkpoint, 0.5 now" in other.stdout
    assert weights_sha256(tmp_path / "models" / MODEL) != reference_sha

    _kill_mid_epoch_2(params_path, iterations)
    restarted = _train(params_path, "--restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "starting over (--restart); discarding" in restarted.stdout
    assert weights_sha256(tmp_path / "models" / MODEL) == reference_sha  # a fresh run is the uninterrupted one


def test_a_second_training_on_a_held_model_folder_stops_naming_the_first(tmp_path, ci_data_dir, mlflow_tracking_uri):
    params_path = write_params(tmp_path, ci_data_dir, experiment="resume-two-processes")
    ready, go = tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSE_AT_DRAW.format(pause_at_draw=1, ready=str(ready), go=str(go)),
         "--params", str(params_path), "train", "--model", MODEL, "--epochs", "1"],
        env=same_threads_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while not ready.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first training never reached its first minibatch"
            time.sleep(0.05)

        second = subprocess.run(hbvbench_command("--params", str(params_path), "train", "--model", MODEL),
                                env=same_threads_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)

        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.startswith("hbvbench train: error: ")
        assert f"{tmp_path / 'models' / MODEL} is in use by process {first.pid} on host" in second.stderr
        assert f"kill {first.pid}" in second.stderr
    finally:
        go.write_text("")
        out, err = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 0, out + err
    assert load_checkpoint(tmp_path / "models" / MODEL / CHECKPOINT_NAME)["epoch"] == 1
    assert set(os.listdir(tmp_path / "models" / MODEL)) == {CHECKPOINT_NAME, "normalization.json", "train_log.csv"}
