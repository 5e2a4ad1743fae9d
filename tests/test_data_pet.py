"""Hargreaves PET (docs/data.md#hargreaves-pet): FAO-56 radiation and the authors' PET values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import camels
from benchmark.data.pet import extraterrestrial_radiation, hargreaves_pet, hargreaves_pet_series


def test_ra_fao56_example_8() -> None:
    # FAO-56 (Allen et al. 1998) Example 8: 20 deg S on 3 September (J = 246): Ra = 32.2 MJ m-2 d-1
    assert extraterrestrial_radiation(-20.0, 246) == pytest.approx(32.2, abs=0.05)


def test_ra_is_zero_in_polar_night_and_follows_the_seasons() -> None:
    assert extraterrestrial_radiation(75.0, 355) == pytest.approx(0.0, abs=1e-12)
    june_north = extraterrestrial_radiation(40.0, 172)
    june_south = extraterrestrial_radiation(-40.0, 172)
    assert june_north > 40.0 > june_south


def test_hargreaves_formula_by_hand() -> None:
    ra = float(extraterrestrial_radiation(44.6, 200))
    expected = 0.0023 * (20.0 + 17.8) * np.sqrt(10.0) * 0.408 * ra
    assert hargreaves_pet(np.array([25.0]), np.array([15.0]), 44.6, np.array([200]))[0] == pytest.approx(expected, rel=1e-12)


def test_hargreaves_clips_negative_range_and_negative_pet() -> None:
    doy = np.array([10, 10, 10])
    pet = hargreaves_pet(np.array([5.0, -30.0, np.nan]), np.array([6.0, -40.0, 1.0]), 44.6, doy)
    assert pet[0] == 0.0  # tmax < tmin: sqrt(max(., 0)) = 0
    assert pet[1] == 0.0  # T + 17.8 < 0 -> clipped at 0
    assert np.isnan(pet[2])


def test_pet_matches_reference_for_basin_01022500(camels_dir: Path, reference_dir: Path) -> None:
    # tests/reference/forcing_01022500.csv is authoritative: the PET the reference runs used,
    # with latitude = CAMELS gauge_lat (not the forcing file header's latitude)
    reference = pd.read_csv(reference_dir / "forcing_01022500.csv", parse_dates=["date"], index_col="date")
    lat = camels.read_attributes(camels_dir).at["01022500", "gauge_lat"]
    forcing = camels.read_forcing(camels.forcing_path(camels_dir, "01022500")).data.loc[reference.index]
    pet = hargreaves_pet_series(forcing, lat)
    np.testing.assert_allclose(pet.to_numpy(), reference["pet"].to_numpy(), atol=1e-6)
    assert (pet >= 0).all()
