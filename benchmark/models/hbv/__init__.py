"""The HBV structure: five storages, snow/soil/response routines, optional capillary rise.

Song et al. (2024), eqs. 3-20; see docs/model.md. The package holds every HBV kernel, each
written once:

- :mod:`~benchmark.models.hbv.parameters`: the parameter table;
- :mod:`~benchmark.models.hbv.fluxes`: the flux rates and the right-hand side;
- :mod:`~benchmark.models.hbv.jacobian`: df/dS in closed form and the structured Newton solve;
- :mod:`~benchmark.models.hbv.implicit`: the structured backward-Euler system (adjoint solve,
  eliminated day solve);
- :mod:`~benchmark.models.hbv.sequential`: the operator-split daily update of δHBV and its
  hand-written reverse pass.

The snow routine is shared with other structures (:mod:`benchmark.models.snow`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.base import Forcing, ParameterSpec, Params, SplitDays, Structure
from benchmark.models.hbv import sequential
from benchmark.models.hbv.fluxes import (
    N_STORAGES, REPORTED_FLUXES, SM_FLOOR, STORAGES, Fluxes, fluxes, rhs, storage_tendency,
)
from benchmark.models.hbv.implicit import HBVImplicitSystem
from benchmark.models.hbv.jacobian import rhs_and_jacobian
from benchmark.models.hbv.parameters import HBV_PARAMETERS, parameter_names

__all__ = [
    "HBV", "Forcing", "Fluxes", "N_STORAGES", "REPORTED_FLUXES", "SM_FLOOR", "STORAGES", "fluxes", "rhs",
    "storage_tendency",
]


@dataclass(frozen=True)
class HBV(Structure):
    """HBV as a :class:`~benchmark.models.base.Structure`.

    Parameters
    ----------
    capillary_rise
        The "improved" model: capillary rise from the lower zone into the soil (eq. 14).
    learn_ndc
        With capillary rise: ``NDC`` (the soil-moisture fraction of FC below which capillary
        rise acts) is a learned parameter; otherwise it is fixed to 1. The operator-split
        update of δHBV fixes it to 1, so it cannot learn it.
    """

    capillary_rise: bool = False
    learn_ndc: bool = False

    name = "hbv"
    storages = STORAGES
    reported_fluxes = REPORTED_FLUXES
    routed = True

    def __post_init__(self) -> None:
        if self.learn_ndc and not self.capillary_rise:
            raise ConfigError("HBV: learn_ndc needs capillary_rise (NDC is a parameter of the capillary-rise flux)")

    @property
    def parameters(self) -> Mapping[str, ParameterSpec]:
        names = parameter_names(capillary_rise=self.capillary_rise, learn_ndc=self.learn_ndc)
        return {name: HBV_PARAMETERS[name] for name in names}

    @property
    def label(self) -> str:
        if not self.capillary_rise:
            return "HBV"
        return "HBV with capillary rise" + (" (NDC learned)" if self.learn_ndc else "")

    def fluxes(self, S: torch.Tensor, x: Forcing, p: Params) -> dict[str, torch.Tensor]:
        return fluxes(S, x, p, capillary_rise=self.capillary_rise)._asdict()

    def tendency(self, f: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return storage_tendency(Fluxes(**f))

    def outflow(self, f: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Q' = Q0 + Q1 + Q2 (mm/day)."""
        return f["Q0"] + f["Q1"] + f["Q2"]

    def rhs(self, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
        return rhs(S, x, p, capillary_rise=self.capillary_rise)

    def jacobian(self, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
        """df/dS in closed form (:func:`benchmark.models.hbv.jacobian.rhs_and_jacobian`)."""
        return rhs_and_jacobian(S, x, p, capillary_rise=self.capillary_rise)[1]

    def split_days(self, x: Forcing, p: Params, S0: torch.Tensor) -> SplitDays:
        return sequential.split_days(x, p, S0, capillary_rise=self.capillary_rise)

    @property
    def has_hand_written_backward(self) -> bool:
        return True

    def split_step_refusal(self) -> str | None:
        if self.learn_ndc:
            return "the operator-split update of δHBV fixes NDC to 1, so NDC cannot be learned"
        return None

    def implicit_system(self, x: Forcing, p: Params, n_batch_dims: int) -> Any:
        return HBVImplicitSystem(x, p, self.capillary_rise, n_batch_dims)

    @property
    def has_eliminated_solve(self) -> bool:
        return True

    @property
    def has_fused_eliminated_solve(self) -> bool:
        return True
