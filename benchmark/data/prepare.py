"""The ``prepare`` stage: raw CAMELS-US folder -> ``camels.nc`` + ``manifest.json``.

Reads the basins and periods of the active profile of ``params.yaml`` and the ``data``
section (raw folder, forcing product, optional MODIS folder, output folder), validates
everything before writing anything, then writes the dataset (:func:`build_dataset`)
into a temporary folder that replaces ``data.processed_dir``
in one rename, so a failed run leaves no partial output.

Periods: the training period must lie inside every basin's forcing record (the training
warm-up is the first ``warmup_days`` of each training window, as in the authors' code);
the test period plus the ``warmup_days`` before it, and the optional validation period,
must lie inside it too.

Plausibility (:mod:`benchmark.data.checks`): every forcing value, the computed PET and the
observed flow must lie in its physical range, and every basin needs at least one flow
observation in each of the training, validation and test periods (or, with
``data.unobserved_basins: warn``, gets a warning recorded under ``warnings`` in
``manifest.json``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np
import pandas as pd
import xarray as xr

from benchmark import atomic
from benchmark.config import Params, ProfileConfig, resolve_path
from benchmark.data import camels, checks, modis
from benchmark.data.pet import hargreaves_pet, hargreaves_pet_series
from benchmark.errors import DataError

DATASET_FILE = "camels.nc"
MANIFEST_FILE = "manifest.json"
CREATED_BY = "hbvbench prepare"
TIME_SERIES: tuple[str, ...] = ("prcp", "tmax", "tmin", "tmean", "srad", "vp", "dayl", "swe", "pet", "qobs")
UNITS: dict[str, str] = {
    **camels.FORCING_UNITS, "tmean": "degC", "pet": "mm/day", "qobs": "mm/day", "et_modis": "mm/day",
    "area_km2": "km2", "gauge_lat": "degrees_north", "gauge_lon": "degrees_east", "baseflow_index": "-",
}


@dataclass
class RawBasin:
    """Everything read for one basin before it goes into the dataset."""

    gauge_id: str
    forcing: camels.BasinForcing
    streamflow: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    et_modis: pd.Series | None = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def raw_profile_basins(raw_dir: Path, product: str, requested: Sequence[str] | str) -> list[str]:
    """The profile's basins: the list given, or every basin with forcing and streamflow files.

    Raises
    ------
    DataError
        An id is not 8 digits, appears twice, or "all" finds no basin in ``raw_dir``.
    """
    if requested == "all":
        basins = camels.list_basins(raw_dir, product)
        if not basins:
            raise DataError(
                f"no basin has both {raw_dir}/basin_mean_forcing/{product}/*/*{camels.FORCING_SUFFIX[product]} "
                f"and {raw_dir}/usgs_streamflow/*/*{camels.STREAMFLOW_SUFFIX}"
            )
        return basins
    basins = [camels.check_gauge_id(b, "profile basins") for b in requested]
    if len(set(basins)) != len(basins):
        duplicate = next(b for b in basins if basins.count(b) > 1)
        raise DataError(f"profile basins: basin {duplicate} is listed twice")
    if not basins:
        raise DataError("profile basins: the list is empty")
    return sorted(basins)


def required_windows(profile: ProfileConfig) -> dict[str, tuple[dt.date, dt.date]]:
    """The date ranges each basin's record must cover (see the module docstring)."""
    warmup = dt.timedelta(days=profile.warmup_days)
    windows = {
        "train": (profile.train.start, profile.train.end),
        f"test (with {profile.warmup_days}-day warm-up)": (profile.test.start - warmup, profile.test.end),
    }
    if profile.validation is not None:
        windows["validation"] = (profile.validation.start, profile.validation.end)
    return windows


