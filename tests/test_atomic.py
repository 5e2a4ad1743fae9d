"""The one atomic writer (benchmark.atomic): complete files or none, normal permissions.

Specifications: a failed write leaves the previous file (or nothing) and no temporary file;
outputs get 0666/0777 minus the umask, not the 0600/0700 of ``tempfile``; a folder swap
either fully replaces the folder or leaves the old one.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from benchmark import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_json_yaml_and_bytes_land_whole_with_normal_permissions(tmp_path, umask_022):
    atomic.write_text(tmp_path / "a" / "notes.md", "hello\n")
    atomic.write_json(tmp_path / "metrics.json", {"NSE_median": 0.7})
    atomic.write_yaml(tmp_path / "best_params.yaml", {"hyperparams": {"dropout": 0.5}})
    atomic.write_bytes(tmp_path / "figure.png", b"\x89PNG")
    assert (tmp_path / "a" / "notes.md").read_text() == "hello\n"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"NSE_median": 0.7}
    for name in ("a/notes.md", "metrics.json", "best_params.yaml", "figure.png"):
        assert _mode(tmp_path / name) == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "best_params.yaml", "figure.png", "metrics.json"]


def test_the_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        atomic.write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.txt") == 0o600


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_text(target, "old\n")
    with pytest.raises(ValueError):
        atomic.write_json(target, {"NSE": float("nan")})  # NaN is not JSON
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_torch_netcdf_and_figures_go_through_the_same_rename(tmp_path, umask_022):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import xarray as xr

    atomic.torch_save(tmp_path / "checkpoint.pt", {"w": torch.ones(2)})
    assert torch.equal(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["w"], torch.ones(2))
    atomic.write_netcdf(tmp_path / "predictions.nc", xr.Dataset({"qsim": ("date", np.arange(3.0))}))
    assert xr.load_dataset(tmp_path / "predictions.nc")["qsim"].values.tolist() == [0.0, 1.0, 2.0]
    fig, _ = plt.subplots()
    atomic.save_figure(tmp_path / "cdf.png", fig, dpi=20)
    plt.close(fig)
    assert (tmp_path / "cdf.png").read_bytes()[:4] == b"\x89PNG"
    assert {_mode(tmp_path / n) for n in ("checkpoint.pt", "predictions.nc", "cdf.png")} == {0o644}


def test_a_folder_is_swapped_whole_or_not_at_all(tmp_path, umask_022):
    target = tmp_path / "figures"
    atomic.replace_dir(target, lambda folder: (folder / "old.png").write_bytes(b"1"))
    assert _mode(target) == 0o755

    def half_then_crash(folder: Path) -> None:
        (folder / "new.png").write_bytes(b"2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.replace_dir(target, half_then_crash)
    assert [p.name for p in target.iterdir()] == ["old.png"]
    atomic.replace_dir(target, lambda folder: (folder / "new.png").write_bytes(b"2"))
    assert [p.name for p in target.iterdir()] == ["new.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]


def test_a_symbolic_link_is_repointed_atomically(tmp_path):
    (tmp_path / "run_1").mkdir()
    (tmp_path / "run_2").mkdir()
    atomic.symlink("run_1", tmp_path / "latest")
    atomic.symlink("run_2", tmp_path / "latest")
    assert os.readlink(tmp_path / "latest") == "run_2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run_1", "run_2"]
