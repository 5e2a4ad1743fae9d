"""Parameter tables: the gamma routing's own, and (re-exported) HBV's; see docs/model.md.

A network output ``u`` in [0, 1] maps to the physical value ``lo + u * (hi - lo)``
(:class:`~benchmark.models.base.ParameterSpec`). Each structure keeps its table in its own
package (:mod:`benchmark.models.hbv.parameters`, :mod:`benchmark.models.gr4j`); the names
below are kept for the callers that knew HBV's table here.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from benchmark.models.base import ParameterSpec, parameter_table
from benchmark.models.hbv.parameters import BASE_PARAMETERS, HBV_PARAMETERS, parameter_names

__all__ = ["BASE_PARAMETERS", "HBV_PARAMETERS", "ROUTING_PARAMETERS", "ParameterSpec", "mid_range_parameters",
           "parameter_names"]

ROUTING_PARAMETERS: dict[str, ParameterSpec] = parameter_table(
    ParameterSpec("route_a", 0.0, 2.9, "-", "gamma shape, alpha = a + 0.1"),
    ParameterSpec("route_b", 0.0, 6.5, "d", "gamma scale, theta = b + 0.5"),
)


def mid_range_parameters(names: Iterable[str], table: Mapping[str, ParameterSpec] = HBV_PARAMETERS
                         ) -> dict[str, float]:
    """Mid-range physical values (u = 0.5) for ``names`` of ``table``, as used by the reference runs."""
    return {name: table[name].mid for name in names}
