"""Sequential operator splitting: each day, the structure's processes update the storages in turn.

The scheme of δHBV (Feng et al. 2022). The daily update itself belongs to the structure
(:meth:`~benchmark.models.base.Structure.split_days`: which processes, in which order, with
which limiters); this module runs it over the days and provides the gradient: autograd through
the daily loop, or the structure's hand-written reverse pass (one autograd node for the whole
sequence) when it has one. The loop is a plain sequence of elementwise ops over the whole batch
(basins x components): no host synchronisation, no per-basin Python code. See docs/schemes.md.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.base import Forcing, SplitDays, Structure
from benchmark.solvers._daily import per_day, require
from benchmark.solvers.base import TimeScheme
from benchmark.solvers.fused import kernel



class OperatorSplitting(TimeScheme):
    """The structure's operator-split daily update, one step per day.

    Parameters
    ----------
    compile
        Fuse each day into one compiled call (``torch.compile``; off by default; needs a C++
        compiler on CPU, see :mod:`benchmark.solvers.fused`). With the hand-written backward,
        the forward and the reverse pass each make one fused call per day; with autograd,
        autograd runs through the compiled daily update.
    """

    name = "sequential"
    gradients = ("manual", "autograd")
    description = "sequential (operator splitting)"

    def __init__(self, *, compile: bool = False) -> None:
        self.compile = bool(compile)

    def default_gradient(self, structure: Structure) -> str:
        """The hand-written reverse pass where the structure has one."""
        return "manual" if structure.has_hand_written_backward else "autograd"

    def check(self, structure: Structure, gradient: str | None) -> str:
        refusal = structure.split_step_refusal()
        if refusal is not None:
            raise ConfigError(f"the {self.name} scheme cannot run {structure.label}: {refusal}")
        gradient = super().check(structure, gradient)
        if gradient == "manual" and not structure.has_hand_written_backward:
            raise ConfigError(f"{structure.label} has no hand-written backward for the {self.name} scheme; "
                              "use gradient='autograd'")
        return gradient

    def integrate(self, structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor,
                  gradient: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        days = structure.split_days(x, p, S0)
        needs_graph = torch.is_grad_enabled() and (S0.requires_grad or any(v.requires_grad for v in days.inputs))
        if gradient == "manual" and (needs_graph or self.compile):
            # fused: the same per-day kernels with or without a gradient to take
            states, fluxes = days.hand_written(S0, self.compile)
        else:
            states, fluxes = self._loop(days, S0, x.P.shape[0])
        return states, fluxes, {}

    def _loop(self, days: SplitDays, S0: torch.Tensor, n_days: int
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Autograd through the daily loop (or no gradient at all)."""
        daily = [per_day(v, n_days, dyn) for v, dyn in zip(days.inputs, days.dynamic)]
        step = kernel(days.step, days.step, fullgraph=False) if self.compile else days.step
        state = days.unpack(S0)
        state_hist: list[Any] = []
        flux_hist: list[tuple] = []
        for day in zip(*daily):
            state, day_fluxes = step(state, day)
            state_hist.append(state)
            flux_hist.append(day_fluxes)
        states = days.stack(state_hist)
        series = dict(zip(days.flux_names, zip(*flux_hist)))
        fluxes = {name: torch.stack(s, dim=0) for name, s in series.items() if s[0] is not None}
        like = next(iter(fluxes.values()))
        for name, s in series.items():
            if s[0] is None:  # a flux this configuration does not have
                fluxes[name] = torch.zeros_like(like)
        return states, fluxes


def integrate_sequential(
    x: Forcing,
    p: Mapping[str, torch.Tensor | float],
    S0: torch.Tensor,
    *,
    capillary_rise: bool,
    compile: bool = False,
    manual_backward: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """HBV through :class:`OperatorSplitting`: the δHBV scheme (``NDC`` is not used: fixed to 1).

    ``manual_backward``: when gradients are needed, the whole sequence
    is one autograd node with HBV's hand-written reverse pass (B=100, nmul=16, T=730 float32
    forward+backward on CPU: ~0.45 s vs ~0.6 s); ``False``: autograd through the daily loop.
    Returns the end-of-day storages ``[T, ..., 5]`` (mm) and the daily fluxes of
    :data:`benchmark.models.hbv.sequential.FLUX_NAMES` (mm/day).
    """
    from benchmark.models.hbv import HBV

    structure = HBV(capillary_rise=capillary_rise)
    scheme = OperatorSplitting(compile=compile)
    require(p, structure.parameter_names, "sequential scheme")
    gradient = scheme.check(structure, "manual" if manual_backward else "autograd")
    states, fluxes, _ = scheme.integrate(structure, x, p, S0, gradient)
    return states, fluxes
