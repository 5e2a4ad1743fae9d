"""What every model structure provides, and what a time scheme may ask of it.

A *structure* (HBV, GR4J, ...) says what the model is: its parameter table, its storages, the
right-hand side dS/dt = f(S) as named flux rates, and the outflow. A *time scheme*
(:mod:`benchmark.solvers`) says how that ODE is stepped through the days; a *gradient method*
how derivatives are obtained. The three are chosen independently (see docs/adding-a-model.md).

Beyond the right-hand side a structure may offer *fast paths*, each optional and each checked
against the generic path by the tests:

- :meth:`Structure.jacobian`: df/dS in closed form (default: none; the implicit scheme then
  uses ``torch.func``);
- :meth:`Structure.split_days`: an operator-split daily update (needed by the sequential scheme),
  optionally with a hand-written reverse pass;
- :meth:`Structure.implicit_system`: structured Newton and adjoint solves for backward Euler
  (default: dense solves with the Jacobian).

Conventions: storages in mm, flux rates in mm/day, temperature in degC, time in days. Storages
are stacked on the last axis (``[..., n_storages]``) in the order of :attr:`Structure.storages`;
every function is elementwise over the leading (batch) axes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch


class Forcing(NamedTuple):
    """Daily forcing: precipitation (mm/day), mean air temperature (degC), PET (mm/day)."""

    P: torch.Tensor
    T: torch.Tensor
    PET: torch.Tensor


Params = Mapping[str, torch.Tensor]
"""Physical parameters by name, each broadcastable to the batch shape (static) or with a leading
time axis (dynamic)."""


@dataclass(frozen=True)
class ParameterSpec:
    """One physical parameter: its range and unit.

    A network output ``u`` in [0, 1] maps to the physical value ``lo + u * (hi - lo)``.
    """

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


def parameter_table(*specs: ParameterSpec) -> dict[str, ParameterSpec]:
    """A parameter table keyed by name, in the given order."""
    return {spec.name: spec for spec in specs}


@dataclass
class SplitDays:
    """A structure's operator-split daily update, set up for one sequence of days.

    Attributes
    ----------
    step
        ``step(state, day) -> (state, fluxes)``: one day. ``state`` is what :attr:`unpack`
        returns, ``day`` the day's entries of :attr:`inputs` (in order), ``fluxes`` a tuple of
        daily fluxes (mm/day) in the order of :attr:`flux_names` (``None`` for a flux that is
        identically zero in this configuration).
    inputs
        Per-day inputs: dynamic ones ``[T, ...]``, static ones without the time axis.
    dynamic
        Which entries of :attr:`inputs` carry the time axis.
    flux_names
        Names of the daily fluxes ``step`` returns.
    unpack
        Initial storages ``[..., n]`` -> the state ``step`` works on.
    stack
        The list of every day's state -> storages ``[T, ..., n]``.
    hand_written
        When the structure provides a hand-written reverse pass: a function running the whole
        sequence as one autograd node, ``(S0, fused) -> (states [T, ..., n], fluxes by name)``;
        ``fused``: one compiled call per day forward and backward (:mod:`benchmark.solvers.fused`).
    """

    step: Callable[[Any, Sequence[torch.Tensor]], tuple[Any, tuple]]
    inputs: list[torch.Tensor]
    dynamic: list[bool]
    flux_names: tuple[str, ...]
    unpack: Callable[[torch.Tensor], Any]
    stack: Callable[[list], torch.Tensor]
    hand_written: Callable[[torch.Tensor, bool], tuple[torch.Tensor, dict[str, torch.Tensor]]] | None = None


class Structure(abc.ABC):
    """A bucket-type model structure: parameters, storages, right-hand side, outflow.

    Subclasses set :attr:`name`, :attr:`storages`, :attr:`reported_fluxes` and implement
    :attr:`parameters`, :meth:`fluxes`, :meth:`tendency` and :meth:`outflow`. An instance is one
    configuration of the structure (e.g. HBV with or without capillary rise) and is immutable.
    """

    name: str = ""
    """Short name (``hbv``, ``gr4j``); also the tag logged with a run."""

    storages: tuple[str, ...] = ()
    """Storage names (all in mm), the order of the last axis of a state."""

    reported_fluxes: tuple[str, ...] = ()
    """Daily fluxes (mm/day) every scheme returns, as means over the parallel components."""

    routed: bool = True
    """Whether the benchmark's gamma unit hydrograph routes the outflow (a structure with its own
    routing, such as GR4J's unit hydrographs, sets False and the network gives it no routing
    parameters)."""

    @property
    @abc.abstractmethod
    def parameters(self) -> Mapping[str, ParameterSpec]:
        """The parameters this configuration uses, in the network's output order."""

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of :attr:`parameters`, in order."""
        return tuple(self.parameters)

    @property
    def n_storages(self) -> int:
        """Length of the storage axis."""
        return len(self.storages)

    @property
    def label(self) -> str:
        """Human-readable configuration, e.g. ``HBV with capillary rise``."""
        return self.name

    @abc.abstractmethod
    def fluxes(self, S: torch.Tensor, x: Forcing, p: Params) -> dict[str, torch.Tensor]:
        """Flux rates (mm/day) at storages ``S`` ``[..., n]``, by name (at least :attr:`reported_fluxes`)."""

    @abc.abstractmethod
    def tendency(self, fluxes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """dS/dt (mm/day) ``[..., n]`` from the flux rates of :meth:`fluxes`."""

    @abc.abstractmethod
    def outflow(self, fluxes: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Streamflow leaving the structure (mm/day), before any gamma routing."""

    def exchange(self, fluxes: Mapping[str, torch.Tensor]) -> torch.Tensor | float:
        """Water gained (+) or lost (-) through boundaries other than P, ET and the outflow (mm/day).

        The mass balance of every scheme is dS = P - ET - outflow + exchange per day.
        """
        return 0.0

    def rhs(self, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
        """The ODE right-hand side f(S) = dS/dt (mm/day), ``[..., n]``."""
        return self.tendency(self.fluxes(S, x, p))

    # ------------------------------------------------------------------ optional fast paths

    def jacobian(self, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor | None:
        """df/dS ``[..., n, n]`` (1/day) in closed form, or None (then ``torch.func`` computes it)."""
        return None

    def split_days(self, x: Forcing, p: Params, S0: torch.Tensor) -> SplitDays | None:
        """The operator-split daily update over the days of ``x``, or None when the structure has none."""
        return None

    @property
    def has_hand_written_backward(self) -> bool:
        """Whether :meth:`split_days` comes with a hand-written reverse pass."""
        return False

    def split_step_refusal(self) -> str | None:
        """Why this configuration cannot run the operator-split update (None: it can)."""
        return None if type(self).split_days is not Structure.split_days else (
            f"{self.label} has no operator-split daily update")

    def implicit_system(self, x: Forcing, p: Params, n_batch_dims: int) -> Any | None:
        """This structure's own backward-Euler system (see :mod:`benchmark.solvers.implicit`) for forcing
        ``x`` and parameters ``p`` (static ``[*batch]``, dynamic ``[T, *batch]``), or None: the generic
        dense system (:class:`benchmark.solvers.dense.DenseSystem`) is used."""
        return None

    @property
    def has_eliminated_solve(self) -> bool:
        """Whether :meth:`implicit_system` solves each day exactly by elimination (Newton on a few
        scalar equations) rather than by Newton on the full storage vector."""
        return False

    @property
    def has_fused_eliminated_solve(self) -> bool:
        """Whether the eliminated solve has a fused (compiled, one call per day) form."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"
