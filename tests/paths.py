"""Where the repository under test is: the folder above ``tests/`` (tests may know their own location)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""Absolute path of the repository root (the folder holding params.yaml)."""

DEFAULT_PARAMS = REPO_ROOT / "params.yaml"
"""The repository's params.yaml."""
