"""The ``prepare`` stage and ``load_dataset``: schema, values, validation errors, atomic output.

Fast tests work on 2-3 real basins copied into a temporary raw folder (official layout);
the 35-basin run is marked slow.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark import cli
from benchmark.config import load_params
from benchmark.data import camels
from benchmark.data.dataset import load_dataset, load_manifest
from benchmark.data.prepare import prepare
from benchmark.errors import DataError

GAUGE = "01022500"
BASINS = [GAUGE, "01031500"]
FIXTURE_MODIS = Path(__file__).parent / "fixtures" / "modis"


def make_raw(camels_dir: Path, target: Path, basins: list[str], *, streamflow: bool = True) -> Path:
    """Copy the attribute files and the given basins' files into ``target`` (official layout)."""
    shutil.copytree(camels_dir / camels.ATTRIBUTE_DIR, target / camels.ATTRIBUTE_DIR)
    for gauge in basins:
        for source in (camels.forcing_path(camels_dir, gauge), camels.streamflow_path(camels_dir, gauge)):
            if not streamflow and source.name.endswith(camels.STREAMFLOW_SUFFIX):
                continue
            destination = target / source.relative_to(camels_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return target


def write_params(
    folder: Path,
    raw_dir: Path,
    *,
    basins: list[str] | str = BASINS,
    train: tuple[str, str] = ("1990-10-01", "1995-09-30"),
    test: tuple[str, str] = ("1995-10-01", "2000-09-30"),
    data: dict | None = None,
) -> Path:
    """A params.yaml whose active profile ``t`` covers ``basins`` and the given periods."""
    params = {
        "profile": "t",
        "data": {"raw_dir": str(raw_dir), "processed_dir": str(folder / "processed"), **(data or {})},
        "profiles": {"t": {"basins": basins, "train": {"start": train[0], "end": train[1]},
                           "test": {"start": test[0], "end": test[1]}, "warmup_days": 365}},
    }
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_cli(params_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["--params", str(params_path), "prepare"])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, camels_dir: Path) -> Path:
    """Processed folder for BASINS read straight from the embedded data, with the MODIS fixture."""
    folder = tmp_path_factory.mktemp("prepared")
    params = write_params(folder, camels_dir, data={"modis_et_dir": str(FIXTURE_MODIS)})
    return prepare(load_params(params))


@pytest.fixture
def raw(tmp_path: Path, camels_dir: Path) -> Path:
    return make_raw(camels_dir, tmp_path / "raw", BASINS)


# ----------------------------------------------------------------------------- schema and values


def test_dataset_schema(prepared: Path) -> None:
    ds = load_dataset(prepared)
    assert list(ds["basin"].values) == BASINS
    assert ds["date"].dtype == np.dtype("datetime64[ns]")
    assert str(ds["date"].values[0])[:10] == "1980-01-01" and str(ds["date"].values[-1])[:10] == "2014-12-31"
    assert list(ds["attribute"].values) == list(camels.TABLE_A1)
    for name in ("prcp", "tmax", "tmin", "tmean", "srad", "vp", "dayl", "swe", "pet", "qobs", "et_modis"):
        assert ds[name].dims == ("basin", "date") and ds[name].dtype == np.float32, name
    assert ds["attributes"].dims == ("basin", "attribute") and ds["attributes"].dtype == np.float32
    for name in ("baseflow_index", "area_km2", "gauge_lat", "gauge_lon"):
        assert ds[name].dims == ("basin",), name
    assert ds["qobs"].attrs["units"] == "mm/day" and ds["tmean"].attrs["units"] == "degC"
    assert ds.attrs["forcing_product"] == "daymet" and ds.attrs["created_by"] == "hbvbench prepare"
    codes = json.loads(ds.attrs["category_codes"])
    assert codes["dom_land_cover"][int(ds["attributes"].sel(basin=GAUGE, attribute="dom_land_cover"))] == "Mixed Forests"


def test_dataset_values_match_the_reference_inputs(prepared: Path, reference_dir: Path) -> None:
    ds = load_dataset(prepared).sel(basin=GAUGE)
    reference = pd.read_csv(reference_dir / "forcing_01022500.csv", parse_dates=["date"], index_col="date")
    day = ds.sel(date=reference.index)
    for name in ("prcp", "tmax", "tmin", "tmean", "pet", "qobs"):
        np.testing.assert_allclose(day[name].values, reference[name].values, rtol=1e-6, atol=3e-6, err_msg=name)
    assert float(ds["area_km2"]) == pytest.approx(573.6)
    assert float(ds["baseflow_index"]) == pytest.approx(0.554478, abs=1e-6)
    assert np.isnan(ds["qobs"].sel(date="2014-10-01"))  # -999 in the USGS file


