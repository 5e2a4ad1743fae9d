"""Readers for the raw CAMELS-US files, in the official folder layout.

Layout (relative to the raw folder, e.g. ``data/camels_us`` or the extracted
``basin_dataset_public_v1p2`` of the full download)::

    basin_mean_forcing/{product}/{huc2}/{gauge}{suffix}     product: daymet | maurer | nldas
    usgs_streamflow/{huc2}/{gauge}_streamflow_qc.txt
    camels_attributes_v2.0/camels_{clim,geol,hydro,name,soil,topo,vege}.txt

Every reader raises :class:`~benchmark.errors.DataError` naming the file (and line or key)
when the input is not what CAMELS publishes.

Parsing speed (35 embedded Daymet files, 12 788 lines each, measured on the 2-core dev box):
polars 0.25 s against pandas ``read_csv(sep=r"\\s+")`` 0.67 s, so forcing is parsed with
polars; for the streamflow files (variable runs of spaces, string columns) a generic polars
tokeniser was no faster than pandas' C parser (0.25 s untyped vs 0.37 s typed), so they
are read with pandas.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import polars as pl

from benchmark.errors import DataError

FORCING_SUFFIX: dict[str, str] = {
    "daymet": "_lump_cida_forcing_leap.txt",
    "maurer": "_lump_maurer_forcing_leap.txt",
    "nldas": "_lump_nldas_forcing_leap.txt",
}
FORCING_HEADER: tuple[str, ...] = (
    "year", "mnth", "day", "hr", "dayl(s)", "prcp(mm/day)", "srad(w/m2)", "swe(mm)",
    "tmax(c)", "tmin(c)", "vp(pa)",
)
#: forcing variables as named in the processed dataset, with their units
FORCING_UNITS: dict[str, str] = {
    "dayl": "s", "prcp": "mm/day", "srad": "W/m2", "swe": "mm",
    "tmax": "degC", "tmin": "degC", "vp": "Pa",
}
STREAMFLOW_SUFFIX = "_streamflow_qc.txt"
STREAMFLOW_FLAGS: frozenset[str] = frozenset({"A", "A:e", "M"})
STREAMFLOW_MISSING = -999.0
CFS_TO_M3S = 0.0283168
ATTRIBUTE_DIR = "camels_attributes_v2.0"
ATTRIBUTE_GROUPS: tuple[str, ...] = ("clim", "geol", "hydro", "name", "soil", "topo", "vege")
#: the official geology file spells this column "geol_porostiy"; we use the paper's name
ATTRIBUTE_RENAMES: dict[str, str] = {"geol_porostiy": "geol_porosity"}

#: the 35 static attributes of Song et al. (2024) Table A1, in the paper's order
TABLE_A1: tuple[str, ...] = (
    "p_mean", "pet_mean", "p_seasonality", "frac_snow", "aridity", "high_prec_freq",
    "high_prec_dur", "low_prec_freq", "low_prec_dur", "elev_mean", "slope_mean",
    "area_gages2", "frac_forest", "lai_max", "lai_diff", "gvf_max", "gvf_diff",
    "dom_land_cover_frac", "dom_land_cover", "root_depth_50", "soil_depth_pelletier",
    "soil_depth_statsgo", "soil_porosity", "soil_conductivity", "max_water_content",
    "sand_frac", "silt_frac", "clay_frac", "geol_1st_class", "glim_1st_class_frac",
    "geol_2nd_class", "glim_2nd_class_frac", "carbonate_rocks_frac", "geol_porosity",
    "geol_permeability",
)
#: Table A1 attributes that are class names; encoded as integer codes (see select_attributes)
CATEGORICAL_ATTRIBUTES: tuple[str, ...] = ("dom_land_cover", "geol_1st_class", "geol_2nd_class")
#: non-numeric columns that are not model inputs
TEXT_ATTRIBUTES: tuple[str, ...] = (
    "high_prec_timing", "low_prec_timing", "huc_02", "gauge_name", *CATEGORICAL_ATTRIBUTES,
)


@dataclass(frozen=True)
class BasinForcing:
    """One basin-mean forcing file.

    Attributes
    ----------
    gauge_id
        8-digit USGS gauge id (from the file name).
    latitude
        Header line 1, decimal degrees.
    elevation_m
        Header line 2, basin mean elevation in m.
    area_m2
        Header line 3, basin area in m2 (the forcing product's own estimate).
    data
        Daily table indexed by ``date`` with columns ``dayl`` s, ``prcp`` mm/day,
        ``srad`` W/m2, ``swe`` mm, ``tmax`` degC, ``tmin`` degC, ``vp`` Pa (float64).
    """

    gauge_id: str
    latitude: float
    elevation_m: float
    area_m2: float
    data: pd.DataFrame


def check_gauge_id(gauge_id: str, where: str = "basin list") -> str:
    """Return ``gauge_id`` if it is an 8-digit string, else raise DataError naming ``where``."""
    if not (isinstance(gauge_id, str) and len(gauge_id) == 8 and gauge_id.isdigit()):
        raise DataError(f"{where}: basin id {gauge_id!r} is not an 8-digit USGS gauge id")
    return gauge_id


def check_product(product: str) -> str:
    """Return ``product`` if it is a known CAMELS forcing product, else raise DataError."""
    if product not in FORCING_SUFFIX:
        raise DataError(
            f"unknown forcing product {product!r} (data.forcing_product); expected one of "
            f"{', '.join(FORCING_SUFFIX)}"
        )
    return product


def _find_one(folder: Path, pattern: str, what: str) -> Path:
    matches = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not matches:
        raise DataError(f"{what}: no file {folder / pattern} (expected the official CAMELS-US layout)")
    if len(matches) > 1:
        listed = ", ".join(str(m) for m in matches)
        raise DataError(f"{what}: more than one file matches {folder / pattern}: {listed}")
    return matches[0]


def forcing_path(raw_dir: Path | str, gauge_id: str, product: str = "daymet") -> Path:
    """Path of a basin's forcing file ``basin_mean_forcing/{product}/*/{gauge}{suffix}``.

    Raises
    ------
    DataError
        If the product is unknown or the file is missing (the message names the expected path).
    """
    suffix = FORCING_SUFFIX[check_product(product)]
    folder = Path(raw_dir) / "basin_mean_forcing" / product
    return _find_one(folder, f"*/{gauge_id}{suffix}", f"basin {gauge_id} {product} forcing")


def streamflow_path(raw_dir: Path | str, gauge_id: str) -> Path:
    """Path of a basin's USGS file ``usgs_streamflow/*/{gauge}_streamflow_qc.txt``."""
    folder = Path(raw_dir) / "usgs_streamflow"
    return _find_one(folder, f"*/{gauge_id}{STREAMFLOW_SUFFIX}", f"basin {gauge_id} streamflow")


def list_basins(raw_dir: Path | str, product: str = "daymet") -> list[str]:
    """Sorted gauge ids that have both a forcing file of ``product`` and a streamflow file."""
    suffix = FORCING_SUFFIX[check_product(product)]
    raw_dir = Path(raw_dir)
    forcing = {p.name[: -len(suffix)] for p in (raw_dir / "basin_mean_forcing" / product).glob(f"*/*{suffix}")}
    flow = {p.name[: -len(STREAMFLOW_SUFFIX)] for p in (raw_dir / "usgs_streamflow").glob(f"*/*{STREAMFLOW_SUFFIX}")}
    return sorted(g for g in forcing & flow if len(g) == 8 and g.isdigit())


# ----------------------------------------------------------------------------- forcing


def _header_number(path: Path, lines: list[str], index: int, what: str) -> float:
    if index >= len(lines):
        raise DataError(f"{path}: file ends before header line {index + 1} ({what})")
    try:
        return float(lines[index])
    except ValueError:
        raise DataError(
            f"{path}: header line {index + 1} should be the {what} (a number), got {lines[index].strip()!r}"
        ) from None


def _diagnose_numeric(path: Path, body: str, first_line_no: int, columns: Sequence[str]) -> np.ndarray:
    """Parse a whitespace table line by line; raise DataError at the first bad line.

    The slow path: used when the fast parser fails, to name the line and column at fault
    (or to parse files whose spacing the fast parser does not handle).
    """
    rows = []
    for offset, line in enumerate(body.splitlines()):
        tokens = line.split()
        if not tokens:
            continue
        line_no = first_line_no + offset
        if len(tokens) != len(columns):
            raise DataError(
                f"{path}: line {line_no} is malformed: expected {len(columns)} fields "
                f"({' '.join(columns)}), got {len(tokens)}: {line.strip()!r}"
            )
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            bad = next(i for i, t in enumerate(tokens) if not _is_float(t))
            raise DataError(
                f"{path}: line {line_no}: {columns[bad]} should be a number, got {tokens[bad]!r}"
            ) from None
    if not rows:
        raise DataError(f"{path}: no data lines after the header")
    return np.asarray(rows, dtype=np.float64)


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _fast_numeric(body: str, n_columns: int) -> np.ndarray | None:
    """Parse single-space/tab separated numbers with polars; None when it cannot."""
    names = [f"c{i}" for i in range(n_columns)]
    try:
        frame = pl.read_csv(
            io.BytesIO(body.replace("\t", " ").encode()),
            separator=" ",
            has_header=False,
            schema={name: pl.Float64 for name in names},
        )
    except (pl.exceptions.PolarsError, ValueError):
        return None
    if frame.width != n_columns or frame.null_count().sum_horizontal().item() > 0:
        return None
    return frame.to_numpy()


def _dates(path: Path, year: np.ndarray, month: np.ndarray, day: np.ndarray, first_line_no: int) -> pd.DatetimeIndex:
    try:
        dates = pd.to_datetime(
            pd.DataFrame({"year": year.astype(np.int64), "month": month.astype(np.int64), "day": day.astype(np.int64)})
        )
    except (ValueError, OverflowError):
        for i, (y, m, d) in enumerate(zip(year, month, day)):
            try:
                pd.Timestamp(year=int(y), month=int(m), day=int(d))
            except (ValueError, OverflowError):
                raise DataError(f"{path}: line {first_line_no + i}: {int(y)}-{int(m)}-{int(d)} is not a valid date") from None
        raise DataError(f"{path}: the year/month/day columns do not form valid dates") from None
    index = pd.DatetimeIndex(dates, name="date")
    steps = np.diff(index.asi8)
    if steps.size and (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise DataError(
            f"{path}: line {first_line_no + i}: date {index[i].date()} does not follow {index[i - 1].date()} "
            "(dates must increase strictly)"
        )
    return index


def read_forcing(path: Path | str) -> BasinForcing:
    """Read one CAMELS basin-mean forcing file (daymet, maurer or nldas format).

    Parameters
    ----------
    path
        A ``{gauge}_lump_*_forcing_leap.txt`` file: three header lines (latitude in
        degrees, mean elevation in m, area in m2), a column header
        ``Year Mnth Day Hr dayl(s) prcp(mm/day) srad(W/m2) swe(mm) tmax(C) tmin(C) vp(Pa)``
        (case-insensitive), then one whitespace-separated line per day.

    Returns
    -------
    BasinForcing
        Header values and the daily table (see :class:`BasinForcing`).

    Raises
    ------
    DataError
        Missing file, wrong header, malformed line, non-numeric value or bad date; the
        message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"forcing file {path} does not exist")
    text = path.read_text(errors="replace")
    if not text.strip():
        raise DataError(f"{path}: the file is empty (an interrupted download or copy?); restore it from the CAMELS data")
    head = text.split("\n", 4)
    latitude = _header_number(path, head, 0, "latitude")
    elevation = _header_number(path, head, 1, "mean elevation in m")
    area = _header_number(path, head, 2, "area in m2")
    if len(head) < 5:
        raise DataError(f"{path}: file ends after the header, no data lines")
    columns = head[3].split()
    if [c.lower() for c in columns] != list(FORCING_HEADER):
        raise DataError(
            f"{path}: line 4 should be the column header {' '.join(FORCING_HEADER)} "
            f"(case-insensitive), got {head[3].strip()!r}"
        )
    body = head[4]
    values = _fast_numeric(body, len(columns))
    if values is None:
        values = _diagnose_numeric(path, body, 5, columns)
    index = _dates(path, values[:, 0], values[:, 1], values[:, 2], 5)
    data = pd.DataFrame(values[:, 4:], index=index, columns=list(FORCING_UNITS))
    gauge_id = path.name.split("_", 1)[0]
    return BasinForcing(gauge_id=gauge_id, latitude=latitude, elevation_m=elevation, area_m2=area, data=data)


# ----------------------------------------------------------------------------- streamflow


def cfs_to_mm_per_day(q_cfs: np.ndarray | pd.Series | float, area_km2: float) -> np.ndarray | pd.Series | float:
    """Convert a discharge in cubic feet per second to a depth in mm/day over ``area_km2``.

    ``Q_mm = Q_cfs * 0.0283168 * 86400 / (area_km2 * 1e6) * 1e3`` (docs/data.md#streamflow).
    """
    if not (np.isfinite(area_km2) and area_km2 > 0):
        raise DataError(f"basin area must be a positive number of km2, got {area_km2!r}")
    return q_cfs * CFS_TO_M3S * 86400.0 / (area_km2 * 1e6) * 1e3


def read_streamflow(path: Path | str, area_km2: float | None = None) -> pd.DataFrame:
    """Read one USGS streamflow file ``{gauge}_streamflow_qc.txt``.

    Parameters
    ----------
    path
        Lines ``gauge YYYY MM DD Q_cfs flag``; ``-999`` marks a missing value.
    area_km2
        Basin area (CAMELS ``area_gages2``); when given, ``qobs_mm`` is added.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``date``: ``qobs_cfs`` (ft3/s, NaN where missing), ``flag`` (USGS
        qualifier ``A``, ``A:e`` or ``M``, kept as published) and, with ``area_km2``,
        ``qobs_mm`` (mm/day).

    Raises
    ------
    DataError
        Missing file, malformed line, non-numeric value, unknown flag, bad date, a
        negative discharge other than -999, or a gauge column that differs from the file
        name's gauge.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"streamflow file {path} does not exist")
    names = ["gauge", "year", "month", "day", "qobs_cfs", "flag"]
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise DataError(f"{path}: the file is empty (an interrupted download or copy?); restore it from the CAMELS data")
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, names=names, engine="c",
            dtype={"gauge": str, "year": np.int64, "month": np.int64, "day": np.int64,
                   "qobs_cfs": np.float64, "flag": str},
        )
    except (ValueError, pd.errors.ParserError):
        frame = None
    if frame is None or frame.isna().to_numpy().any():
        frame = _diagnose_streamflow(path, names)
    expected_gauge = path.name.split("_", 1)[0]
    wrong = frame["gauge"] != expected_gauge
    if wrong.any():
        i = int(np.argmax(wrong.to_numpy()))
        raise DataError(f"{path}: line {i + 1}: gauge {frame['gauge'].iat[i]!r} differs from the file's gauge {expected_gauge}")
    unknown = ~frame["flag"].isin(STREAMFLOW_FLAGS)
    if unknown.any():
        i = int(np.argmax(unknown.to_numpy()))
        raise DataError(
            f"{path}: line {i + 1}: unknown USGS flag {frame['flag'].iat[i]!r}, expected one of {sorted(STREAMFLOW_FLAGS)}"
        )
    index = _dates(path, frame["year"].to_numpy(), frame["month"].to_numpy(), frame["day"].to_numpy(), 1)
    q = frame["qobs_cfs"].to_numpy(dtype=np.float64)
    negative = (q < 0) & (q != STREAMFLOW_MISSING)
    if negative.any():
        i = int(np.argmax(negative))
        raise DataError(
            f"{path}: line {i + 1}: discharge {q[i]:g} cfs is negative; only {STREAMFLOW_MISSING:g} "
            "(the missing-value code) may be"
        )
    q = np.where(q == STREAMFLOW_MISSING, np.nan, q)
    out = pd.DataFrame({"qobs_cfs": q, "flag": frame["flag"].to_numpy()}, index=index)
    if area_km2 is not None:
        out["qobs_mm"] = cfs_to_mm_per_day(q, area_km2)
    return out


def _diagnose_streamflow(path: Path, names: list[str]) -> pd.DataFrame:
    records = []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != len(names):
            raise DataError(
                f"{path}: line {line_no} is malformed: expected {len(names)} fields "
                f"(gauge year month day Q_cfs flag), got {len(tokens)}: {line.strip()!r}"
            )
        for column, token in zip(names[1:5], tokens[1:5]):
            if not _is_float(token):
                raise DataError(f"{path}: line {line_no}: {column} should be a number, got {token!r}")
        records.append((tokens[0], int(float(tokens[1])), int(float(tokens[2])), int(float(tokens[3])),
                        float(tokens[4]), tokens[5]))
    if not records:
        raise DataError(f"{path}: no data lines")
    return pd.DataFrame.from_records(records, columns=names)


# ----------------------------------------------------------------------------- attributes


def attribute_path(raw_dir: Path | str, group: str) -> Path:
    """Path of ``camels_attributes_v2.0/camels_{group}.txt``."""
    return Path(raw_dir) / ATTRIBUTE_DIR / f"camels_{group}.txt"


def _read_attribute_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"attribute file {path} does not exist (expected the official CAMELS-US layout)")
    try:
        frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, na_values=[], engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a ';'-separated CAMELS attribute table: {exc}") from None
    if frame.columns[0] != "gauge_id":
        raise DataError(f"{path}: first column should be gauge_id, got {frame.columns[0]!r}")
    frame = frame.apply(lambda col: col.str.strip())
    bad = ~frame["gauge_id"].str.fullmatch(r"\d{8}")
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise DataError(f"{path}: line {i + 2}: gauge_id {frame['gauge_id'].iat[i]!r} is not an 8-digit gauge id")
    duplicated = frame["gauge_id"].duplicated()
    if duplicated.any():
        raise DataError(f"{path}: gauge_id {frame['gauge_id'][duplicated].iat[0]} appears twice")
    frame = frame.rename(columns=ATTRIBUTE_RENAMES).set_index("gauge_id")
    return _to_numbers(path, frame)


def _to_numbers(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Convert every non-text column to float (``NA`` and empty -> NaN)."""
    out = {}
    for column in frame.columns:
        text = frame[column].replace({"NA": None, "": None})
        if column in TEXT_ATTRIBUTES:
            out[column] = text
            continue
        numbers = pd.to_numeric(text, errors="coerce")
        bad = numbers.isna() & text.notna()
        if bad.any():
            gauge = bad.index[np.argmax(bad.to_numpy())]
            raise DataError(f"{path}: attribute {column} of basin {gauge} should be a number, got {text[gauge]!r}")
        out[column] = numbers.astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def read_attributes(raw_dir: Path | str) -> pd.DataFrame:
    """Read and join the seven CAMELS attribute files on ``gauge_id``.

    Parameters
    ----------
    raw_dir
        The raw folder holding ``camels_attributes_v2.0/``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``gauge_id`` (8-character strings, sorted); numeric columns as float64
        (``NA`` -> NaN), class-name columns as stripped strings (None where ``NA``).
        ``geol_porostiy`` is renamed ``geol_porosity``. Units as in the CAMELS readme
        (e.g. ``area_gages2`` km2, ``p_mean`` mm/day, ``baseflow_index`` -).

    Raises
    ------
    DataError
        A file is missing or malformed, a value is not a number, a gauge id is
        duplicated, or the files do not list the same basins.
    """
    tables = [_read_attribute_file(attribute_path(raw_dir, group)) for group in ATTRIBUTE_GROUPS]
    reference = tables[0].index
    for group, table in zip(ATTRIBUTE_GROUPS[1:], tables[1:]):
        if not table.index.sort_values().equals(reference.sort_values()):
            missing = sorted(set(reference) ^ set(table.index))[:5]
            raise DataError(
                f"{attribute_path(raw_dir, group)}: lists different basins than "
                f"{attribute_path(raw_dir, ATTRIBUTE_GROUPS[0])} (e.g. {missing})"
            )
    joined = pd.concat(tables, axis=1, join="inner")
    duplicated = joined.columns[joined.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"{Path(raw_dir) / ATTRIBUTE_DIR}: column {duplicated[0]} appears in two attribute files")
    return joined.sort_index()


def category_lists(table: pd.DataFrame, names: Sequence[str] = CATEGORICAL_ATTRIBUTES) -> dict[str, list[str]]:
    """Sorted class names of each categorical attribute over all basins of ``table``."""
    return {name: sorted(table[name].dropna().unique().tolist()) for name in names}


def select_attributes(
    table: pd.DataFrame,
    names: Sequence[str] = TABLE_A1,
    basins: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Pick attributes by name as a float table, class names integer-coded.

    Parameters
    ----------
    table
        The output of :func:`read_attributes` (all basins: codes depend on every basin).
    names
        Attribute names (default: the 35 of Table A1, in the paper's order).
    basins
        Gauge ids to keep (default: all rows of ``table``).

    Returns
    -------
    (pandas.DataFrame, dict)
        The float64 table (rows ``basins``, columns ``names``), and for each categorical
        attribute selected the sorted class list whose positions are the codes
        (``code = categories.index(name)``; NaN where the class is ``NA``).

    Raises
    ------
    DataError
        Unknown attribute name or basin missing from the attribute files.
    """
    unknown = [n for n in names if n not in table.columns]
    if unknown:
        raise DataError(
            f"unknown attribute(s) {', '.join(map(repr, unknown))}; known attributes: "
            f"{', '.join(c for c in table.columns)}"
        )
    categories = category_lists(table, [n for n in names if n in CATEGORICAL_ATTRIBUTES])
    rows = table.index if basins is None else pd.Index(list(basins))
    absent = rows.difference(table.index)
    if len(absent):
        raise DataError(f"basin {absent[0]} is not in the CAMELS attribute files")
    columns = {}
    for name in names:
        values = table.loc[rows, name]
        if name in categories:
            lookup = {label: float(code) for code, label in enumerate(categories[name])}
            columns[name] = values.map(lookup).astype(np.float64)
        elif values.dtype == object:
            raise DataError(f"attribute {name!r} is text, not a model input; pick a numeric attribute")
        else:
            columns[name] = values.astype(np.float64)
    return pd.DataFrame(columns, index=rows), categories