def check_periods(basin: RawBasin, windows: dict[str, tuple[dt.date, dt.date]], profile_name: str) -> None:
    """Raise DataError if a required window is not fully inside the basin's forcing record."""
    index = basin.forcing.data.index
    first, last = index[0].date(), index[-1].date()
    for name, (start, end) in windows.items():
        if start < first or end > last:
            raise DataError(
                f"profile {profile_name!r}: {name} period {start}..{end} is outside the record "
                f"{first}..{last} of basin {basin.gauge_id} ({basin.files['forcing']})"
            )
        inside = index[(index >= pd.Timestamp(start)) & (index <= pd.Timestamp(end))]
        if len(inside) != (end - start).days + 1:
            raise DataError(
                f"profile {profile_name!r}: {name} period {start}..{end}: basin {basin.gauge_id} "
                f"forcing ({basin.files['forcing']}) has {(end - start).days + 1 - len(inside)} missing days in it"
            )


def observed_windows(profile: ProfileConfig) -> dict[str, tuple[dt.date, dt.date]]:
    """The periods in which every basin needs at least one flow observation."""
    windows = {"training": (profile.train.start, profile.train.end), "test": (profile.test.start, profile.test.end)}
    if profile.validation is not None:
        windows["validation"] = (profile.validation.start, profile.validation.end)
    return windows


def check_basin_values(basin: RawBasin, latitude_deg: float, attribute_file: Path) -> None:
    """DataError naming file, basin, date and variable for the first physically implausible value."""
    checks.check_plausible_value(latitude_deg, "gauge_lat", basin=basin.gauge_id, source=attribute_file)
    forcing = basin.forcing.data
    for name in camels.FORCING_UNITS:
        checks.check_plausible(forcing[name], name, basin=basin.gauge_id, source=basin.files["forcing"])
    checks.check_plausible(hargreaves_pet_series(forcing, latitude_deg), "pet", basin=basin.gauge_id,
                           source=f"Hargreaves PET from {basin.files['forcing']} at latitude {latitude_deg:g}")
    checks.check_plausible(basin.streamflow["qobs_mm"], "qobs", basin=basin.gauge_id, source=basin.files["streamflow"])


def read_basin(raw_dir: Path, gauge_id: str, product: str, area_km2: float, modis_dir: Path | None) -> RawBasin:
    """Read and validate one basin's forcing, streamflow and (optional) MODIS ET."""
    files = {
        "forcing": camels.forcing_path(raw_dir, gauge_id, product),
        "streamflow": camels.streamflow_path(raw_dir, gauge_id),
    }
    forcing = camels.read_forcing(files["forcing"])
    streamflow = camels.read_streamflow(files["streamflow"], area_km2)
    basin = RawBasin(gauge_id, forcing, streamflow, files)
    if modis_dir is not None:
        path = modis.modis_path(modis_dir, gauge_id)
        if path is not None:
            files["modis_et"] = path
            basin.et_modis = modis.daily_et(modis.read_modis_et(path))
    return basin


def _matrix(series: Sequence[pd.Series], dates: pd.DatetimeIndex) -> np.ndarray:
    return np.stack([s.reindex(dates).to_numpy(dtype=np.float64) for s in series]).astype(np.float32)


