"""Names, display order and the one fixed colour of every model, shared by tables and figures.

A model keeps its colour in every figure of every report: the known models have fixed
entries below; a name not listed gets a colour from :data:`EXTRA_COLOURS` chosen by a stable
hash of the name, so it too is the same from report to report.
"""

from __future__ import annotations

import zlib

#: Display labels in the paper's notation.
LABELS: dict[str, str] = {
    "lstm": "LSTM",
    "sacsma": "SAC-SMA",
    "dhbv": "δHBV",
    "dhbv_adj": "δHBV.adj",
    "dhbv_cr": "δHBV improved",
    "dhbv_adj_cr": "δHBV.adj improved",
    "dhbv_euler1d": "δHBV Euler 1 d",
    "dhbv_euler4h": "δHBV Euler 4 h",
    "dhbv_euler1h": "δHBV Euler 1 h",
    "dhbv_rk4": "δHBV RK4 1 d",
}

#: Fixed colours (colour-blind-aware Okabe-Ito / tab10 mix), one per model.
COLOURS: dict[str, str] = {
    "lstm": "#009E73",
    "sacsma": "#8C564B",
    "dhbv": "#0072B2",
    "dhbv_adj": "#D55E00",
    "dhbv_cr": "#56B4E9",
    "dhbv_adj_cr": "#E69F00",
    "dhbv_euler1d": "#9467BD",
    "dhbv_euler4h": "#CC79A7",
    "dhbv_euler1h": "#BCBD22",
    "dhbv_rk4": "#7F7F7F",
}
EXTRA_COLOURS: tuple[str, ...] = ("#17BECF", "#AA4499", "#332288", "#999933", "#882255", "#44AA99")
OBSERVED_COLOUR = "#000000"

#: Row order of the paper's Table 1, then the explicit schemes of Table A2.
ORDER: tuple[str, ...] = tuple(LABELS)

#: Pairs (adjoint, sequential) compared basin by basin.
ADJOINT_PAIRS: tuple[tuple[str, str], ...] = (("dhbv_adj", "dhbv"), ("dhbv_adj_cr", "dhbv_cr"))


def label(name: str) -> str:
    """The display label of a model (its name when unknown)."""
    return LABELS.get(name, name)


def colour(name: str) -> str:
    """The fixed colour of a model."""
    if name in COLOURS:
        return COLOURS[name]
    return EXTRA_COLOURS[zlib.crc32(name.encode()) % len(EXTRA_COLOURS)]


def sort_key(name: str) -> tuple[int, str]:
    """Sort models in the paper's order, unknown names last and alphabetically."""
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)
