"""``dvc repro`` after a killed training stage, in a temporary copy of the repository (slow).

DVC deletes a stage's declared outputs before it runs the stage again, so the training's
in-progress state lives in ``train.work_dir``, which no stage declares. Specifications, on
the ``ci`` profile with the pipeline's own ``dvc.yaml``:

* the ``train@dhbv`` stage killed mid-epoch 2 (SIGKILL), then a plain ``dvc repro``: the
  stage continues from epoch 1 and says so on stdout, and its final weights equal those of
  an uninterrupted run (sha256);
* killed again, then ``dvc repro`` after a change of ``train.learning_rate``: the stage
  starts over and says which setting changed;
* killed again, then ``hbvbench train --restart``: starts over, discarding the state.

The copy's package is imported through ``PYTHONPATH`` (so ``hbvbench`` writes into the
copy); the kill uses the technique of tests/test_training_trainer.py: a wrapper script in
place of the stage's ``hbvbench`` for the killed run only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO_ROOT
from tests.limits import HANG_GUARD_S
from tests.test_training_resume import weights_sha256
from tests.training_fixtures import KILL_MID_EPOCH_2, same_threads_env

pytestmark = pytest.mark.slow

MODEL = "dhbv"
STAGE = f"train@{MODEL}"
TRAIN_CMD = "hbvbench train --model ${item.model}"


def _copy_repository(target: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True,
                             timeout=HANG_GUARD_S).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


class Project:
    """The repository copy and how to run things in it."""

    def __init__(self, root: Path, mlflow_uri: str) -> None:
        self.root = root
        self.env = {**same_threads_env(), "PYTHONPATH": str(root), "MLFLOW_TRACKING_URI": mlflow_uri,
                    "PATH": f"{Path(sys.executable).parent}:{same_threads_env().get('PATH', '')}"}
        self.dvc_yaml = (root / "dvc.yaml").read_text()

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=HANG_GUARD_S)

    def dvc(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(str(Path(sys.executable).parent / "dvc"), *args)

    def params(self, change) -> None:
        raw = yaml.safe_load((self.root / "params.yaml").read_text())
        change(raw)
        (self.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    def kill_training_mid_epoch_2(self) -> None:
        """``dvc repro`` with the stage's command replaced by the self-killing wrapper."""
        iterations = yaml.safe_load((self.root / "params.yaml").read_text())["profiles"]["ci"]["iterations_per_epoch"]
        (self.root / "killer.py").write_text(KILL_MID_EPOCH_2.format(kill_at_draw=iterations + 2))
        (self.root / "dvc.yaml").write_text(self.dvc_yaml.replace(TRAIN_CMD, "python killer.py train --model ${item.model}"))
        try:
            killed = self.dvc("repro", STAGE)
        finally:
            (self.root / "dvc.yaml").write_text(self.dvc_yaml)
        assert killed.returncode != 0, killed.stdout + killed.stderr
        assert (self.root / "artifacts" / "work" / MODEL / "checkpoint.pt").is_file()


@pytest.fixture
def project(tmp_path, mlflow_tracking_uri) -> Project:
    root = tmp_path / "repo"
    _copy_repository(root)
    project = Project(root, mlflow_tracking_uri)
    project.params(lambda raw: (raw.update(profile="ci"), raw["train"].update(models=[MODEL], epochs=2)))
    done = project.dvc("config", "core.no_scm", "true")
    assert done.returncode == 0, done.stderr
    return project


def _uninterrupted_sha(project: Project, tmp_path: Path) -> str:
    """The weights' sha256 of an uninterrupted training (this process, same thread count) on
    the copy's prepared data and configuration."""
    from benchmark.config import load_params
    from benchmark.data.dataset import load_dataset
    from benchmark.training.trainer import train_model

    params = load_params(project.root / "params.yaml")
    params = params.model_copy(update={"train": params.train.model_copy(update={
        "models_dir": tmp_path / "reference", "work_dir": tmp_path / "reference-work", "device": "cpu"})})
    dataset = load_dataset(project.root / "artifacts" / "data")
    return weights_sha256(train_model(params, MODEL, dataset=dataset, track=False).model_dir)


def test_dvc_repro_after_a_killed_training_continues_starts_over_on_a_change_and_restart_forces_it(project, tmp_path):
    project.kill_training_mid_epoch_2()  # the first run of the stage (prepare runs before it)
    resumed = project.dvc("repro", STAGE)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "continuing the interrupted run from epoch 1 of 2" in resumed.stdout
    assert not (project.root / "artifacts" / "work" / MODEL).exists()
    assert weights_sha256(project.root / "artifacts" / "models" / MODEL) == _uninterrupted_sha(project, tmp_path)

    project.kill_training_mid_epoch_2()
    project.params(lambda raw: raw["train"].update(learning_rate=0.5))
    changed = project.dvc("repro", STAGE)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "starting over: the interrupted run" in changed.stdout
    assert "learning_rate: 1.0 in the checkpoint, 0.5 now" in changed.stdout

    project.kill_training_mid_epoch_2()
    restarted = project.run(sys.executable, "-m", "benchmark.cli", "train", "--model", MODEL, "--restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "starting over (--restart); discarding" in restarted.stdout
    assert not (project.root / "artifacts" / "work" / MODEL).exists()


def test_the_work_folder_is_not_an_output_of_any_stage():
    """What makes resuming under DVC possible: no stage declares train.work_dir (DVC would delete it)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    work = params["train"]["work_dir"]
    for dvc_file in (REPO_ROOT / "dvc.yaml", REPO_ROOT / "benchmark" / "tuning" / "dvc.yaml",
                     REPO_ROOT / "benchmark" / "regression" / "dvc.yaml"):
        assert work not in dvc_file.read_text() and "train.work_dir" not in dvc_file.read_text(), dvc_file
