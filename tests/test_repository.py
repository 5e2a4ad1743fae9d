"""The repository's promises to a new user: the README's two commands, CI running the test one
verbatim, DVC offline by default, and the optional pipelines kept out of a plain `dvc repro`."""

from __future__ import annotations

import configparser
import re

import yaml

from tests.paths import REPO_ROOT


def _readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands for a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_gives_exactly_two_self_sufficient_commands():
    main, tests = _readme_commands()
    for command in (main, tests):
        assert command.count("\n") == 0 and command.startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert main.endswith("dvc repro") and tests.endswith("pytest")


def test_ci_runs_the_readmes_test_command_verbatim_then_the_regression_check():
    lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    _, tests = _readme_commands()
    assert tests in lines
    assert lines.index("hbvbench regress") > lines.index(tests)


def test_dvc_never_phones_home():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".dvc" / "config")
    assert config["core"]["analytics"] == "false" and config["core"]["check_update"] == "false"


def test_tuning_and_regression_stages_are_outside_the_default_pipeline():
    default = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert "tune" not in default and "regress" not in default
    regress = yaml.safe_load((REPO_ROOT / "benchmark" / "regression" / "dvc.yaml").read_text())["stages"]["regress"]
    assert regress["cmd"].endswith("hbvbench regress")
    assert "reports/regression_metrics.json" in regress["metrics"][0]