def test_modis_et_present_where_files_exist(prepared: Path) -> None:
    ds = load_dataset(prepared)
    leap_end = ds["et_modis"].sel(basin=GAUGE, date=slice("2000-12-26", "2000-12-31")).values
    np.testing.assert_array_equal(leap_end, np.full(6, 0.5, dtype=np.float32))
    assert ds["et_modis"].sel(basin="01031500").isnull().all()
    assert load_manifest(prepared)["modis_et_basins"] == [GAUGE]


def test_manifest_records_basins_periods_hashes_and_missing_counts(prepared: Path, camels_dir: Path) -> None:
    manifest = load_manifest(prepared)
    assert manifest["basins"] == BASINS and manifest["profile"] == "t"
    assert manifest["periods"]["train"] == {"start": "1990-10-01", "end": "1995-09-30"}
    assert manifest["record"] == {"start": "1980-01-01", "end": "2014-12-31", "n_days": 12784}
    forcing = camels.forcing_path(camels_dir, GAUGE)
    key = str(forcing.relative_to(camels_dir))
    assert manifest["source_files_sha256"][key] == hashlib.sha256(forcing.read_bytes()).hexdigest()
    assert "camels_attributes_v2.0/camels_topo.txt" in manifest["source_files_sha256"]
    assert manifest["missing_values"]["qobs"][GAUGE] == 92  # the 92 "-999 M" lines of the file
    assert manifest["missing_values"]["prcp"][GAUGE] == 0
    assert manifest["streamflow_flags"][GAUGE]["M"] == 92


def test_load_dataset_from_params(prepared: Path, tmp_path: Path, camels_dir: Path) -> None:
    params = write_params(tmp_path, camels_dir)
    text = params.read_text().replace(str(tmp_path / "processed"), str(prepared))
    params.write_text(text)
    ds = load_dataset(params=load_params(params))
    assert ds.sizes == {"basin": 2, "date": 12784, "attribute": 35}


def test_load_dataset_missing_file_says_run_prepare(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; run `hbvbench prepare`"):
        load_dataset(tmp_path / "nothing")


def test_basins_all_takes_every_basin_with_forcing_and_streamflow(tmp_path: Path, camels_dir: Path) -> None:
    raw = make_raw(camels_dir, tmp_path / "raw", BASINS)
    make_raw_forcing_only = camels.forcing_path(camels_dir, "02464000")
    target = raw / make_raw_forcing_only.relative_to(camels_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(make_raw_forcing_only, target)  # forcing without streamflow: not a usable basin
    out = prepare(load_params(write_params(tmp_path, raw, basins="all")))
    assert load_manifest(out)["basins"] == BASINS


def test_selected_attributes_by_name(tmp_path: Path, raw: Path) -> None:
    out = prepare(load_params(write_params(tmp_path, raw, data={"attributes": ["aridity", "geol_1st_class"]})))
    ds = load_dataset(out)
    assert list(ds["attribute"].values) == ["aridity", "geol_1st_class"]


# ----------------------------------------------------------------------------- validation errors


def _replace_line(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line_no - 1] = new
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda raw: camels.forcing_path(raw, GAUGE).unlink(),
         r"basin 01022500 daymet forcing: no file .*01022500_lump_cida_forcing_leap\.txt"),
        (lambda raw: camels.streamflow_path(raw, GAUGE).unlink(),
         r"basin 01022500 streamflow: no file .*01022500_streamflow_qc\.txt"),
        (lambda raw: _replace_line(camels.forcing_path(raw, GAUGE), 10, "1980 01 06 12\t31000.0\t0.00\n"),
         r"01022500_lump_cida_forcing_leap\.txt: line 10 is malformed: expected 11 fields"),
        (lambda raw: _replace_line(camels.forcing_path(raw, GAUGE), 4, "Year Mnth Day Hr prcp(mm/day)\n"),
         r"01022500_lump_cida_forcing_leap\.txt: line 4 should be the column header"),
        (lambda raw: _replace_line(camels.forcing_path(raw, GAUGE), 1, "latitude unknown\n"),
         r"01022500_lump_cida_forcing_leap\.txt: header line 1 should be the latitude"),
        (lambda raw: _replace_line(camels.forcing_path(raw, GAUGE), 7,
                                   "1980 01 03 12\t31425.93\tabc\t198.90\t0.00\t-0.65\t-11.23\t267.44\n"),
         r"line 7: prcp\(mm/day\) should be a number, got 'abc'"),
        (lambda raw: _replace_line(camels.streamflow_path(raw, GAUGE), 3, "01022500 1980 01 03   n/a A\n"),
         r"01022500_streamflow_qc\.txt: line 3: qobs_cfs should be a number, got 'n/a'"),
        (lambda raw: _replace_line(camels.streamflow_path(raw, GAUGE), 3, "01022500 1980 01 03   310.00\n"),
         r"01022500_streamflow_qc\.txt: line 3 is malformed: expected 6 fields"),
        (lambda raw: _replace_line(camels.streamflow_path(raw, GAUGE), 3, "01022500 1980 01 03   310.00 X\n"),
         r"01022500_streamflow_qc\.txt: line 3: unknown USGS flag 'X'"),
        (lambda raw: _replace_line(camels.forcing_path(raw, GAUGE), 6, "1980 02 30 12\t1\t1\t1\t1\t1\t1\t1\n"),
         r"line 6: 1980-2-30 is not a valid date"),
    ],
    ids=["missing-forcing", "missing-streamflow", "malformed-line", "wrong-header", "bad-header-number",
         "non-numeric-forcing", "non-numeric-streamflow", "short-streamflow-line", "unknown-flag", "bad-date"],
)
def test_bad_raw_files_fail_with_a_named_error_and_no_output(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt, message: str
) -> None:
    corrupt(raw)
    code, err = run_cli(write_params(tmp_path, raw), capsys)
    assert code == 2
    assert err.startswith("hbvbench prepare: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "processed").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".processed")] == []


def test_basin_without_files_is_named(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(write_params(tmp_path, raw, basins=[GAUGE, "01013500"]), capsys)
    assert code == 2 and "basin 01013500 daymet forcing: no file" in err


def test_basin_not_in_attributes_is_named(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(write_params(tmp_path, raw, basins=[GAUGE, "99999999"]), capsys)
    assert code == 2 and "basin 99999999 is not in the CAMELS attribute files" in err


@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        (("1990-10-01", "1995-09-30"), ("1995-10-01", "2015-09-30"),
         r"test \(with 365-day warm-up\) period 1994-10-01\.\.2015-09-30 is outside the record 1980-01-01\.\.2014-12-31 of basin 01022500"),
        (("1979-10-01", "1995-09-30"), ("1995-10-01", "2000-09-30"),
         r"train period 1979-10-01\.\.1995-09-30 is outside the record"),
    ],
    ids=["test-after-record", "train-before-record"],
)
def test_periods_outside_the_record(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str], train, test, message) -> None:
    code, err = run_cli(write_params(tmp_path, raw, train=train, test=test), capsys)
    assert code == 2 and re.search(message, err), err


