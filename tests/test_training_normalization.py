"""Input normalization: statistics from the training period only, transforms, NaN handling."""

import numpy as np
import pytest

from benchmark.training.normalization import NormalizationStats, fit_normalization, normalized_inputs
from tests.training_fixtures import ci_data_dir, ci_dataset  # noqa: F401 - fixtures

TRAIN = ("1990-10-01", "1995-09-30")


def test_statistics_ignore_everything_outside_the_training_period(ci_dataset):
    stats = fit_normalization(ci_dataset, *TRAIN)
    tampered = ci_dataset.copy(deep=True)
    outside = (tampered["date"] < np.datetime64(TRAIN[0])) | (tampered["date"] > np.datetime64(TRAIN[1]))
    for name in ("prcp", "tmean", "pet"):
        tampered[name] = tampered[name].where(~outside, 1000.0)
    assert fit_normalization(tampered, *TRAIN) == stats
    inside = tampered["date"] == np.datetime64("1993-06-01")
    tampered["tmean"] = tampered["tmean"].where(~inside, 1000.0)
    assert fit_normalization(tampered, *TRAIN).forcing_mean[1] != stats.forcing_mean[1]


def test_precipitation_is_log_sqrt_transformed_then_z_scored_with_population_std(ci_dataset):
    stats = fit_normalization(ci_dataset, *TRAIN)
    prcp = ci_dataset["prcp"].sel(date=slice(*TRAIN)).values.astype(np.float64)
    transformed = np.log10(np.sqrt(prcp) + 0.1)
    assert stats.forcing_names[0] == "prcp"
    assert stats.forcing_mean[0] == pytest.approx(transformed.mean(), rel=1e-9)
    assert stats.forcing_std[0] == pytest.approx(transformed.std(ddof=0), rel=1e-9)
    tmean = ci_dataset["tmean"].sel(date=slice(*TRAIN)).values.astype(np.float64)
    assert stats.forcing_std[1] == pytest.approx(tmean.std(ddof=0), rel=1e-9)

    x = normalized_inputs(ci_dataset, stats)
    day = list(ci_dataset["date"].values).index(np.datetime64("1994-03-10"))
    p = float(ci_dataset["prcp"].isel(basin=2, date=day))
    expected = (np.log10(np.sqrt(p) + 0.1) - stats.forcing_mean[0]) / stats.forcing_std[0]
    assert x[day, 2, 0] == pytest.approx(expected, abs=1e-5)


def test_attributes_are_z_scored_across_basins_and_repeated_over_time(ci_dataset):
    stats = fit_normalization(ci_dataset, *TRAIN)
    x = normalized_inputs(ci_dataset, stats)
    assert x.shape == (ci_dataset.sizes["date"], 4, 38)
    attrs = ci_dataset["attributes"].values.astype(np.float64)
    expected = (attrs[:, 0] - attrs[:, 0].mean()) / attrs[:, 0].std(ddof=0)
    np.testing.assert_allclose(x[0, :, 3], expected, atol=1e-5)
    np.testing.assert_array_equal(x[0, :, 3:], x[-1, :, 3:])


def test_constant_inputs_get_unit_std_and_missing_values_become_zero(ci_dataset):
    ds = ci_dataset.copy(deep=True)
    attrs = ds["attributes"].values.copy()
    attrs[:, 5] = 7.0
    attrs[1, 6] = np.nan
    ds["attributes"] = (ds["attributes"].dims, attrs)
    prcp = ds["prcp"].values.copy()
    prcp[0, 100] = np.nan
    ds["prcp"] = (ds["prcp"].dims, prcp)
    stats = fit_normalization(ds, *TRAIN)
    assert stats.attribute_std[5] == 1.0
    x = normalized_inputs(ds, stats)
    assert np.isfinite(x).all()
    assert (x[:, :, 3 + 5] == 0).all()
    assert (x[:, 1, 3 + 6] == 0).all()
    assert x[100, 0, 0] == 0


def test_statistics_round_trip_through_json(ci_dataset, tmp_path):
    stats = fit_normalization(ci_dataset, *TRAIN)
    stats.save(tmp_path / "normalization.json")
    assert NormalizationStats.load(tmp_path / "normalization.json") == stats
