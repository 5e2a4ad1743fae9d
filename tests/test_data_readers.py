"""The raw CAMELS-US readers, on the real embedded files (basin 01022500 unless said)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data import camels, sacsma
from benchmark.errors import DataError

GAUGE = "01022500"


@pytest.fixture(scope="module")
def attributes(camels_dir: Path) -> pd.DataFrame:
    return camels.read_attributes(camels_dir)


@pytest.fixture(scope="module")
def reference(reference_dir: Path) -> pd.DataFrame:
    return pd.read_csv(reference_dir / "forcing_01022500.csv", parse_dates=["date"], index_col="date")


# ----------------------------------------------------------------------------- forcing


def test_forcing_header_gives_latitude_elevation_and_area(camels_dir: Path) -> None:
    forcing = camels.read_forcing(camels.forcing_path(camels_dir, GAUGE, "daymet"))
    assert forcing.gauge_id == GAUGE
    assert forcing.latitude == 44.82
    assert forcing.elevation_m == 133.0
    assert forcing.area_m2 == 587675987.0


def test_forcing_first_row_and_record(camels_dir: Path) -> None:
    data = camels.read_forcing(camels.forcing_path(camels_dir, GAUGE)).data
    assert list(data.columns) == ["dayl", "prcp", "srad", "swe", "tmax", "tmin", "vp"]
    first = data.iloc[0]
    assert data.index[0] == pd.Timestamp("1980-01-01")
    assert first.to_dict() == {"dayl": 31185.97, "prcp": 0.0, "srad": 178.46, "swe": 0.0,
                               "tmax": -0.72, "tmin": -10.59, "vp": 271.45}
    assert data.index[-1] == pd.Timestamp("2014-12-31")
    assert len(data) == 12784 and data.index.is_monotonic_increasing


def test_forcing_matches_the_reference_inputs(camels_dir: Path, reference: pd.DataFrame) -> None:
    data = camels.read_forcing(camels.forcing_path(camels_dir, GAUGE)).data.loc[reference.index]
    for column in ("prcp", "tmax", "tmin"):
        np.testing.assert_allclose(data[column], reference[column], atol=5e-7)


def test_forcing_product_picks_folder_and_suffix(camels_dir: Path, tmp_path: Path) -> None:
    # NLDAS files use capitalised column names (e.g. PRCP(mm/day)); the header check ignores case.
    source = camels.forcing_path(camels_dir, GAUGE, "daymet")
    lines = source.read_text().splitlines(keepends=True)
    lines[3] = "Year Mnth Day Hr Dayl(s) PRCP(mm/day) SRAD(W/m2) SWE(mm) Tmax(C) Tmin(C) Vp(Pa)\n"
    target = tmp_path / "basin_mean_forcing" / "nldas" / "01" / f"{GAUGE}_lump_nldas_forcing_leap.txt"
    target.parent.mkdir(parents=True)
    target.write_text("".join(lines))
    assert camels.forcing_path(tmp_path, GAUGE, "nldas") == target
    assert camels.read_forcing(target).data.iloc[0]["tmax"] == -0.72
    with pytest.raises(DataError, match=r"maurer.*_lump_maurer_forcing_leap\.txt"):
        camels.forcing_path(tmp_path, GAUGE, "maurer")


def test_unknown_forcing_product_is_a_data_error(camels_dir: Path) -> None:
    with pytest.raises(DataError, match=r"unknown forcing product 'cida'.*daymet, maurer, nldas"):
        camels.forcing_path(camels_dir, GAUGE, "cida")


def test_list_basins_finds_the_35_embedded_basins(camels_dir: Path) -> None:
    basins = camels.list_basins(camels_dir, "daymet")
    assert len(basins) == 35 and basins[0] == GAUGE and basins[-1] == "04296000"
    assert camels.list_basins(camels_dir, "maurer") == []


# ----------------------------------------------------------------------------- streamflow


def test_streamflow_known_value_converted_with_area_gages2(camels_dir: Path, attributes: pd.DataFrame) -> None:
    area = attributes.at[GAUGE, "area_gages2"]
    assert area == 573.6
    flow = camels.read_streamflow(camels.streamflow_path(camels_dir, GAUGE), area)
    day = flow.loc["1980-10-01"]
    assert day["qobs_cfs"] == 224.0 and day["flag"] == "A"
    # 224 ft3/s * 0.0283168 m3/ft3 * 86400 s / 573.6e6 m2 * 1000 mm/m
    assert day["qobs_mm"] == pytest.approx(224.0 * 0.0283168 * 86400 / 573.6e6 * 1e3, rel=1e-12)
    assert day["qobs_mm"] == pytest.approx(0.955425, abs=1e-6)


def test_streamflow_matches_reference_qobs(camels_dir: Path, attributes: pd.DataFrame, reference: pd.DataFrame) -> None:
    flow = camels.read_streamflow(camels.streamflow_path(camels_dir, GAUGE), attributes.at[GAUGE, "area_gages2"])
    np.testing.assert_allclose(flow["qobs_mm"].reindex(reference.index), reference["qobs"], atol=5e-7)


def test_streamflow_missing_values_become_nan_and_flags_are_kept(camels_dir: Path) -> None:
    flow = camels.read_streamflow(camels.streamflow_path(camels_dir, GAUGE))
    assert np.isnan(flow.at[pd.Timestamp("2014-10-01"), "qobs_cfs"])  # -999.00 M in the file
    assert flow.at[pd.Timestamp("2014-10-01"), "flag"] == "M"
    assert flow.at[pd.Timestamp("1985-12-11"), "flag"] == "A:e"
    assert flow.at[pd.Timestamp("1985-12-11"), "qobs_cfs"] == 265.0
    assert int(flow["qobs_cfs"].isna().sum()) == int((flow["flag"] == "M").sum()) == 92
    assert "qobs_mm" not in flow  # no area, no conversion


def test_streamflow_record_may_start_late(camels_dir: Path) -> None:
    flow = camels.read_streamflow(camels.streamflow_path(camels_dir, "01195100"))
    assert flow.index[0] == pd.Timestamp("1981-11-04")


def test_cfs_conversion_rejects_a_non_positive_area() -> None:
    with pytest.raises(DataError, match="positive"):
        camels.cfs_to_mm_per_day(100.0, 0.0)


# ----------------------------------------------------------------------------- attributes


def test_attributes_join_all_seven_files_on_string_gauge_ids(attributes: pd.DataFrame) -> None:
    assert attributes.shape[0] == 671
    assert attributes.index[0] == "01013500"  # leading zero kept: ids are 8-char strings
    assert attributes.index.str.len().unique().tolist() == [8]
    for column in ("p_mean", "geol_1st_class", "baseflow_index", "huc_02", "soil_depth_statsgo",
                   "area_gages2", "frac_forest", "gauge_lat"):
        assert column in attributes.columns
    row = attributes.loc[GAUGE]
    assert row["gauge_lat"] == 44.60797 and row["area_gages2"] == 573.6
    assert row["baseflow_index"] == pytest.approx(0.554478447930409)
    assert row["huc_02"] == "01"


def test_table_a1_names_are_all_selectable_in_paper_order(attributes: pd.DataFrame) -> None:
    assert len(camels.TABLE_A1) == 35
    table, categories = camels.select_attributes(attributes, basins=[GAUGE, "02464000"])
    assert list(table.columns) == list(camels.TABLE_A1)
    assert table.dtypes.unique().tolist() == [np.dtype("float64")]
    # the file spells it geol_porostiy; the paper's name reads it
    assert table.at[GAUGE, "geol_porosity"] == pytest.approx(0.071)
    assert set(categories) == set(camels.CATEGORICAL_ATTRIBUTES)


def test_categorical_attributes_are_codes_of_the_sorted_class_list(attributes: pd.DataFrame) -> None:
    table, categories = camels.select_attributes(attributes, ["dom_land_cover", "geol_2nd_class"])
    assert categories["dom_land_cover"][0] == "Barren or Sparsely Vegetated"
    assert len(categories["dom_land_cover"]) == 12  # leading blanks in the file are stripped
    assert categories["dom_land_cover"][int(table.at[GAUGE, "dom_land_cover"])] == "Mixed Forests"
    # camels_geol.txt: 01022500;Acid plutonic rocks;0.59...;Siliciclastic sedimentary rocks;...
    assert categories["geol_2nd_class"][int(table.at[GAUGE, "geol_2nd_class"])] == "Siliciclastic sedimentary rocks"
    assert table["geol_2nd_class"].isna().sum() == 138  # "NA" in the file


def test_unknown_attribute_is_a_data_error_naming_it(attributes: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"unknown attribute\(s\) 'p_maen'"):
        camels.select_attributes(attributes, ["p_mean", "p_maen"])


def test_non_numeric_attribute_value_names_file_basin_and_key(camels_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / camels.ATTRIBUTE_DIR
    shutil.copytree(camels_dir / camels.ATTRIBUTE_DIR, folder)
    topo = folder / "camels_topo.txt"
    topo.write_text(topo.read_text().replace(f"{GAUGE};44.60797;", f"{GAUGE};north;"))
    with pytest.raises(DataError, match=rf"camels_topo\.txt: attribute gauge_lat of basin {GAUGE} .*'north'"):
        camels.read_attributes(tmp_path)


def test_missing_attribute_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"camels_clim\.txt does not exist"):
        camels.read_attributes(tmp_path)


# ----------------------------------------------------------------------------- SAC-SMA


def test_sacsma_output_reader(camels_dir: Path) -> None:
    paths = sacsma.sacsma_paths(camels_dir, "01031500")
    assert [p.name for p in paths] == ["01031500_05_model_output.txt"]
    out = sacsma.read_sacsma_output(paths[0])
    assert list(out.columns) == ["SWE", "PRCP", "RAIM", "TAIR", "PET", "ET", "MOD_RUN", "OBS_RUN"]
    assert out.index[0] == pd.Timestamp("1980-10-01") and out.index[-1] == pd.Timestamp("2014-12-31")
    assert out.loc["1980-10-02"].to_dict() == {
        "SWE": 0.0, "PRCP": 2.08, "RAIM": 2.08, "TAIR": 9.59, "PET": 1.2619, "ET": 1.2227,
        "MOD_RUN": 2.0492, "OBS_RUN": 0.4979,
    }
    assert len(out) == (pd.Timestamp("2014-12-31") - pd.Timestamp("1980-10-01")).days + 1
    assert sacsma.sacsma_paths(camels_dir, GAUGE) == []


def test_sacsma_obs_run_agrees_with_usgs_streamflow(camels_dir: Path, attributes: pd.DataFrame) -> None:
    out = sacsma.read_sacsma_output(sacsma.sacsma_paths(camels_dir, "01031500")[0])
    flow = camels.read_streamflow(camels.streamflow_path(camels_dir, "01031500"), attributes.at["01031500", "area_gages2"])
    both = pd.concat([out["OBS_RUN"], flow["qobs_mm"]], axis=1, join="inner").dropna()
    # CAMELS used its own basin area for OBS_RUN: same series up to a constant factor
    ratio = both["OBS_RUN"] / both["qobs_mm"]
    assert ratio.std() / ratio.mean() < 0.01


def test_sacsma_wrong_header_is_a_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "01031500_05_model_output.txt"
    bad.write_text("YR MNTH DY HR SWE PRCP\n1980 10 01 12 0 0\n")
    with pytest.raises(DataError, match=r"line 1 should be the header YR MNTH DY HR SWE"):
        sacsma.read_sacsma_output(bad)
