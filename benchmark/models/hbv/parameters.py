"""HBV's parameter table: names, physical ranges and units (see docs/model.md).

A network output ``u`` in [0, 1] maps to the physical value ``lo + u * (hi - lo)``. The order
of :data:`HBV_PARAMETERS` is the order of the network's outputs, so it must not change (saved
checkpoints depend on it).
"""

from __future__ import annotations

from benchmark.models.base import ParameterSpec, parameter_table
from benchmark.models.snow import SNOW_PARAMETERS

HBV_PARAMETERS: dict[str, ParameterSpec] = parameter_table(
    ParameterSpec("BETA", 1.0, 6.0, "-", "shape of the recharge function"),
    ParameterSpec("FC", 50.0, 1000.0, "mm", "field capacity (max soil moisture)"),
    ParameterSpec("K0", 0.05, 0.9, "1/d", "near-surface recession"),
    ParameterSpec("K1", 0.01, 0.5, "1/d", "interflow recession"),
    ParameterSpec("K2", 0.001, 0.2, "1/d", "baseflow recession"),
    ParameterSpec("LP", 0.2, 1.0, "-", "wilting point as a fraction of FC"),
    ParameterSpec("PERC", 0.0, 10.0, "mm/d", "maximum percolation"),
    ParameterSpec("UZL", 0.0, 100.0, "mm", "upper-zone threshold for Q0"),
    *SNOW_PARAMETERS.values(),
    ParameterSpec("BETAET", 0.3, 5.0, "-", "shape of the ET function (gamma)"),
    ParameterSpec("C", 0.0, 1.0, "1/d", "capillary-rise coefficient"),
    ParameterSpec("NDC", 0.05, 0.95, "-", "fraction of FC in capillary rise"),
)

CAPILLARY_PARAMETERS: tuple[str, ...] = ("C", "NDC")
"""The parameters of the capillary-rise flux of the "improved" models."""

BASE_PARAMETERS: tuple[str, ...] = tuple(n for n in HBV_PARAMETERS if n not in CAPILLARY_PARAMETERS)
"""The parameters of the original model (no capillary rise)."""


def parameter_names(*, capillary_rise: bool, learn_ndc: bool) -> tuple[str, ...]:
    """Names of the parameters an HBV configuration uses, in the network's output order.

    Parameters
    ----------
    capillary_rise
        Whether the "improved" capillary-rise flux is on (adds ``C``).
    learn_ndc
        Whether ``NDC`` is a learned parameter (implicit improved model); otherwise it is fixed
        to 1 (the sequential improved model, Song et al. 2024, eq. 14 text).
    """
    names = BASE_PARAMETERS
    if capillary_rise:
        names = names + ("C",)
        if learn_ndc:
            names = names + ("NDC",)
    return names