def build_dataset(
    basins: list[RawBasin],
    attributes: pd.DataFrame,
    *,
    product: str,
    source_dir: str,
    with_modis: bool,
    attribute_names: Sequence[str] = camels.TABLE_A1,
) -> tuple[xr.Dataset, dict[str, list[str]]]:
    """Assemble the processed dataset from validated basins: series ``(basin, date)``, attributes
    ``(basin, attribute)``, each variable with its ``units``."""
    ids = [b.gauge_id for b in basins]
    dates = basins[0].forcing.data.index
    for b in basins[1:]:
        if not b.forcing.data.index.equals(dates):
            dates = dates.union(b.forcing.data.index)
    dates = pd.DatetimeIndex(dates, name="date")
    frames = [b.forcing.data for b in basins]
    data: dict[str, np.ndarray] = {name: _matrix([f[name] for f in frames], dates) for name in camels.FORCING_UNITS}
    data["tmean"] = 0.5 * (data["tmax"] + data["tmin"])
    lat = attributes.loc[ids, "gauge_lat"].to_numpy(dtype=np.float64)
    doy = dates.dayofyear.to_numpy()[None, :]
    tmax = np.stack([f["tmax"].reindex(dates).to_numpy(dtype=np.float64) for f in frames])
    tmin = np.stack([f["tmin"].reindex(dates).to_numpy(dtype=np.float64) for f in frames])
    data["pet"] = hargreaves_pet(tmax, tmin, lat[:, None], doy).astype(np.float32)
    data["qobs"] = _matrix([b.streamflow["qobs_mm"] for b in basins], dates)
    if with_modis:
        empty = pd.Series(dtype=np.float64)
        data["et_modis"] = _matrix([b.et_modis if b.et_modis is not None else empty for b in basins], dates)

    static, categories = camels.select_attributes(attributes, attribute_names, ids)
    variables = {name: (("basin", "date"), values, {"units": UNITS[name]}) for name, values in data.items()}
    variables["attributes"] = (
        ("basin", "attribute"),
        static.to_numpy(dtype=np.float32),
        {"description": "CAMELS static attributes (default: Song et al. 2024 Table A1); categorical ones "
                        "as integer codes: position in the sorted class list over all basins of the attribute files",
         "category_codes": json.dumps(categories)},
    )
    for name, column in (("baseflow_index", "baseflow_index"), ("area_km2", "area_gages2"),
                         ("gauge_lat", "gauge_lat"), ("gauge_lon", "gauge_lon")):
        variables[name] = (("basin",), attributes.loc[ids, column].to_numpy(dtype=np.float32), {"units": UNITS[name]})
    ds = xr.Dataset(
        variables,
        coords={"basin": np.array(ids, dtype=object), "date": dates.to_numpy(dtype="datetime64[ns]"),
                "attribute": np.array(list(attribute_names), dtype=object)},
        attrs={
            "forcing_product": product,
            "source_dir": source_dir,
            "created_by": CREATED_BY,
            "category_codes": json.dumps(categories),
            "pet_method": "Hargreaves (1994), Ra from FAO-56, latitude = CAMELS gauge_lat "
                          "(docs/data.md#hargreaves-pet)",
            "qobs_conversion": "Q_cfs * 0.0283168 * 86400 / (area_gages2 km2 * 1e6) * 1e3; -999 -> NaN",
        },
    )
    return ds, categories


def build_manifest(
    ds: xr.Dataset,
    basins: list[RawBasin],
    raw_dir: Path,
    attribute_files: list[Path],
    *,
    profile_name: str,
    profile: ProfileConfig,
    categories: dict[str, list[str]],
    warnings: Sequence[str] = (),
) -> dict:
    """Provenance record: basins, periods, sha256 of every source file, missing-value counts,
    and the data warnings the user accepted (``data.unobserved_basins: warn``)."""
    def rel(path: Path) -> str:
        try:
            return str(path.relative_to(raw_dir))
        except ValueError:
            return str(path)

    hashes = {rel(p): sha256_file(p) for p in attribute_files}
    for b in basins:
        hashes.update({rel(p): sha256_file(p) for p in b.files.values()})
    series_vars = [v for v in ds.data_vars if ds[v].dims == ("basin", "date")]
    missing = {v: ds[v].isnull().sum("date").astype(int).to_series().to_dict() for v in series_vars}
    flags = {b.gauge_id: {k: int(n) for k, n in b.streamflow["flag"].value_counts().sort_index().items()} for b in basins}
    dates = ds.indexes["date"]
    return {
        "created_by": CREATED_BY,
        "dataset_file": DATASET_FILE,
        "forcing_product": ds.attrs["forcing_product"],
        "source_dir": ds.attrs["source_dir"],
        "profile": profile_name,
        "basins": [b.gauge_id for b in basins],
        "n_basins": len(basins),
        "record": {"start": str(dates[0].date()), "end": str(dates[-1].date()), "n_days": len(dates)},
        "periods": {
            "train": {"start": str(profile.train.start), "end": str(profile.train.end)},
            "test": {"start": str(profile.test.start), "end": str(profile.test.end)},
            "validation": None if profile.validation is None else
            {"start": str(profile.validation.start), "end": str(profile.validation.end)},
            "warmup_days": profile.warmup_days,
        },
        "variables": {v: ds[v].attrs.get("units", "") for v in ds.data_vars},
        "attributes": ds.indexes["attribute"].tolist(),
        "category_codes": categories,
        "missing_values": missing,
        "streamflow_flags": flags,
        "modis_et_basins": [b.gauge_id for b in basins if b.et_modis is not None],
        "source_files_sha256": dict(sorted(hashes.items())),
        "warnings": list(warnings),
    }


