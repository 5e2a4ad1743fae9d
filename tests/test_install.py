"""A non-editable install (``pip install .``) works from the repository folder: the wheel carries
the package data the code reads, and the installed ``hbvbench`` works on the repository it is
run in, not on a path baked in at install time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.limits import HANG_GUARD_S


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo_root):
    """The repository's files (git's view) in a fresh folder, built into a wheel and installed
    (no dependencies: those of the test environment serve) into a separate target folder."""
    work = tmp_path_factory.mktemp("install")
    source = work / "checkout"
    files = _run(["git", "ls-files", "-co", "--exclude-standard", "-z"], repo_root).stdout.split("\0")
    for name in filter(None, files):
        if (repo_root / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / name, source / name)
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(source)], work)
    wheel = next(wheels.glob("hbvbench-*.whl"))
    target = work / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
          str(wheel)], work)
    env = {**{k: v for k, v in os.environ.items() if k != "HBVBENCH_ROOT"}, "PYTHONPATH": str(target)}
    return {"source": source, "wheel": wheel, "target": target, "env": env}


def test_the_wheel_carries_the_package_data_the_code_reads(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for name in ("table1_streamflow.csv", "table2_signatures.csv", "tableA2_schemes.csv"):
        assert f"baselines/published/{name}" in names
    assert "benchmark/training/mlflow_pyfunc.py" in names  # the code of every logged MLflow model


def test_the_installed_package_reads_its_data_from_itself_anywhere(installed, tmp_path):
    code = ("import baselines.published as p, benchmark; "
            "print(benchmark.__file__); print(len(p.load_published('table1')))")
    out = _run([sys.executable, "-c", code], tmp_path, installed["env"]).stdout.split()
    assert out[0].startswith(str(installed["target"]))  # the installed copy, not the editable checkout
    assert int(out[1]) >= 6


def test_installed_hbvbench_works_on_the_repository_it_runs_in(installed):
    source = installed["source"]
    hbvbench = [str(installed["target"] / "bin" / "hbvbench")]  # the console script pip installed
    done = _run([*hbvbench, "prepare", "--profile", "ci"], source / "benchmark", installed["env"])
    assert f"-> {source / 'artifacts' / 'data'} " in done.stdout  # found from a subfolder of the checkout
    assert (source / "artifacts" / "data" / "camels.nc").is_file()
    outside = subprocess.run([*hbvbench, "prepare"], cwd=installed["target"].parent, env=installed["env"],
                             capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert outside.returncode == 2 and "not inside an hbvbench repository" in outside.stderr
