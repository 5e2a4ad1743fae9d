"""Solver health on the consumer side: never a NaN that looks like a result.

Specifications (real ci basins, the implicit δHBV.adj model trained for one epoch):

* evaluation marks a basin whose simulation turned non-finite as failed (status with the
  first bad date in ``per_basin_metrics.csv``, empty metrics, counted and listed in
  ``metrics.json``, left out of the medians), and scores the other basins as before;
* a basin whose Newton iteration did not converge on more than
  ``train.max_not_converged_share`` of its simulated days is failed with the share; with a
  share of 1 the same run is accepted;
* training stops on a non-finite simulation with an error naming the basin and the date.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import TrainingError
from benchmark.training.evaluate import evaluate_model
from benchmark.training.trainer import train_model
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params  # noqa: F401 - fixtures

MODEL = "dhbv_adj"
BROKEN = "01031500"


def _with_storm(dataset, basin: str, days: list[str], mm_per_day: float = 3e38):
    """A copy of ``dataset`` whose precipitation is ``mm_per_day`` on ``days`` (5 days from each)
    for ``basin``: the storages overflow to infinity, as a diverging model's would."""
    broken = dataset.copy(deep=True)
    column = list(broken["basin"].values).index(basin)
    dates = broken.indexes["date"]
    for day in days:
        first = dates.get_loc(pd.Timestamp(day))
        broken["prcp"].values[column, first : first + 5] = mm_per_day
    return broken


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ci_data_dir):
    folder = tmp_path_factory.mktemp("solver-health")
    params = ci_params(folder, ci_data_dir, epochs=1)
    train_model(params, MODEL, track=False)
    return folder, params


def test_a_basin_whose_simulation_breaks_is_marked_failed_and_left_out(trained, ci_dataset):
    folder, params = trained
    reference, reference_summary = evaluate_model(params, MODEL, dataset=ci_dataset, track=False)
    assert set(reference["status"]) == {"ok"} and reference_summary["n_basins_failed"] == 0

    per_basin, summary = evaluate_model(params, MODEL, dataset=_with_storm(ci_dataset, BROKEN, ["1997-04-01"]),
                                        track=False)

    status = per_basin.loc[BROKEN, "status"]
    assert re.fullmatch(r"failed: non-finite simulated storage or flow from 1997-04-0[1-6] \(\d+ of \d+ days\)", status)
    assert per_basin.loc[BROKEN, ["NSE", "KGE", "RMSE", "BFI", "ET_NSE"]].isna().all()
    others = [b for b in per_basin.index if b != BROKEN]
    assert (per_basin.loc[others, "status"] == "ok").all()
    pd.testing.assert_frame_equal(per_basin.loc[others], reference.loc[others])
    assert summary["n_basins_failed"] == 1 and summary["failed_basins"] == BROKEN
    assert summary["NSE_median"] == pytest.approx(float(np.median(reference.loc[others, "NSE"])))

    out = folder / "eval" / MODEL
    written = json.loads((out / "metrics.json").read_text())
    assert written["n_basins_failed"] == 1 and written["failed_basins"] == BROKEN
    csv = pd.read_csv(out / "per_basin_metrics.csv", dtype={"basin": str}).set_index("basin")
    assert csv.loc[BROKEN, "status"] == status and np.isnan(csv.loc[BROKEN, "NSE"])


def test_basins_over_the_not_converged_share_fail_and_a_share_of_one_accepts_them(trained, ci_dataset):
    _, params = trained
    one_iteration = params.model_copy(update={"train": params.train.model_copy(update={"newton_max_iter": 1})})
    per_basin, summary = evaluate_model(one_iteration, MODEL, dataset=ci_dataset, track=False)
    assert summary["n_basins_failed"] == len(per_basin) > 0
    for status in per_basin["status"]:
        match = re.fullmatch(r"failed: Newton did not converge on (\d+) of (\d+) days "
                             r"\((\d+\.\d)% > train.max_not_converged_share 1.0%\)", status)
        assert match, status
        assert int(match[1]) / int(match[2]) > 0.01
    assert summary["NSE_median"] is None  # no basin left to take a median of

    tolerant = one_iteration.model_copy(update={"train": one_iteration.train.model_copy(
        update={"max_not_converged_share": 1.0})})
    per_basin, summary = evaluate_model(tolerant, MODEL, dataset=ci_dataset, track=False)
    assert set(per_basin["status"]) == {"ok"} and summary["n_basins_failed"] == 0


def test_training_stops_on_a_non_finite_simulation_naming_basin_and_date(tmp_path, ci_data_dir, ci_dataset):
    storms = [f"{year}-{month:02d}-01" for year in range(1989, 1996) for month in (1, 3, 5, 7, 9, 11)]
    params = ci_params(tmp_path, ci_data_dir, epochs=1)
    with pytest.raises(TrainingError) as err:
        train_model(params, "dhbv", dataset=_with_storm(ci_dataset, BROKEN, storms), track=False)
    found = re.search(r"epoch 1, batch 1/2: the simulation became non-finite .* for basin (\d{8}) on (\S+) ",
                      str(err.value))
    assert found, str(err.value)
    assert found[1] == BROKEN
    day = dt.date.fromisoformat(found[2])
    assert day.day <= 6 and f"{day:%Y-%m}-01" in storms  # within the 5 stormy days (or the day after)
    assert not (tmp_path / "models" / "dhbv" / "checkpoint.pt").exists()
