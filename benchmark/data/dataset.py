"""Loading the processed dataset written by ``hbvbench prepare``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from benchmark.config import Params, load_params, resolve_path
from benchmark.data.prepare import DATASET_FILE, MANIFEST_FILE
from benchmark.errors import DataError

REQUIRED_VARIABLES: tuple[str, ...] = (
    "prcp", "tmax", "tmin", "tmean", "srad", "vp", "dayl", "swe", "pet", "qobs",
    "attributes", "baseflow_index", "area_km2", "gauge_lat", "gauge_lon",
)


def dataset_path(params: Params | None = None) -> Path:
    """``<data.processed_dir>/camels.nc`` of ``params`` (default: the repository's params.yaml)."""
    params = params if params is not None else load_params()
    return resolve_path(Path(params.data.processed_dir)) / DATASET_FILE


def load_dataset(path: Path | str | None = None, params: Params | None = None) -> xr.Dataset:
    """Load the processed CAMELS dataset fully into memory.

    Parameters
    ----------
    path
        ``camels.nc`` itself or the folder holding it; default: from ``params``.
    params
        Used when ``path`` is None (default: the repository's ``params.yaml``).

    Returns
    -------
    xarray.Dataset
        Coordinates ``basin`` (8-digit str), ``date`` (datetime64[ns]), ``attribute``; the
        float32 variables of :func:`benchmark.data.prepare.build_dataset` (mm/day, degC, ...). The categorical
        attribute codes are in ``ds.attrs["category_codes"]`` (JSON).

    Raises
    ------
    DataError
        The file does not exist (run ``hbvbench prepare``), cannot be read, or lacks a
        variable of the schema.
    """
    target = Path(path) if path is not None else dataset_path(params)
    if target.is_dir():
        target = target / DATASET_FILE
    if not target.is_file():
        raise DataError(f"processed dataset {target} does not exist; run `hbvbench prepare` (or `dvc repro prepare`)")
    try:
        ds = xr.load_dataset(target, engine="netcdf4")
    except (OSError, ValueError) as exc:
        raise DataError(f"processed dataset {target} cannot be read: {exc}") from None
    missing = [v for v in REQUIRED_VARIABLES if v not in ds.variables]
    if missing:
        raise DataError(f"processed dataset {target} lacks {', '.join(missing)}; re-run `hbvbench prepare`")
    return ds.assign_coords(basin=ds.indexes["basin"].astype(str), attribute=ds.indexes["attribute"].astype(str))


def load_manifest(path: Path | str | None = None, params: Params | None = None) -> dict:
    """Read ``manifest.json`` next to the processed dataset (same arguments as :func:`load_dataset`)."""
    target = Path(path) if path is not None else dataset_path(params).parent
    if target.is_file():
        target = target.parent
    manifest = target / MANIFEST_FILE
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} does not exist; run `hbvbench prepare`")
    try:
        content = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"manifest {manifest} cannot be read ({exc}); run `hbvbench prepare` again") from None
    if not isinstance(content, dict):
        raise DataError(f"manifest {manifest} is not a JSON object; run `hbvbench prepare` again")
    return content


def profile_basins(params: Params, available: Sequence[str]) -> list[str]:
    """The active profile's basins among ``available`` (the prepared dataset's), sorted.

    ``basins: all`` takes every available basin.

    Raises
    ------
    DataError
        Naming the profile's basins that are not in the prepared dataset.
    """
    chosen = params.active.basins
    have = sorted(map(str, available))
    if chosen == "all":
        return have
    missing = [b for b in chosen if b not in set(have)]
    if missing:
        raise DataError(
            f"basins {missing} of profile {params.profile!r} are not in the processed dataset; re-run "
            f"`hbvbench prepare` with them in {params.data.raw_dir}"
        )
    return sorted(chosen)


def select_profile_basins(ds: xr.Dataset, params: Params) -> xr.Dataset:
    """``ds`` restricted to the active profile's basins (:func:`profile_basins`); all of them for ``basins: all``."""
    basins = profile_basins(params, ds["basin"].values)
    return ds if params.active.basins == "all" else ds.sel(basin=basins)
