"""Newton settings and the safeguarded scalar Newton iteration shared by the backward-Euler solves.

See docs/schemes.md. A *system* is one basin x component on one day; every system decides its own
convergence (a converged system is frozen), so basins never change each other's iteration
counts, and a NaN residual never counts as converged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, TypeVar

import torch

from benchmark.errors import SolverError

DT = 1.0
"""Time step of the implicit scheme (days); forcing and parameters are daily."""

SYNC_DAYS = 16
"""Default days per host synchronisation of the eliminated solves (``NewtonOptions.sync_days``)."""


@dataclass(frozen=True)
class NewtonOptions:
    """Newton settings for the daily backward-Euler solve.

    A system has converged when every storage satisfies ``|G_i| <= tol + rtol * |S_i| / dt``
    (G in mm/day). The relative part lets float32 runs, whose rounding error grows with the
    storage size, converge as far as float32 allows.

    Attributes
    ----------
    tol
        Absolute tolerance on the max-norm residual (mm/day); ``None``: 1e-8 in float64,
        1e-5 in float32.
    rtol
        Relative tolerance; ``None``: 0 in float64, 1e-6 in float32.
    max_iter
        Maximum Newton updates per day; systems still above tolerance after it are counted
        as not converged (``stats["n_not_converged"]``).
    check_every
        Check "all systems converged?" (a host synchronisation) every this many iterations;
        ``None``: every iteration on CPU, every 2 on CUDA.
    compile
        Fuse the daily work into compiled calls (``torch.compile``, see
        :mod:`benchmark.solvers.fused`): the structure's eliminated day solve and its adjoint's
        transposed solve where it has fused forms (HBV), else the full-vector Newton's residual
        and update. The first call of a kernel pays its compilation. The same solution as
        without, to rounding.
    eliminate
        Use the structure's eliminated solve where it has one (e.g. HBV: the piecewise-linear
        storages solved exactly, Newton on soil moisture alone; the same solution at a third of
        the work). Unrolled autograd always runs the full-vector Newton, whose iterations it
        differentiates.
    sync_days
        Days per host synchronisation of the eliminated solve (see :func:`march_days`): each
        block of this many days runs a fixed number of masked Newton updates per day and checks
        once, at its end, that every system converged (a day that did not is solved again with
        a check per iteration). The same solution as checking every iteration, without a
        host synchronisation per day. ``0``: check every iteration (the reference loop);
        ``None``: 16.
    """

    tol: float | None = None
    rtol: float | None = None
    max_iter: int = 20
    check_every: int | None = None
    compile: bool = False
    eliminate: bool = True
    sync_days: int | None = None

    def resolved(self, dtype: torch.dtype, device: torch.device) -> "NewtonOptions":
        """These options with the dtype/device-dependent defaults filled in."""
        single = dtype in (torch.float32, torch.float16, torch.bfloat16)
        if self.max_iter < 1:
            raise SolverError(f"NewtonOptions.max_iter must be >= 1, got {self.max_iter}")
        if self.sync_days is not None and self.sync_days < 0:
            raise SolverError(f"NewtonOptions.sync_days must be >= 0, got {self.sync_days}")
        return NewtonOptions(
            tol=self.tol if self.tol is not None else (1e-5 if single else 1e-8),
            rtol=self.rtol if self.rtol is not None else (1e-6 if single else 0.0),
            max_iter=self.max_iter,
            check_every=self.check_every if self.check_every is not None else (1 if device.type == "cpu" else 2),
            compile=self.compile,
            eliminate=self.eliminate,
            sync_days=self.sync_days if self.sync_days is not None else SYNC_DAYS,
        )


Terms = TypeVar("Terms")


class NewtonStart(NamedTuple):
    """Batch-shaped starting values of a scalar Newton, allocated once and reused from day to day."""

    zero_iters: torch.Tensor  # 0 (int32): no update yet
    all_active: torch.Tensor  # True: every system still to converge
    no_residual: torch.Tensor  # +inf: no accepted iterate yet


def newton_start(batch: Sequence[int], dtype: torch.dtype, device: torch.device) -> NewtonStart:
    """:class:`NewtonStart` for systems of shape ``batch``."""
    return NewtonStart(torch.zeros(batch, dtype=torch.int32, device=device),
                       torch.ones(batch, dtype=torch.bool, device=device),
                       torch.full(batch, torch.inf, dtype=dtype, device=device))


def scalar_newton(residual: Callable[[torch.Tensor], tuple[torch.Tensor, Terms]],
                  slope: Callable[[torch.Tensor, Terms], torch.Tensor], x0: torch.Tensor, options: NewtonOptions,
                  zero_iters: torch.Tensor, all_active: torch.Tensor, no_residual: torch.Tensor,
                  updates: int | None = None) -> tuple[torch.Tensor, Terms, torch.Tensor, torch.Tensor]:
    """Safeguarded Newton for a batch of independent scalar equations h(x) = 0 (h increasing).

    An iterate whose |h| did not decrease relative to the last accepted one is rejected and
    replaced by the midpoint of the two (backtracking along the last Newton direction): the
    kinks of h can make plain Newton cycle between two points, and this breaks such cycles at
    no extra evaluation. Converged systems stay where they are.

    Parameters
    ----------
    residual
        ``x -> (h(x), terms)``: the residual (mm/day) and whatever :func:`slope` and the caller
        reuse from its evaluation.
    slope
        ``(x, terms) -> dh/dx``.
    x0
        Starting point (the previous day's storage, mm).
    options
        Resolved Newton options (``tol``, ``rtol``, ``max_iter``).
    zero_iters, all_active, no_residual
        Preallocated batch-shaped 0 (int32), True and +inf, reused from day to day.
    updates
        ``None``: stop as soon as every system has converged (a host synchronisation per
        iteration) or after ``options.max_iter`` updates. An integer: exactly this many masked
        updates (at most ``max_iter``), no host synchronisation; a system that converged
        earlier is frozen, so its result is the same as with ``None``.

    Returns
    -------
    x, terms, iterations, active
        The solution, the ``terms`` of its residual evaluation, Newton updates per system and
        the systems still above tolerance (not converged).
    """
    tol, rtol = float(options.tol), float(options.rtol)
    x = x_acc = x0
    r_acc, active, iters = no_residual, all_active, zero_iters
    n_updates = options.max_iter if updates is None else min(updates, options.max_iter)
    for k in range(n_updates + 1):
        h, terms = residual(x)
        habs = h.abs()
        err = habs - rtol * x.abs() if rtol > 0.0 else habs
        active = active & ~(err <= tol)  # a NaN residual is not converged
        if k == n_updates or (updates is None and not bool(active.any())):
            break
        dh = slope(x, terms)
        accept = habs < r_acc
        x_new = torch.where(accept, x - h / dh, 0.5 * (x_acc + x))
        x_acc = torch.where(accept, x, x_acc)
        r_acc = torch.where(accept, habs, r_acc)
        x = torch.where(active, x_new, x)
        iters = iters + active
    return x, terms, iters, active


State = TypeVar("State")
DayStep = Callable[[int, State, "int | None"], tuple[State, torch.Tensor, torch.Tensor]]
"""``(t, state before day t, updates) -> (state after day t, Newton updates, still-active mask)``:
one day of an eliminated solve; ``updates`` as in :func:`scalar_newton`."""


def march_days(day_step: DayStep, state: State, n_days: int, options: NewtonOptions,
               iterations: torch.Tensor, not_converged: torch.Tensor) -> State:
    """Run ``day_step`` over ``n_days`` days with one host synchronisation per block of days.

    Each block of ``options.sync_days`` days runs a fixed number of masked Newton updates per
    day (the most any system needed in the previous block, at least 1) without looking at the
    results; at the block's end one synchronisation reads which days still have a system above
    tolerance. From the first such day the block is solved again with a convergence check per
    iteration (``updates=None``). Since a converged system is frozen, every day gets the same
    solution and iteration counts as the per-iteration loop. ``sync_days=0``: the
    per-iteration loop throughout.

    Parameters
    ----------
    day_step
        One day (:data:`DayStep`); it may also store the day's states (a day solved again
        overwrites them).
    state
        The state before the first day.
    n_days
        Days to run.
    options
        Resolved Newton options (``max_iter``, ``sync_days``).
    iterations, not_converged
        ``[n_days, *batch]`` outputs: the Newton updates and the still-active mask of every day.

    Returns
    -------
    The state after the last day.
    """
    block = int(options.sync_days) if options.sync_days is not None else SYNC_DAYS
    max_iter = int(options.max_iter)
    if block == 0:
        for t in range(n_days):
            state, iterations[t], not_converged[t] = day_step(t, state, None)
        return state
    updates = 1
    for first in range(0, n_days, block):
        stop = min(first + block, n_days)
        entering = []
        for t in range(first, stop):
            entering.append(state)
            state, iterations[t], not_converged[t] = day_step(t, state, updates)
        # the one host synchronisation of the block: its days with a system above tolerance, and
        # the most updates a system took
        failed = not_converged[first:stop].flatten(1).any(1).to(iterations.dtype)
        *failed_days, most = torch.cat((failed, iterations[first:stop].amax().view(1))).tolist()
        if updates < max_iter and any(failed_days):
            redo = next(i for i, day_failed in enumerate(failed_days) if day_failed)
            state = entering[redo]
            for t in range(first + redo, stop):
                state, iterations[t], not_converged[t] = day_step(t, state, None)
            most = int(iterations[first:stop].amax())
        updates = min(max(most, 1), max_iter)
    return state
