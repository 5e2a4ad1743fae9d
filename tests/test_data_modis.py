"""MOD16A2 basin ET reader.

The file used here, tests/fixtures/modis/01022500_lump_modis16a2v006_et.txt, is a FORMAT
FIXTURE (hand-written values in the published layout): no real MODIS copy exists on these
machines. See tests/fixtures/modis/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import modis
from benchmark.errors import DataError

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "modis"
FIXTURE = FIXTURE_DIR / "01022500_lump_modis16a2v006_et.txt"


@pytest.fixture(scope="module")
def composites() -> pd.DataFrame:
    return modis.read_modis_et(FIXTURE)


def test_finds_the_basin_file() -> None:
    assert modis.modis_path(FIXTURE_DIR, "01022500") == FIXTURE
    assert modis.modis_path(FIXTURE_DIR.parent, "01022500") == FIXTURE  # one sub-folder down
    assert modis.modis_path(FIXTURE_DIR, "01031500") is None


def test_composite_lengths_last_of_year_is_5_or_6_days(composites: pd.DataFrame) -> None:
    n_days = composites["n_days"]
    assert n_days[pd.Timestamp("2000-12-18")] == 8
    assert n_days[pd.Timestamp("2000-12-26")] == 6  # leap year: day 361..366
    assert n_days[pd.Timestamp("2001-12-27")] == 5  # day 361..365
    assert n_days[pd.Timestamp("2001-01-01")] == 8


def test_et_converted_to_mm_per_day_per_composite_day(composites: pd.DataFrame) -> None:
    per_day = composites["et_mm_per_day"]
    assert per_day[pd.Timestamp("2000-12-18")] == 1.0  # 8 kg/m2 over 8 days
    assert per_day[pd.Timestamp("2000-12-26")] == 0.5  # 3 kg/m2 over 6 days
    assert per_day[pd.Timestamp("2001-12-27")] == 1.0  # 5 kg/m2 over 5 days
    assert per_day[pd.Timestamp("2001-01-01")] == 2.0


def test_fill_values_and_qc_fill_are_missing(composites: pd.DataFrame) -> None:
    et = composites["et_mm"]
    for date in ("2001-01-09", "2001-01-17", "2001-01-25", "2001-02-02"):  # 3276.7, 32767, -1.5, QC 255
        assert np.isnan(et[pd.Timestamp(date)]), date
    assert composites["et_mm"].notna().sum() == 5


def test_max_qc_drops_worse_composites() -> None:
    strict = modis.read_modis_et(FIXTURE, max_qc=8)
    assert np.isnan(strict.at[pd.Timestamp("2001-12-19"), "et_mm"])  # ET_QC 16
    assert strict.at[pd.Timestamp("2001-01-01"), "et_mm"] == 16.0  # ET_QC 8


def test_daily_series_covers_each_composite_and_conserves_the_total(composites: pd.DataFrame) -> None:
    daily = modis.daily_et(composites)
    leap_end = daily["2000-12-26":"2000-12-31"]
    assert len(leap_end) == 6 and (leap_end == 0.5).all()
    year_end = daily["2001-12-27":"2001-12-31"]
    assert len(year_end) == 5 and (year_end == 1.0).all()
    assert daily["2000-12-18":"2000-12-25"].sum() == pytest.approx(8.0)
    assert daily["2001-01-09":"2001-01-16"].isna().all()
    assert pd.Timestamp("2001-02-10") not in daily.index  # no composite covers it


def test_wrong_header_and_non_numeric_values_are_data_errors(tmp_path: Path) -> None:
    bad_header = tmp_path / "01022500_lump_modis16a2v006_et.txt"
    bad_header.write_text("Year,Month,Day,ET\n2001,1,1,3\n")
    with pytest.raises(DataError, match=r"line 1 should be the header Year,Mnth,Day,Hr,ET"):
        modis.read_modis_et(bad_header)
    text = FIXTURE.read_text().replace("2001,01,01,0,16.0", "2001,01,01,0,sixteen")
    bad_value = tmp_path / "bad" / FIXTURE.name
    bad_value.parent.mkdir()
    bad_value.write_text(text)
    with pytest.raises(DataError, match=r"line 4: ET\(kg/m\^2/8day\) should be a number, got 'sixteen'"):
        modis.read_modis_et(bad_value)
