"""The generic backward-Euler kernels: any structure, dense Jacobian, LAPACK solves.

:class:`DenseSystem` implements what :mod:`benchmark.solvers.implicit` asks of a system using
only the structure's right-hand side: df/dS comes from :meth:`Structure.jacobian` when the
structure has it in closed form, else from ``torch.func`` (reverse mode, so it picks the
subgradients autograd picks at kinks); the Newton step and the adjoint's transposed solve are
dense LU solves. A structure with a faster, structured system (HBV) is checked against this one
by the tests.
"""

from __future__ import annotations

from typing import Callable

import torch

from benchmark.models.base import Forcing, Params, Structure
from benchmark.solvers.newton import DT

ADJOINT_CHUNK_DAYS = 64
"""Days whose Jacobians the adjoint factorises at once (memory: days x systems x n^2 values)."""


def func_jacobian(structure: Structure, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
    """df/dS ``[..., n, n]`` (1/day) of ``structure.rhs`` at ``S`` ``[..., n]`` by ``torch.func``.

    Every system (leading index) is independent, so one vector-Jacobian product per storage,
    vectorised with ``vmap``, gives row i of every system's Jacobian at once.
    """
    n = S.shape[-1]
    _, vjp = torch.func.vjp(lambda s: structure.rhs(s, x, p), S)
    basis = torch.eye(n, dtype=S.dtype, device=S.device).reshape(n, *(1,) * (S.dim() - 1), n).expand(n, *S.shape)
    (rows,) = torch.func.vmap(vjp)(basis)  # [i, ..., j]
    return rows.movedim(0, -2)


def jacobian(structure: Structure, S: torch.Tensor, x: Forcing, p: Params) -> torch.Tensor:
    """df/dS ``[..., n, n]``: the structure's closed form when it has one, else :func:`func_jacobian`."""
    closed = structure.jacobian(S, x, p)
    return func_jacobian(structure, S, x, p) if closed is None else closed


def _days(v: torch.Tensor, first: int, stop: int) -> torch.Tensor:
    """Days ``first..stop-1`` of a timed entry (a leading axis of 1 is static: kept as is)."""
    return v if v.shape[0] == 1 else v[first:stop]


class DenseSystem:
    """Backward-Euler kernels for any structure (see :mod:`benchmark.solvers.implicit`).

    Parameters
    ----------
    structure
        The model structure.
    x, p
        Forcing ``[T, *batch]`` and parameters (static ``[*batch]``, dynamic ``[T, *batch]``).
    n_batch_dims
        Number of batch axes (``S0.dim() - 1``).
    """

    can_eliminate = False
    """Whether :meth:`eliminated` applies; a subclass with an eliminated day solve sets True."""

    def __init__(self, structure: Structure, x: Forcing, p: Params, n_batch_dims: int) -> None:
        def timed(v: torch.Tensor) -> torch.Tensor:
            return v if v.dim() == n_batch_dims + 1 else v.unsqueeze(0)

        self.structure = structure
        self.x = Forcing(*(timed(v) for v in x))
        self.p = {k: timed(v) for k, v in p.items()}

    def day(self, t: int) -> tuple[Forcing, dict[str, torch.Tensor]]:
        """Day t's forcing and parameters."""
        return (Forcing(*(_days(v, t, t + 1)[0] for v in self.x)),
                {k: _days(v, t, t + 1)[0] for k, v in self.p.items()})

    def residual_terms(self, S: torch.Tensor, c: tuple[Forcing, Params]) -> tuple[torch.Tensor, torch.Tensor]:
        """f(S) storage-first like ``S`` ``[n, *batch]``; the point itself is what the step reuses."""
        S_last = S.movedim(0, -1)
        return self.structure.rhs(S_last, *c).movedim(-1, 0), S_last

    def newton_step(self, S_last: torch.Tensor, c: tuple[Forcing, Params], G: torch.Tensor) -> torch.Tensor:
        """(I/dt - df/dS)^-1 G, storage-first, by a batched LU solve."""
        A = torch.eye(S_last.shape[-1], dtype=S_last.dtype, device=S_last.device) / DT - jacobian(
            self.structure, S_last, *c)
        return torch.linalg.solve(A, G.movedim(0, -1).unsqueeze(-1)).squeeze(-1).movedim(-1, 0)

    def rhs_all_days(self, states5: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """f at the states of every day, ``[T, n, *batch]`` (``fused`` is accepted for the interface)."""
        return self.structure.rhs(states5.movedim(1, -1), self.x, self.p).movedim(-1, 1)

    def eliminated(self, S0: torch.Tensor, n_days: int, options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An exact day-by-day solve of a subclass (states ``[T, n, *batch]``, iterations, not converged)."""
        raise NotImplementedError(f"{self.structure!r} has no eliminated backward-Euler solve")

    def adjoint_solver(self, states5: torch.Tensor, fused: bool = False
                       ) -> Callable[[int, torch.Tensor, torch.Tensor | None], torch.Tensor]:
        """``adjoint_day(t, g, lam_next)``: (dG/dS_t)^-T (g + lam_next / dt), storage-first, days visited last to first.

        ``fused`` is accepted for the interface and changes nothing: each day is already one
        batched triangular solve.

        The Jacobians are computed and LU-factorised for :data:`ADJOINT_CHUNK_DAYS` days at a time,
        vectorised over those days; each day then costs one small triangular solve.
        """
        n_days = states5.shape[0]
        eye = torch.eye(states5.shape[1], dtype=states5.dtype, device=states5.device) / DT
        cache: dict[str, object] = {"first": n_days}

        def factorise(t: int) -> None:
            first = max(0, t + 1 - ADJOINT_CHUNK_DAYS)
            S = states5[first:t + 1].movedim(1, -1)
            x = Forcing(*(_days(v, first, t + 1) for v in self.x))
            p = {k: _days(v, first, t + 1) for k, v in self.p.items()}
            with torch.no_grad():
                A = eye - jacobian(self.structure, S, x, p)
            cache["first"], cache["lu"] = first, torch.linalg.lu_factor(A)

        def adjoint_day(t: int, g: torch.Tensor, lam_next: torch.Tensor | None) -> torch.Tensor:
            if t < cache["first"]:
                factorise(t)
            lu, pivots = cache["lu"]
            k = t - cache["first"]
            r = g if lam_next is None else g + lam_next / DT
            lam = torch.linalg.lu_solve(lu[k], pivots[k], r.movedim(0, -1).unsqueeze(-1), adjoint=True)
            return lam.squeeze(-1).movedim(-1, 0)

        return adjoint_day
