"""Which repository a command works on: found from the working directory (as git and dvc do),
``--params FILE`` and ``HBVBENCH_ROOT`` overriding it, never derived from where the package lives."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from benchmark import repository, tracking
from benchmark.cli import main as cli_main
from benchmark.config import load_params, resolve_path
from benchmark.repository import ROOT_ENV, RepositoryNotFound
from benchmark.tuning.study import default_storage_url
from tests.paths import DEFAULT_PARAMS, REPO_ROOT


def _workspace(folder: Path, *, profile: str = "ci") -> Path:
    """A second checkout as a user would have it: its own params.yaml, the embedded data linked in."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profile"] = profile
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (folder / "data").mkdir()
    (folder / "data" / "camels_us").symlink_to(REPO_ROOT / "data" / "camels_us")
    return folder


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``HBVBENCH_ROOT`` / ``DVC_ROOT`` from outside; the test sets what it needs."""
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.delenv(repository.DVC_ROOT_ENV, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------- discovery


def test_the_root_is_the_nearest_folder_above_the_working_directory_holding_params_yaml(tmp_path, isolated):
    root = _workspace(tmp_path / "clone")
    deep = root / "artifacts" / "eval" / "dhbv"
    deep.mkdir(parents=True)
    isolated.chdir(deep)
    assert repository.root() == root
    assert load_params().profile == "ci"  # this clone's params, not the package's repository's
    assert resolve_path(Path("artifacts/data")) == root / "artifacts" / "data"


def test_hbvbench_root_overrides_the_working_directory(tmp_path, isolated):
    first, second = _workspace(tmp_path / "a"), _workspace(tmp_path / "b")
    isolated.chdir(first)
    isolated.setenv(ROOT_ENV, str(second))
    assert repository.root() == second and repository.params_path() == second / "params.yaml"


def test_params_option_makes_its_folder_the_root_for_the_command_and_its_children(tmp_path, isolated):
    first, second = _workspace(tmp_path / "a"), _workspace(tmp_path / "b")
    isolated.chdir(first)
    isolated.setenv(ROOT_ENV, str(tmp_path / "a"))
    with repository.rooted_at(second / "params.yaml"):
        assert repository.root() == second and os.environ[ROOT_ENV] == str(second)
    assert os.environ[ROOT_ENV] == str(tmp_path / "a")  # restored afterwards


def test_outside_any_repository_a_command_says_what_to_do(tmp_path, isolated, capsys):
    isolated.chdir(tmp_path)
    with pytest.raises(RepositoryNotFound, match="not inside an hbvbench repository"):
        repository.root()
    assert cli_main(["prepare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbvbench prepare: error: not inside an hbvbench repository")
    assert "--params FILE" in err and ROOT_ENV in err and "Traceback" not in err


def test_a_root_variable_that_is_not_a_folder_is_a_clear_error(tmp_path, isolated, capsys):
    isolated.chdir(tmp_path)
    isolated.setenv(ROOT_ENV, str(tmp_path / "nowhere"))
    assert cli_main(["prepare"]) == 2
    assert f"{ROOT_ENV}={tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err
    isolated.setenv(ROOT_ENV, str(tmp_path))  # a folder, but without params.yaml
    assert cli_main(["prepare"]) == 2
    assert f"{ROOT_ENV}={tmp_path} holds no params.yaml" in capsys.readouterr().err


def test_two_clones_sharing_one_environment_each_write_their_own_artifacts(tmp_path, isolated, capsys):
    """The installed package serves both clones; `prepare` in one never writes into the other."""
    first, second = _workspace(tmp_path / "a"), _workspace(tmp_path / "b")
    for clone in (first, second):
        isolated.chdir(clone)
        assert cli_main(["prepare"]) == 0
        assert f"-> {clone / 'artifacts' / 'data'} " in capsys.readouterr().out
        assert (clone / "artifacts" / "data" / "camels.nc").is_file()
    isolated.chdir(tmp_path)
    assert cli_main(["--params", str(second / "params.yaml"), "prepare", "--profile", "ci"]) == 0
    assert f"-> {second / 'artifacts' / 'data'} " in capsys.readouterr().out


# --------------------------------------------------------------------------- DVC workspaces


def test_stores_of_a_temporary_dvc_workspace_live_in_the_workspace_it_was_queued_from(tmp_path, isolated):
    """DVC deletes the copy under .dvc/tmp/exps when the experiment ends: runs go to the origin's stores."""
    origin = _workspace(tmp_path / "origin")
    copy = _workspace(origin / ".dvc" / "tmp" / "exps" / "tmp1234")
    isolated.delenv("MLFLOW_TRACKING_URI", raising=False)
    isolated.chdir(copy)
    isolated.setenv(repository.DVC_ROOT_ENV, str(origin))
    assert repository.root() == copy  # params, data and artifacts: the copy's
    assert repository.store_root() == origin
    assert tracking.tracking_uri() == f"sqlite:///{origin / 'mlflow.db'}"
    assert default_storage_url() == f"sqlite:///{origin / 'optuna.db'}"


def test_a_plain_dvc_repro_keeps_its_stores_in_the_repository(tmp_path, isolated):
    origin = _workspace(tmp_path / "origin")
    elsewhere = _workspace(tmp_path / "elsewhere")
    isolated.chdir(origin)
    isolated.setenv(repository.DVC_ROOT_ENV, str(origin))
    assert repository.store_root() == origin
    isolated.chdir(elsewhere)  # DVC_ROOT of another repository: not ours to follow
    assert repository.store_root() == elsewhere


# --------------------------------------------------------------------------- no package-relative paths


def test_no_path_is_derived_from_where_the_package_is_installed():
    offenders = []
    for package in ("benchmark", "baselines"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"__file__|\bREPO_ROOT\b|\bDEFAULT_PARAMS\b", line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []



def test_the_library_outside_a_repository_records_no_code_state_instead_of_failing(tmp_path, isolated):
    """`train_model(params)` from a notebook anywhere: the git commit and DVC hash are optional metadata."""
    isolated.chdir(tmp_path)
    assert repository.root_or_none() is None
    assert tracking.git_state() == {} and tracking.dvc_data_hash() is None
    assert tracking.standard_tags("ci") == {"profile": "ci"}
