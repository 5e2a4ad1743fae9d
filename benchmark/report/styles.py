"""Names, display order and the one fixed colour of every model, shared by tables and figures.

A model keeps its colour in every figure of every report: the registry models take label and
colour from their registry row (:mod:`benchmark.models.registry`), the two baselines have
theirs below; a name not listed gets a colour from :data:`EXTRA_COLOURS` chosen by a stable
hash of the name, so it too is the same from report to report.
"""

from __future__ import annotations

import zlib

from benchmark.models.registry import MODEL_SPECS

BASELINES: dict[str, tuple[str, str]] = {"lstm": ("LSTM", "#009E73"), "sacsma": ("SAC-SMA", "#8C564B")}
"""Label and colour of the baselines (not registry models)."""

#: Display labels in the paper's notation.
LABELS: dict[str, str] = {name: label for name, (label, _) in BASELINES.items()} | {
    name: spec.label for name, spec in MODEL_SPECS.items()}

#: Fixed colours (colour-blind-aware Okabe-Ito / tab10 mix), one per model.
COLOURS: dict[str, str] = {name: colour for name, (_, colour) in BASELINES.items()} | {
    name: spec.colour for name, spec in MODEL_SPECS.items()}
EXTRA_COLOURS: tuple[str, ...] = ("#17BECF", "#AA4499", "#332288", "#999933", "#882255", "#44AA99")
OBSERVED_COLOUR = "#000000"

#: Row order: the baselines, then the registry's (the paper's Table 1, then the explicit schemes of Table A2).
ORDER: tuple[str, ...] = tuple(LABELS)

#: Pairs (adjoint, sequential) compared basin by basin.
ADJOINT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (name, spec.counterpart) for name, spec in MODEL_SPECS.items() if spec.counterpart)

#: The adjoint pairs of the paper's own findings: both models are HBV (the paper's structure).
PAPER_ADJOINT_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (a, b) for a, b in ADJOINT_PAIRS if MODEL_SPECS[a].structure.name == MODEL_SPECS[b].structure.name == "hbv")


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
