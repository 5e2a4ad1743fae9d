"""GR4J (Perrin et al. 2003) in the continuous state-space form of Santos et al. (2018), with HBV's snow.

See docs/gr4j.md for the equations and where they may differ from the publication:

- :mod:`~benchmark.models.gr4j.parameters`: X1..X4 and the snow parameters;
- :mod:`~benchmark.models.gr4j.fluxes`: storages, flux rates, right-hand side, the cascades;
- :mod:`~benchmark.models.gr4j.sequential`: the operator-split daily update (classic daily GR4J);
- :mod:`~benchmark.models.gr4j.implicit`: the eliminated backward-Euler day solve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmark.models.base import Forcing, ParameterSpec, Params, SplitDays, Structure
from benchmark.models.gr4j import fluxes as _fluxes
from benchmark.models.gr4j import sequential
from benchmark.models.gr4j.implicit import GR4JImplicitSystem
from benchmark.models.gr4j.parameters import GR4J_PARAMETERS

__all__ = ["GR4J", "GR4J_PARAMETERS"]


@dataclass(frozen=True)
class GR4J(Structure):
    """GR4J as a :class:`~benchmark.models.base.Structure`: 23 storages, its own routing."""

    name = "gr4j"
    storages = _fluxes.STORAGES
    reported_fluxes = _fluxes.REPORTED_FLUXES
    routed = False

    @property
    def parameters(self) -> Mapping[str, ParameterSpec]:
        return GR4J_PARAMETERS

    @property
    def label(self) -> str:
        return "GR4J"

    def fluxes(self, S: torch.Tensor, x: Forcing, p: Params) -> dict[str, torch.Tensor]:
        return _fluxes.fluxes(S, x, p)

    def tendency(self, f: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _fluxes.tendency(dict(f))

    def outflow(self, f: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Q = Qr + Qd (mm/day)."""
        return f["Qr"] + f["Qd"]

    def exchange(self, f: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return f["exchange"]

    def split_days(self, x: Forcing, p: Params, S0: torch.Tensor) -> SplitDays:
        return sequential.split_days(x, p, S0)

    def implicit_system(self, x: Forcing, p: Params, n_batch_dims: int) -> Any:
        return GR4JImplicitSystem(self, x, p, n_batch_dims)

    @property
    def has_eliminated_solve(self) -> bool:
        return True
