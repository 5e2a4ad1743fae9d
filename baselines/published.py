"""Published reference numbers of Song et al. (2024) as data, for the leaderboard.

The values of the paper's Table 1 (streamflow metrics), Table 2 (signatures) and Table A2
(numerical schemes, V100 timings) live in ``baselines/published/*.csv``, shipped as package
data (read through :mod:`importlib.resources`, so an installed wheel has them too). They are medians over
the paper's 671 CAMELS-US basins, so the report shows them beside our numbers under the label
:data:`LABEL` and never mixes them into our medians.

Model identifiers are this project's names (``lstm_nh``, ``sacsma`` and the registry names
``dhbv``, ``dhbv_adj``, ``dhbv_cr``, ``dhbv_adj_cr``, ``dhbv_euler1d``, ...); ``paper_name``
keeps the paper's label. Metric columns use the keys of ``benchmark.metrics.basin_metrics``
(``NSE``, ``KGE``, ``absFLV``, ``FLV``, ``absFHV``, ``FHV``, ``lowRMSE``, ``peakRMSE``, in % and
mm/day as in the paper) and of the evaluation summary (``BFI_r``, ``ET_NSE``). Empty cells are
NaN: the paper reports "-" there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from benchmark.errors import DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from importlib.resources.abc import Traversable

CITATION = "Song, Y. et al. (2024), Hydrol. Earth Syst. Sci., 28, 3051-3077, doi:10.5194/hess-28-3051-2024"
SHORT_CITATION = "Song et al. 2024, HESS 28:3051, doi:10.5194/hess-28-3051-2024"
LABEL = "published, 671 basins"
PUBLISHED_PACKAGE = "baselines"
PUBLISHED_FOLDER = "published"

TableName = Literal["table1", "table2", "tableA2"]

_FILES: dict[str, tuple[str, str]] = {
    "table1": ("table1_streamflow.csv", "Table 1"),
    "table2": ("table2_signatures.csv", "Table 2"),
    "tableA2": ("tableA2_schemes.csv", "Table A2"),
}
_TEXT_COLUMNS = {"model", "paper_name", "dynamic_parameters", "numerical_scheme", "time_step",
                 "time_per_batch_text", "note"}


def _published_file(filename: str, directory: Path | None) -> "Path | Traversable":
    """``filename`` in ``directory``, or in the package data when ``directory`` is None."""
    if directory is not None:
        return Path(directory) / filename
    return resources.files(PUBLISHED_PACKAGE).joinpath(PUBLISHED_FOLDER, filename)


def load_published(table: TableName, directory: Path | None = None) -> pd.DataFrame:
    """One published table, one row per model (wide format).

    Parameters
    ----------
    table
        ``"table1"`` (streamflow metrics), ``"table2"`` (BFI r, ET NSE) or ``"tableA2"``
        (numerical schemes: memory MB, seconds per batch on a V100, metrics).
    directory
        Folder with the CSV files (default: the package's ``baselines/published``).

    Returns
    -------
    pandas.DataFrame
        The table's columns plus ``table`` (e.g. ``"Table 1"``), ``label``
        (:data:`LABEL`) and ``source`` (:data:`SHORT_CITATION`). Numeric columns are float.

    Raises
    ------
    DataError
        If ``table`` is unknown or its file is missing or malformed.
    """
    if table not in _FILES:
        raise DataError(f"unknown published table {table!r}; expected one of {sorted(_FILES)}")
    filename, title = _FILES[table]
    path = _published_file(filename, directory)
    if not path.is_file():
        raise DataError(f"published reference file {path} is missing")
    with path.open("rb") as handle:
        frame = pd.read_csv(handle, dtype={col: "string" for col in _TEXT_COLUMNS}, keep_default_na=True)
    if "model" not in frame.columns or frame["model"].isna().any():
        raise DataError(f"{path}: every row needs a 'model' identifier")
    for column in frame.columns:
        if column not in _TEXT_COLUMNS:
            try:
                frame[column] = pd.to_numeric(frame[column]).astype(float)
            except (TypeError, ValueError):
                raise DataError(f"{path}: column {column!r} must be numeric") from None
    frame["table"] = title
    frame["label"] = LABEL
    frame["source"] = SHORT_CITATION
    return frame


def published_long(table: TableName, directory: Path | None = None) -> pd.DataFrame:
    """One published table in tidy (long) format: one row per model and numeric quantity.

    Parameters
    ----------
    table
        As in :func:`load_published`.
    directory
        Folder with the CSV files (default: the package's).

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``paper_name``, ``metric``, ``value``, ``table``, ``label``,
        ``source``; cells the paper leaves empty ("-") are dropped.
    """
    wide = load_published(table, directory)
    id_columns = ["model", "paper_name", "table", "label", "source"]
    value_columns = [c for c in wide.columns if c not in _TEXT_COLUMNS and c not in id_columns]
    long = wide.melt(id_vars=id_columns, value_vars=value_columns, var_name="metric", value_name="value")
    long = long.dropna(subset=["value"]).reset_index(drop=True)
    return long[["model", "paper_name", "metric", "value", "table", "label", "source"]]


def published_value(table: TableName, model: str, metric: str, directory: Path | None = None) -> float:
    """A single published number, e.g. ``published_value("table1", "lstm_nh", "NSE") == 0.73``.

    Raises
    ------
    DataError
        If the model or metric is not in the table, or the paper reports no value there.
    """
    wide = load_published(table, directory).set_index("model")
    if model not in wide.index:
        raise DataError(f"model {model!r} is not in published {table}; it has {list(wide.index)}")
    if metric not in wide.columns:
        raise DataError(f"metric {metric!r} is not in published {table}")
    value = wide.at[model, metric]
    if pd.isna(value):
        raise DataError(f"published {table} reports no {metric} for {model}")
    return float(value)
