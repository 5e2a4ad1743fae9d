"""Inputs of the report tests, produced by the project's real code paths.

Predictions are simulated by ``benchmark.models.simulate`` on real CAMELS forcing (the
processed dataset of the real ``prepare`` stage, or ``prepare.build_dataset`` on the embedded
files) and scored by ``benchmark.evaluation``, never invented. A "seed" of a simulated model is
a set of per-basin parameters drawn around the middle of the physical ranges by a generator
seeded with that seed, so two seeds of one model differ as two trainings would (in
parameters) and two models of one seed differ only in structure or time scheme.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from benchmark import evaluation
from tests.paths import DEFAULT_PARAMS, REPO_ROOT

ROUTING = (1.45, 3.25)  # the reference routing of the authors' outputs (tests/reference)
PARAMETER_JITTER = 0.2
"""Seeded draws of the normalized parameters u lie in [0.5 - jitter, 0.5 + jitter]."""

SEEDED_TEST = ("1995-10-01", "2000-09-30")
SEEDED_SEEDS = [11, 22, 33]
SEEDED_MODELS = {"dhbv": SEEDED_SEEDS, "dhbv_adj": SEEDED_SEEDS, "dhbv_cr": SEEDED_SEEDS[:1]}


def parameters(spec: object, n_basins: int, seed: int | None) -> dict[str, torch.Tensor]:
    """Physical HBV parameters per basin: mid-range (``seed`` None) or seeded draws around it."""
    from benchmark.models.parameters import HBV_PARAMETERS

    out = {}
    for name in spec.parameter_names:  # type: ignore[attr-defined]
        p = HBV_PARAMETERS[name]
        if seed is None:
            out[name] = torch.full((n_basins,), p.mid)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        u = 0.5 + rng.uniform(-PARAMETER_JITTER, PARAMETER_JITTER, n_basins)
        out[name] = torch.tensor(p.lo + u * (p.hi - p.lo), dtype=torch.float32)
    return out


def simulated_predictions(ds: xr.Dataset, model: str, test: tuple[str, str], *, seed: int | None = None,
                          profile: str = "ci", warmup_days: int = 365) -> xr.Dataset:
    """A ``predictions.nc`` Dataset of a registry model on ``ds``'s basins over the ``test`` period."""
    from benchmark.models.registry import get_model_spec
    from benchmark.models.simulate import simulate

    spec = get_model_spec(model)
    basins = [str(b) for b in ds["basin"].values]
    first = pd.Timestamp(test[0]) - pd.Timedelta(days=warmup_days)
    period = ds.sel(date=slice(first, pd.Timestamp(test[1])))
    forcing = torch.tensor(np.stack([period[v].values.T for v in ("prcp", "tmean", "pet")], -1), dtype=torch.float32)
    params = parameters(spec, len(basins), seed)
    with torch.no_grad():
        out = simulate(forcing, params, routing=ROUTING, **spec.simulate_options())
    keep = pd.DatetimeIndex(period["date"].values) >= pd.Timestamp(test[0])
    series = {"qsim": out["Q"], "Q_unrouted": out["Q_unrouted"], "Q2": out["Q2"], "ET": out["ET"]}
    data = {k: (("basin", "date"), v.numpy()[keep].T) for k, v in series.items()}
    data["qobs"] = (("basin", "date"), period["qobs"].transpose("basin", "date").values[:, keep])
    for name in ("BETA", "FC", "K2", "LP"):
        data[f"param_{name}"] = (("basin",), params[name].numpy())
    attrs = {"model": model, "profile": profile} | ({"seed": int(seed)} if seed is not None else {})
    return xr.Dataset(data, coords={"basin": basins, "date": period["date"].values[keep]}, attrs=attrs)


def write_evaluated(folder: Path, pred: xr.Dataset, ds: xr.Dataset) -> None:
    """Score ``pred`` and write it as an evaluated model folder (predictions, metrics, per-basin CSV)."""
    per_basin, summary = evaluation.score_predictions(pred, ds)
    folder.mkdir(parents=True, exist_ok=True)
    pred.to_netcdf(folder / "predictions.nc")
    evaluation.write_metrics(folder, per_basin, summary)


def seeded_params(folder: Path, *, seeds: list[int] = SEEDED_SEEDS) -> Path:
    """A params.yaml of the ``default`` profile (35 basins) with a short test period and ``seeds``,
    every output redirected into ``folder``."""
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profile"] = "default"
    raw["data"] = {**raw["data"], "raw_dir": str(REPO_ROOT / "data" / "camels_us"), "processed_dir": str(folder / "data")}
    raw["train"] = {**raw["train"], "models_dir": str(folder / "models"), "eval_dir": str(folder / "eval"),
                    "experiment": "report-seeds"}
    raw["baselines"] = {**raw["baselines"], "out_dir": str(folder / "baselines")}
    profile = raw["profiles"]["default"]
    profile.update({"test": {"start": SEEDED_TEST[0], "end": SEEDED_TEST[1]}, "seeds": seeds})
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def eval_folder(root: Path, model: str, seed: int, seeds: list[int]) -> Path:
    """Where the trainer puts a seed's evaluation: the model folder for the first seed, else ``seed_<S>``."""
    folder = root / "eval" / model
    return folder if seed == seeds[0] else folder / f"seed_{seed}"


@pytest.fixture(scope="session")
def seeded_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """35 real basins prepared by the real ``prepare`` stage; δHBV and δHBV.adj with three
    seeds each and δHBV improved with one, evaluated into the trainer's folder layout."""
    from benchmark.config import load_params
    from benchmark.data.dataset import load_dataset
    from benchmark.data.prepare import prepare

    root = tmp_path_factory.mktemp("report-seeds")
    params_path = seeded_params(root)
    prepare(load_params(params_path))
    ds = load_dataset(root / "data")
    for model, seeds in SEEDED_MODELS.items():
        for seed in seeds:
            pred = simulated_predictions(ds, model, SEEDED_TEST, seed=seed, profile="default")
            write_evaluated(eval_folder(root, model, seed, SEEDED_SEEDS), pred, ds)
    return {"root": root, "params": params_path, "data": root / "data"}


def artifact_dir(repo_root: Path) -> Path:
    """Where browser screenshots of the report tests are kept (``$HBVBENCH_TEST_ARTIFACTS``)."""
    folder = Path(os.environ.get("HBVBENCH_TEST_ARTIFACTS", repo_root / "reports" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_chromium() -> None:
    """Fail (or skip, with ``HBVBENCH_ALLOW_NO_BROWSER=1``) when headless Chromium is missing."""
    from benchmark.report.browser import find_chromium

    if find_chromium() is None:
        if os.environ.get("HBVBENCH_ALLOW_NO_BROWSER") == "1":
            pytest.skip("no Chromium and HBVBENCH_ALLOW_NO_BROWSER=1")
        pytest.fail("headless Chromium is required for the report test: install Debian's `chromium` "
                    "(apt-get install chromium; .ci/run does) or set HBVBENCH_ALLOW_NO_BROWSER=1 to skip")
