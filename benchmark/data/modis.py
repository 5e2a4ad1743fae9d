"""Reader for basin-mean MODIS MOD16A2 (v006) evapotranspiration files.

File ``{gauge}_lump_modis16a2v006_et.txt``: comma-separated, header
``Year,Mnth,Day,Hr,ET(kg/m^2/8day),LE(J/m^2/day),PET(kg/m^2/8day),PLE(J/m^2/day),ET_QC``,
one row per 8-day composite dated by its first day. Composites start on day of year
1, 9, 17, ..., 361, so the last one of a year covers 5 days (6 in leap years) and its
value is the total over those days (MOD16 user guide). 1 kg/m2 of water = 1 mm.

Missing values: the product's valid ET range is 0..32700 in stored integers with scale
0.1, i.e. 0..3270 kg/m2/8day; anything outside (the 3276x fill codes, their unscaled
327xx form, negatives) or non-finite is missing. ``ET_QC`` is the MOD15A2 FparLai QC byte
(0..254, 255 = fill); a composite whose QC is missing, negative or 255 is dropped, and
``max_qc`` can tighten that (rows with ``ET_QC > max_qc`` dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from benchmark.errors import DataError

MODIS_SUFFIX = "_lump_modis16a2v006_et.txt"
MODIS_HEADER: tuple[str, ...] = (
    "Year", "Mnth", "Day", "Hr", "ET(kg/m^2/8day)", "LE(J/m^2/day)", "PET(kg/m^2/8day)",
    "PLE(J/m^2/day)", "ET_QC",
)
ET_VALID_MAX = 3270.0  # kg/m2/8day: 32700 stored * 0.1 scale
QC_FILL = 255
COMPOSITE_DAYS = 8


def modis_path(modis_dir: Path | str, gauge_id: str) -> Path | None:
    """The basin's MODIS file in ``modis_dir`` (or one sub-folder down), or None if absent."""
    folder = Path(modis_dir)
    name = f"{gauge_id}{MODIS_SUFFIX}"
    if (folder / name).is_file():
        return folder / name
    matches = sorted(folder.glob(f"*/{name}"))
    return matches[0] if matches else None


def composite_days(start: pd.DatetimeIndex) -> np.ndarray:
    """Number of days of each composite: 8, or up to 31 December for the last of a year."""
    year_end = pd.to_datetime({"year": start.year, "month": 12, "day": 31})
    to_year_end = (year_end.to_numpy() - start.to_numpy()) // np.timedelta64(1, "D") + 1
    return np.minimum(COMPOSITE_DAYS, to_year_end).astype(np.int64)


def read_modis_et(path: Path | str, max_qc: int | None = None) -> pd.DataFrame:
    """Read one MOD16A2 basin file into a table of composites.

    Parameters
    ----------
    path
        The ``{gauge}_lump_modis16a2v006_et.txt`` file.
    max_qc
        If given, composites with ``ET_QC > max_qc`` are treated as missing as well.

    Returns
    -------
    pandas.DataFrame
        Indexed by the composite's first day (``date``): ``et_mm`` (mm over the composite,
        NaN where missing), ``n_days`` (composite length, 8 or 5/6), ``et_mm_per_day``
        (``et_mm / n_days``), ``et_qc``.

    Raises
    ------
    DataError
        Missing file, wrong header, malformed or non-numeric line, bad or unordered dates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MODIS ET file {path} does not exist")
    with path.open() as handle:
        header = handle.readline().strip()
    if tuple(h.strip() for h in header.split(",")) != MODIS_HEADER:
        raise DataError(f"{path}: line 1 should be the header {','.join(MODIS_HEADER)}, got {header!r}")
    names = ["year", "month", "day", "hour", "et", "le", "pet", "ple", "qc"]
    try:
        frame = pl.read_csv(
            path, has_header=False, skip_rows=1, schema={n: pl.Float64 for n in names}
        ).to_pandas()
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise DataError(_first_bad_line(path, len(names)) or f"{path}: cannot be parsed: {exc}") from None
    ymd = frame[["year", "month", "day"]]
    if ymd.isna().to_numpy().any():
        raise DataError(_first_bad_line(path, len(names)) or f"{path}: a date field is empty")
    try:
        start = pd.DatetimeIndex(pd.to_datetime(ymd.astype(np.int64)), name="date")
    except (ValueError, OverflowError):
        raise DataError(f"{path}: a Year/Mnth/Day triple is not a valid date") from None
    if (np.diff(start.asi8) <= 0).any():
        raise DataError(f"{path}: composite dates must increase strictly")
    et = frame["et"].to_numpy()
    qc = frame["qc"].to_numpy()
    valid = np.isfinite(et) & (et >= 0) & (et <= ET_VALID_MAX)
    valid &= np.isfinite(qc) & (qc >= 0) & (qc != QC_FILL)
    if max_qc is not None:
        valid &= qc <= max_qc
    n_days = composite_days(start)
    et_mm = np.where(valid, et, np.nan)
    return pd.DataFrame(
        {"et_mm": et_mm, "n_days": n_days, "et_mm_per_day": et_mm / n_days, "et_qc": qc}, index=start
    )


def _first_bad_line(path: Path, n_fields: int) -> str | None:
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines()[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != n_fields:
            return f"{path}: line {line_no} is malformed: expected {n_fields} comma-separated fields, got {len(fields)}"
        for name, field in zip(MODIS_HEADER, fields):
            try:
                float(field)
            except ValueError:
                return f"{path}: line {line_no}: {name} should be a number, got {field.strip()!r}"
    return None


def daily_et(composites: pd.DataFrame) -> pd.Series:
    """Spread composites onto days: each day of a composite gets its mean ET in mm/day.

    Parameters
    ----------
    composites
        Output of :func:`read_modis_et`.

    Returns
    -------
    pandas.Series
        Daily ``et_modis`` in mm/day indexed by ``date``; days covered by no composite are
        absent (reindex to NaN).
    """
    starts = composites.index.to_numpy()
    lengths = composites["n_days"].to_numpy()
    offsets = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.array([], dtype=np.int64)
    days = np.repeat(starts, lengths) + offsets.astype("timedelta64[D]")
    values = np.repeat(composites["et_mm_per_day"].to_numpy(), lengths)
    series = pd.Series(values, index=pd.DatetimeIndex(days, name="date"), name="et_modis")
    return series[~series.index.duplicated(keep="first")]
