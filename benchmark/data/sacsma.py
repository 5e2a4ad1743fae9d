"""Reader for the CAMELS SAC-SMA + Snow-17 model output (the benchmark's reference model).

Files ``model_output/flow_timeseries/{product}/{huc2}/{gauge}_{seed}_model_output.txt``
(``seed`` is the calibration run, e.g. ``05``): whitespace-separated with header
``YR MNTH DY HR SWE PRCP RAIM TAIR PET ET MOD_RUN OBS_RUN``; SWE in mm, TAIR in degC,
every other column in mm/day.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.camels import FORCING_SUFFIX, _dates, _diagnose_numeric, _fast_numeric
from benchmark.errors import DataError

SACSMA_HEADER: tuple[str, ...] = ("YR", "MNTH", "DY", "HR", "SWE", "PRCP", "RAIM", "TAIR", "PET", "ET", "MOD_RUN", "OBS_RUN")
SACSMA_UNITS: dict[str, str] = {
    "SWE": "mm", "PRCP": "mm/day", "RAIM": "mm/day", "TAIR": "degC", "PET": "mm/day",
    "ET": "mm/day", "MOD_RUN": "mm/day", "OBS_RUN": "mm/day",
}


def sacsma_paths(raw_dir: Path | str, gauge_id: str, product: str = "daymet") -> list[Path]:
    """All SAC-SMA output files of a basin (one per calibration seed), sorted; may be empty."""
    if product not in FORCING_SUFFIX:
        raise DataError(f"unknown forcing product {product!r}; expected one of {', '.join(FORCING_SUFFIX)}")
    folder = Path(raw_dir) / "model_output" / "flow_timeseries" / product
    return sorted(folder.glob(f"*/{gauge_id}_*_model_output.txt"))


def read_sacsma_output(path: Path | str) -> pd.DataFrame:
    """Read one SAC-SMA model output file.

    Parameters
    ----------
    path
        A ``{gauge}_{seed}_model_output.txt`` file.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``date`` with float64 columns ``SWE`` (mm), ``PRCP``, ``RAIM``
        (mm/day), ``TAIR`` (degC), ``PET``, ``ET``, ``MOD_RUN`` (simulated streamflow),
        ``OBS_RUN`` (observed streamflow) in mm/day; negative runoff values (missing
        observations) are NaN.

    Raises
    ------
    DataError
        Missing file, wrong header, malformed or non-numeric line, bad dates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SAC-SMA output file {path} does not exist")
    header, _, body = path.read_text(errors="replace").partition("\n")
    if tuple(header.split()) != SACSMA_HEADER:
        raise DataError(f"{path}: line 1 should be the header {' '.join(SACSMA_HEADER)}, got {header.strip()!r}")
    values = _fast_numeric(body, len(SACSMA_HEADER))
    if values is None:
        values = _diagnose_numeric(path, body, 2, SACSMA_HEADER)
    index = _dates(path, values[:, 0], values[:, 1], values[:, 2], 2)
    frame = pd.DataFrame(values[:, 4:], index=index, columns=list(SACSMA_UNITS))
    for column in ("MOD_RUN", "OBS_RUN"):
        frame[column] = frame[column].where(frame[column] >= 0, np.nan)
    return frame
