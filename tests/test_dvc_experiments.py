"""DVC experiments the way DVC users run sweeps: queued variants in temporary workspaces.

``dvc exp run --queue -S ...`` twice, then ``dvc queue start -j 2``: DVC copies the workspace
to ``.dvc/tmp/exps/<tmp>`` once per experiment and runs the pipeline there with the
``hbvbench`` of the environment that started the queue. Each copy must use (and write) its
own params, data and artifacts; ``dvc exp show`` then lists both experiments with their
params and metrics, and their MLflow runs land in the workspace's store (the copies are
deleted when the experiments end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.config import load_params
from tests.limits import HANG_GUARD_S

QUEUE_POLL_S = 5.0
DVC_COMMAND_TIMEOUT_S = 600.0
LEARNING_RATES = {"lr-half": 0.5, "lr-one": 1.0}


def _render(template: str, params, model: str | None) -> str:
    """``${train.eval_dir}/${item.model}/metrics.json`` with params.yaml's values."""
    values = {"item.model": model, "train.eval_dir": params.train.eval_dir, "train.models_dir": params.train.models_dir,
              "baselines.out_dir": params.baselines.out_dir, "data.processed_dir": params.data.processed_dir}
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(values[m.group(1)]), template)


def _uncached_outputs(repo_root: Path) -> list[str]:
    """Every ``cache: false`` output, metric and plot of dvc.yaml, rendered for params.yaml."""
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    params = load_params(repo_root / "params.yaml")
    paths = []
    for stage in stages.values():
        models = params.train.models if "matrix" in stage else [None]
        for entry in (*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])):
            if isinstance(entry, dict) and any(isinstance(v, dict) and v.get("cache") is False for v in entry.values()):
                paths += [_render(next(iter(entry)), params, model) for model in models]
    return paths


def test_every_uncached_output_of_the_pipeline_is_visible_to_git(repo_root):
    """An experiment commits only what git sees: metrics, logs and plots must not be ignored."""
    paths = _uncached_outputs(repo_root)
    assert len(paths) >= 7  # SAC-SMA's metrics and plots, the report
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=repo_root,
                             capture_output=True, text=True).stdout.split()
    assert ignored == []
    # ...while the cached outputs stay ignored (DVC versions them through dvc.lock)
    params = load_params(repo_root / "params.yaml")
    cached = [str(params.data.processed_dir), f"{params.train.models_dir}/dhbv/checkpoint.pt",
              f"{params.train.eval_dir}/dhbv/predictions.nc", f"{params.train.eval_dir}/dhbv/seed_222222/metrics.json",
              f"{params.baselines.out_dir}/lstm/metrics.json"]
    assert subprocess.run(["git", "check-ignore", "--no-index", *cached], cwd=repo_root,
                          capture_output=True, text=True).stdout.split() == cached


# --------------------------------------------------------------------------- the queue, for real


def _fresh_clone(repo_root: Path, dest: Path) -> Path:
    """The working tree as a new user's clone: tracked and new (not ignored) files, one commit."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo_root, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = repo_root / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def _files_under(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (empty when there is no such folder)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dvc_env() -> dict[str, str]:
    """This environment's executables first; runs go to the clone's own store (no MLFLOW_TRACKING_URI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HBVBENCH_ROOT", "DVC_ROOT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _dvc(clone: Path, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=clone, env=_dvc_env(),
                          capture_output=True, text=True, timeout=DVC_COMMAND_TIMEOUT_S)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _queue_states(clone: Path) -> dict[str, str]:
    rows = _dvc(clone, "queue", "status").splitlines()
    return {cols[1]: cols[-1] for line in rows if len(cols := line.split()) >= 4 and cols[1] in LEARNING_RATES}


def _wait_for_queue(clone: Path) -> dict[str, str]:
    deadline = time.monotonic() + HANG_GUARD_S
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = _queue_states(clone)
        if len(states) == len(LEARNING_RATES) and all(s in ("Success", "Failed") for s in states.values()):
            return states
        time.sleep(QUEUE_POLL_S)
    pytest.fail(f"dvc queue still busy after {HANG_GUARD_S:.0f} s (hang guard): {states}")


def _experiment_logs(clone: Path) -> str:
    return "\n".join(f"--- {name}\n{_dvc(clone, 'queue', 'logs', name)[-4000:]}" for name in LEARNING_RATES)


@pytest.mark.slow
def test_two_queued_ci_variants_run_in_parallel_temp_workspaces_and_exp_show_lists_both(repo_root, tmp_path):
    clone = _fresh_clone(repo_root, tmp_path / "clone")
    committed = _files_under(clone / "artifacts")  # the uncached outputs a commit carries (SAC-SMA's)
    for name, rate in LEARNING_RATES.items():
        _dvc(clone, "exp", "run", "--queue", "--name", name, "-S", "profile=ci", "-S", "train.models=[dhbv]",
             "-S", f"train.learning_rate={rate}", "-S", "train.threads=1")
    started = time.monotonic()
    _dvc(clone, "queue", "start", "-j", "2")
    try:
        states = _wait_for_queue(clone)
        assert states == {name: "Success" for name in LEARNING_RATES}, _experiment_logs(clone)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "stop", "--kill"], cwd=clone,
                       env=_dvc_env(), capture_output=True, timeout=DVC_COMMAND_TIMEOUT_S)
    print(f"two queued ci experiments finished in {time.monotonic() - started:.0f} s")

    shown = json.loads(_dvc(clone, "exp", "show", "--json"))
    experiments = {rev["name"]: rev["data"] for entry in shown for exp in (entry.get("experiments") or [])
                   for rev in exp["revs"]}
    assert set(LEARNING_RATES) <= set(experiments)
    nse = {}
    for name, rate in LEARNING_RATES.items():
        data = experiments[name]
        params = data["params"]["params.yaml"]["data"]
        assert params["profile"] == "ci" and params["train"]["learning_rate"] == rate
        assert params["train"]["models"] == ["dhbv"]
        metrics = {path: m.get("data") for path, m in data["metrics"].items()}
        for path in ("artifacts/eval/dhbv/metrics.json", "artifacts/baselines/lstm/metrics.json",
                     "artifacts/baselines/sacsma/metrics.json"):
            assert metrics[path] is not None, f"{name}: {path} missing from the experiment: {data['metrics'][path]}"
        nse[name] = metrics["artifacts/eval/dhbv/metrics.json"]["NSE_median"]
        assert -10.0 < nse[name] <= 1.0
    assert nse["lr-half"] != nse["lr-one"]  # each workspace trained with its own params

    # the temporary workspaces wrote nothing into the workspace they came from...
    assert _files_under(clone / "artifacts") == committed
    # ...but their MLflow runs live in its store, named by experiment
    with sqlite3.connect(clone / "mlflow.db") as db:
        tagged = db.execute("SELECT t.value, r.name FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                            "WHERE t.key = 'dvc.experiment'").fetchall()
        threads = db.execute("SELECT p.value FROM params p JOIN tags t ON t.run_uuid = p.run_uuid "
                             "WHERE p.key = 'torch_threads' AND t.key = 'dvc.experiment'").fetchall()
    assert threads == [("1",), ("1",)]  # -S train.threads=1: the budget of each dhbv training
    for name in LEARNING_RATES:
        runs = sorted(run.split("-")[0] for experiment, run in tagged if experiment == name)
        assert runs == ["dhbv", "lstm_nh", "sacsma"], tagged
