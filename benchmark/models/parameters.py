"""HBV parameter table: names, physical ranges and units (docs/model.md#parameters).

A network output ``u`` in [0, 1] maps to the physical value ``lo + u * (hi - lo)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ParameterSpec:
    """One physical parameter: its range and unit."""

    name: str
    lo: float
    hi: float
    unit: str
    meaning: str

    def scale(self, u: torch.Tensor) -> torch.Tensor:
        """Map a normalised value ``u`` in [0, 1] to the physical range."""
        return self.lo + u * (self.hi - self.lo)

    @property
    def mid(self) -> float:
        """The mid-range value (u = 0.5)."""
        return 0.5 * (self.lo + self.hi)


HBV_PARAMETERS: dict[str, ParameterSpec] = {
    spec.name: spec
    for spec in (
        ParameterSpec("BETA", 1.0, 6.0, "-", "shape of the recharge function"),
        ParameterSpec("FC", 50.0, 1000.0, "mm", "field capacity (max soil moisture)"),
        ParameterSpec("K0", 0.05, 0.9, "1/d", "near-surface recession"),
        ParameterSpec("K1", 0.01, 0.5, "1/d", "interflow recession"),
        ParameterSpec("K2", 0.001, 0.2, "1/d", "baseflow recession"),
        ParameterSpec("LP", 0.2, 1.0, "-", "wilting point as a fraction of FC"),
        ParameterSpec("PERC", 0.0, 10.0, "mm/d", "maximum percolation"),
        ParameterSpec("UZL", 0.0, 100.0, "mm", "upper-zone threshold for Q0"),
        ParameterSpec("TT", -2.5, 2.5, "degC", "threshold temperature for snowfall"),
        ParameterSpec("CFMAX", 0.5, 10.0, "mm/degC/d", "degree-day factor"),
        ParameterSpec("CFR", 0.0, 0.1, "-", "refreezing coefficient"),
        ParameterSpec("CWH", 0.0, 0.2, "-", "water-holding capacity of the snowpack"),
        ParameterSpec("BETAET", 0.3, 5.0, "-", "shape of the ET function (gamma)"),
        ParameterSpec("C", 0.0, 1.0, "1/d", "capillary-rise coefficient"),
        ParameterSpec("NDC", 0.05, 0.95, "-", "fraction of FC in capillary rise"),
    )
}

ROUTING_PARAMETERS: dict[str, ParameterSpec] = {
    "route_a": ParameterSpec("route_a", 0.0, 2.9, "-", "gamma shape, alpha = a + 0.1"),
    "route_b": ParameterSpec("route_b", 0.0, 6.5, "d", "gamma scale, theta = b + 0.5"),
}

BASE_PARAMETERS: tuple[str, ...] = (
    "BETA", "FC", "K0", "K1", "K2", "LP", "PERC", "UZL", "TT", "CFMAX", "CFR", "CWH", "BETAET",
)


def parameter_names(*, capillary_rise: bool, learn_ndc: bool) -> tuple[str, ...]:
    """Names of the parameters a model variant uses, in a fixed order.

    Parameters
    ----------
    capillary_rise
        Whether the "improved" capillary-rise flux is on (adds ``C``).
    learn_ndc
        Whether ``NDC`` is a learned parameter (implicit improved model); the sequential
        improved model fixes it to 1 (Song et al. 2024, eq. 14 text).
    """
    names = BASE_PARAMETERS
    if capillary_rise:
        names = names + ("C",)
        if learn_ndc:
            names = names + ("NDC",)
    return names


def mid_range_parameters(names: tuple[str, ...] | list[str]) -> dict[str, float]:
    """Mid-range physical values (u = 0.5) for ``names``, as used by the reference runs."""
    return {name: HBV_PARAMETERS[name].mid for name in names}
