"""The reference run of basin 01022500 (tests/reference/README.md) as tensors, for model tests.

Every reference series was produced with the forcing of ``forcing_01022500.csv``
(1980-10-01..1995-09-30, 5478 days), all parameters at mid-range (u = 0.5), routing
a = 1.45, b = 3.25, nmul = 1.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmark.models.parameters import HBV_PARAMETERS, mid_range_parameters

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
ROUTING = (1.45, 3.25)
SEQUENTIAL_INITIAL_STORAGE_MM = 0.001
"""The authors' sequential code starts every storage at 0.001 mm (reference README)."""

FLOW_TOTAL_RTOL = 1e-4
"""Allowed relative difference of the summed flow over the whole period."""
DAILY_ATOL_MM = 1e-3
"""Allowed absolute difference on every day (mm/day)."""


@lru_cache(maxsize=None)
def reference_frame(name: str) -> pd.DataFrame:
    """``tests/reference/<name>.csv`` indexed by date."""
    return pd.read_csv(REFERENCE_DIR / f"{name}.csv", parse_dates=["date"], index_col="date")


def forcing(dtype: torch.dtype = torch.float64, days: slice = slice(None), n_basins: int = 1) -> torch.Tensor:
    """The reference forcing ``[T, n_basins, 3]`` (P mm/day, mean T degC, PET mm/day)."""
    df = reference_frame("forcing_01022500").iloc[days]
    x = torch.tensor(df[["prcp", "tmean", "pet"]].to_numpy(), dtype=dtype)
    return x.unsqueeze(1).expand(-1, n_basins, -1).contiguous()


def mid_params(dtype: torch.dtype = torch.float64, n_basins: int = 1) -> dict[str, torch.Tensor]:
    """Every HBV parameter at mid-range, static ``[n_basins]``."""
    return {name: torch.full((n_basins,), value, dtype=dtype)
            for name, value in mid_range_parameters(list(HBV_PARAMETERS)).items()}


def assert_matches(sim: torch.Tensor, ref: pd.Series | np.ndarray, *, label: str, flow: bool = True) -> None:
    """Daily series within :data:`DAILY_ATOL_MM`; for flows also the total within :data:`FLOW_TOTAL_RTOL`."""
    s = sim.detach().to(torch.float64).cpu().numpy()
    r = np.asarray(ref, dtype=np.float64)
    worst = np.abs(s - r).max()
    assert worst <= DAILY_ATOL_MM, f"{label}: max daily difference {worst:.3g} mm/day > {DAILY_ATOL_MM}"
    if flow:
        rel = abs(s.sum() - r.sum()) / r.sum()
        assert rel <= FLOW_TOTAL_RTOL, f"{label}: total differs by {rel:.3g} relative > {FLOW_TOTAL_RTOL}"