def write_atomically(out_dir: Path, ds: xr.Dataset, manifest: dict) -> None:
    """Write ``camels.nc`` and ``manifest.json`` into a new folder that replaces ``out_dir`` whole."""
    def build(folder: Path) -> None:
        encoding = {v: {"zlib": True, "complevel": 1} for v in ds.data_vars}
        ds.to_netcdf(folder / DATASET_FILE, engine="netcdf4", encoding=encoding)
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")

    atomic.replace_dir(out_dir, build)


def prepare(params: Params, root: Path | None = None, *, log: TextIO | None = None) -> Path:
    """Run the ``prepare`` stage for the active profile.

    Parameters
    ----------
    params
        The validated ``params.yaml`` (its ``data`` section and active profile are used).
    root
        Folder that relative paths in ``params.data`` are resolved against (default: the
        repository root).
    log
        Where data warnings are printed (``data.unobserved_basins: warn``; default stderr).

    Returns
    -------
    pathlib.Path
        The processed folder holding ``camels.nc`` and ``manifest.json``.

    Raises
    ------
    DataError
        Any validation failure; nothing is written then.
    """
    cfg = params.data
    kwargs = {} if root is None else {"root": Path(root)}
    product = camels.check_product(cfg.forcing_product)
    raw_dir = resolve_path(Path(cfg.raw_dir), **kwargs)
    if not raw_dir.is_dir():
        raise DataError(f"data.raw_dir {raw_dir} is not a folder (set data.raw_dir in params.yaml)")
    modis_dir = None if cfg.modis_et_dir is None else resolve_path(Path(cfg.modis_et_dir), **kwargs)
    if modis_dir is not None and not modis_dir.is_dir():
        raise DataError(f"data.modis_et_dir {modis_dir} is not a folder")
    out_dir = resolve_path(Path(cfg.processed_dir), **kwargs)
    profile = params.active

    ids = raw_profile_basins(raw_dir, product, profile.basins)
    attributes = camels.read_attributes(raw_dir)
    attribute_names = camels.TABLE_A1 if cfg.attributes == "table_a1" else tuple(cfg.attributes)
    try:  # unknown names fail before any basin is read
        camels.select_attributes(attributes, attribute_names, [])
    except DataError as exc:
        raise DataError(f"data.attributes: {exc}") from None
    unknown = [b for b in ids if b not in attributes.index]
    if unknown:
        raise DataError(f"basin {unknown[0]} is not in the CAMELS attribute files under {raw_dir / camels.ATTRIBUTE_DIR}")
    windows = required_windows(profile)
    basins, warnings = [], []
    for gauge_id in ids:
        basin = read_basin(raw_dir, gauge_id, product, float(attributes.at[gauge_id, "area_gages2"]), modis_dir)
        check_periods(basin, windows, params.profile)
        check_basin_values(basin, float(attributes.at[gauge_id, "gauge_lat"]), camels.attribute_path(raw_dir, "topo"))
        warning = checks.check_observed(basin.streamflow["qobs_mm"], observed_windows(profile), basin=gauge_id,
                                        source=basin.files["streamflow"], on_missing=cfg.unobserved_basins)
        if warning is not None:
            warnings.append(warning)
            print(f"hbvbench prepare: warning: {warning} (kept: data.unobserved_basins is 'warn')", file=log or sys.stderr)
        basins.append(basin)
    ds, categories = build_dataset(
        basins, attributes, product=product, source_dir=str(cfg.raw_dir), with_modis=modis_dir is not None,
        attribute_names=attribute_names,
    )
    attribute_files = [camels.attribute_path(raw_dir, g) for g in camels.ATTRIBUTE_GROUPS]
    manifest = build_manifest(
        ds, basins, raw_dir, attribute_files, profile_name=params.profile, profile=profile, categories=categories,
        warnings=warnings,
    )
    write_atomically(out_dir, ds, manifest)
    return out_dir
