"""Time schemes and gradient methods as objects, and which combinations are valid.

A :class:`TimeScheme` steps any :class:`~benchmark.models.base.Structure` through the days; a
gradient method (:data:`GRADIENTS`) says how derivatives of its output are obtained. They are
chosen independently, and :meth:`TimeScheme.check` refuses an invalid combination (the adjoint
with an explicit scheme, a hand-written backward the structure does not provide, ...) with a
:class:`~benchmark.errors.ConfigError` before anything runs. See docs/schemes.md.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.base import Forcing, Structure


@dataclass(frozen=True)
class GradientMethod:
    """How the gradient of a simulation is obtained."""

    name: str
    description: str


GRADIENTS: dict[str, GradientMethod] = {
    g.name: g for g in (
        GradientMethod("autograd", "autograd"),
        GradientMethod("manual", "hand-written backward"),
        GradientMethod("adjoint", "adjoint"),
    )
}
"""Every gradient method by name."""


class TimeScheme(abc.ABC):
    """How a structure's ODE is stepped through the days (one scheme configuration).

    Subclasses set :attr:`name`, :attr:`gradients` (supported gradient methods, the default
    first) and implement :meth:`integrate`.
    """

    name: ClassVar[str]
    """The scheme's name in configs and tags (``sequential``, ``euler``, ``rk4``, ``implicit``)."""

    gradients: ClassVar[tuple[str, ...]]
    """Gradient methods this scheme supports; the first is its default."""

    description: ClassVar[str]
    """One phrase for tables (e.g. ``explicit Euler``)."""

    substeps: int = 1

    @property
    def time_step(self) -> str:
        """The step as text: ``1 d``, ``4 h``, ``1 h``."""
        return "1 d" if self.substeps == 1 else f"{24 / self.substeps:g} h"

    def default_gradient(self, structure: Structure) -> str:
        """The gradient method used when none is asked for."""
        return self.gradients[0]

    def check(self, structure: Structure, gradient: str | None) -> str:
        """Validate the combination; return the gradient method to use.

        Raises
        ------
        ConfigError
            For an unknown gradient method, one this scheme does not support, or one the
            structure cannot provide with this scheme.
        """
        if gradient is None:
            gradient = self.default_gradient(structure)
        if gradient not in GRADIENTS:
            raise ConfigError(f"unknown gradient method {gradient!r}; expected one of {tuple(GRADIENTS)}")
        if gradient not in self.gradients:
            raise ConfigError(f"the {self.name} scheme supports only gradient="
                              f"{' or '.join(repr(g) for g in self.gradients)}, got {gradient!r}")
        return gradient

    @abc.abstractmethod
    def integrate(self, structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor,
                  gradient: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        """Run the days of ``x`` from storages ``S0``.

        Parameters
        ----------
        structure
            The model structure.
        x
            Daily forcing, each ``[T, ...]`` broadcastable against the batch shape of ``S0``.
        p
            Physical parameters by name, static ``[...]`` or dynamic ``[T, ...]``.
        S0
            Initial storages ``[..., n]`` (mm).
        gradient
            A gradient method :meth:`check` accepted.

        Returns
        -------
        states
            End-of-day storages ``[T, ..., n]`` (mm).
        fluxes
            Daily fluxes (mm/day) by name, each ``[T, ...]`` (at least the structure's
            ``reported_fluxes``).
        stats
            Solver statistics (numbers, 0-d tensors or per-day tensors).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(substeps={self.substeps})"