def test_unknown_forcing_product_is_a_config_error(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(write_params(tmp_path, raw, data={"forcing_product": "cida"}), capsys)
    assert code == 2 and "data.forcing_product" in err and "'daymet'" in err


def test_unknown_attribute_is_named(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(write_params(tmp_path, raw, data={"attributes": ["aridity", "ariditty"]}), capsys)
    assert code == 2 and "data.attributes: unknown attribute(s) 'ariditty'" in err


def test_non_numeric_attribute_is_named(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topo = raw / camels.ATTRIBUTE_DIR / "camels_topo.txt"
    topo.write_text(topo.read_text().replace(f"{GAUGE};44.60797;-67.93524;92.68;17.79072;573.6;",
                                             f"{GAUGE};44.60797;-67.93524;92.68;17.79072;big;"))
    code, err = run_cli(write_params(tmp_path, raw), capsys)
    assert code == 2 and f"attribute area_gages2 of basin {GAUGE} should be a number, got 'big'" in err


def test_failed_run_keeps_the_previous_output(tmp_path: Path, raw: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(tmp_path, raw)
    assert run_cli(params, capsys)[0] == 0
    before = (tmp_path / "processed" / "camels.nc").read_bytes()
    _replace_line(camels.forcing_path(raw, GAUGE), 4, "Year Mnth Day\n")
    assert run_cli(params, capsys)[0] == 2
    assert (tmp_path / "processed" / "camels.nc").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == ["camels.nc", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".processed")] == []


@pytest.mark.slow
def test_prepare_all_35_embedded_basins(tmp_path: Path, camels_dir: Path, reference_dir: Path) -> None:
    out = prepare(load_params(write_params(tmp_path, camels_dir, basins="all",
                                           train=("1980-10-01", "1995-09-30"), test=("1995-10-01", "2010-09-30"))))
    ds = load_dataset(out)
    assert ds.sizes == {"basin": 35, "date": 12784, "attribute": 35}
    missing = ds["attributes"].isnull().sum("basin").to_series()
    # "NA" in the CAMELS files: geol_2nd_class of 5 of these basins, root_depth_50 of one
    assert missing[missing > 0].to_dict() == {"root_depth_50": 1, "geol_2nd_class": 5}
    assert int(ds["qobs"].sel(basin="01195100", date=slice("1980-01-01", "1981-11-03")).notnull().sum()) == 0
    reference = pd.read_csv(reference_dir / "forcing_01022500.csv", parse_dates=["date"], index_col="date")
    np.testing.assert_allclose(ds["pet"].sel(basin=GAUGE, date=reference.index).values, reference["pet"].values, atol=3e-6)
