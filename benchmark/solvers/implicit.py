"""Implicit backward Euler with Newton's method and the exact discrete adjoint, for any structure.

Song et al. 2024, eqs. 28-34; see docs/schemes.md. For each day t the storages solve

    G(S_t) = (S_t - S_{t-1}) / dt - f(S_t, theta_t, x_t) = 0,      dt = 1 day,

where f is the structure's right-hand side. Newton's method runs batched over every basin and
component, each system deciding its own convergence (a converged system is frozen, so basins
never change each other's iteration counts), with a safeguard against cycling at kinks.

The linear algebra comes from a *system* object: the structure's own structured one when it
provides it (:meth:`~benchmark.models.base.Structure.implicit_system`, e.g. HBV's closed-form
block-triangular solves and its eliminated day solve), else
:class:`~benchmark.solvers.dense.DenseSystem` (torch.func Jacobian, LU solves). A system has

- ``day(t)``: the day's constants ``c``;
- ``residual_terms(S, c) -> (f, inner)`` for storage-first ``S`` ``[n, *batch]``;
- ``newton_step(inner, c, G)``: (I/dt - df/dS)^-1 G;
- ``rhs_all_days(states5, fused)``: f of every day at once (``[T, n, *batch]``), for the statistics;
- ``can_eliminate`` and ``eliminated(S0, n_days, options)``: an exact day-by-day solve, if any;
- ``adjoint_solver(states5, fused)``: ``adjoint_day(t, g_t, lam_next) -> lam_t``, the day's adjoint
  state (dG/dS_t)^-T (g_t + lam_next / dt) (``lam_next`` None on the last day; ``fused``: one
  compiled call per day where the system has such a form).

Gradients:

- ``gradient="adjoint"`` (discretize-then-optimize): one custom autograd function for the whole
  sequence. Forward runs Newton without recording a graph. Backward solves
  (dG/dS_t)^T lam_t = dL/dS_t + lam_{t+1}/dt backwards in time (the only sequential part),
  then obtains dL/dtheta_t = lam_t^T df/dtheta_t for all days in one vector-Jacobian product
  of the structure's right-hand side, and dL/dS_0 = lam_1/dt.
- ``gradient="autograd"``: autograd unrolled through every Newton iteration (reference for the
  adjoint and a demonstration of its memory cost).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import torch

from benchmark.errors import SolverError
from benchmark.models.base import Forcing, Structure
from benchmark.solvers.base import TimeScheme
from benchmark.solvers.dense import DenseSystem
from benchmark.solvers.fused import fused_or_eager, kernel
from benchmark.solvers.newton import DT, NewtonOptions

GRADIENT_METHODS = ("adjoint", "autograd")


def implicit_system(structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], n_batch_dims: int) -> Any:
    """The structure's own backward-Euler system, or the generic dense one."""
    system = structure.implicit_system(x, p, n_batch_dims)
    return DenseSystem(structure, x, p, n_batch_dims) if system is None else system


# ----------------------------------------------------------------------------------------------
# Newton's method, day by day.


def _residual(system: Any, S: torch.Tensor, S_prev: torch.Tensor, active: torch.Tensor, c: Any, tol: float,
              rtol: float) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """G at ``S`` (storage-first ``[n, *batch]``), its max norm, and ``active`` minus the converged systems."""
    f, inner = system.residual_terms(S, c)
    G = S - S_prev
    if DT != 1.0:
        G = G / DT
    G = G - f
    gabs = G.abs()
    gmax = gabs.amax(0)
    err = (gabs - (rtol / DT) * S.abs()).amax(0) if rtol > 0.0 else gmax
    return G, inner, gmax, active & ~(err <= tol)  # a NaN residual is not converged


def _update(system: Any, S: torch.Tensor, G: torch.Tensor, inner: Any, gmax: torch.Tensor, S_acc: torch.Tensor,
            r_acc: torch.Tensor, active: torch.Tensor, iters: torch.Tensor, c: Any
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One masked, safeguarded Newton update.

    If the max-norm residual at ``S`` decreased relative to the last accepted iterate
    ``S_acc`` (residual ``r_acc``), ``S`` is accepted and the Newton step is taken from it;
    otherwise ``S`` is rejected and the next iterate is the midpoint of ``S_acc`` and ``S``
    (backtracking along the last Newton direction). The kinks of f can make plain Newton
    cycle between two points (e.g. soil moisture jumping across FC on a day of heavy rain);
    backtracking breaks such cycles at no extra evaluation. Converged systems
    (``active`` False) stay where they are.

    Returns
    -------
    S_new, S_acc, r_acc, iters
    """
    accept = gmax < r_acc
    step = system.newton_step(inner, c, G)
    S_new = torch.where(accept, S - step, 0.5 * (S_acc + S))
    S_new = torch.where(active, S_new, S)
    return S_new, torch.where(accept, S, S_acc), torch.where(accept, gmax, r_acc), iters + active


def _polish(system: Any, S: torch.Tensor, S_prev: torch.Tensor, c: Any) -> torch.Tensor:
    """One more plain Newton step for every system (unrolled-autograd mode only).

    The derivative of a Newton iterate lags the iterate itself by one step: at the point
    where a system stops, d S_n / d theta is off by about the residual of S_{n-1}. One extra
    step changes S by O(residual^2) and brings the unrolled derivative to the accuracy of
    the solution, so that it can serve as a reference for the adjoint.
    """
    f, inner = system.residual_terms(S, c)
    G = (S - S_prev) / DT - f
    return S - system.newton_step(inner, c, G)


def _kernels(compile_: bool) -> tuple[Callable, Callable]:
    """The residual and update functions, optionally through ``torch.compile``."""
    if not compile_:
        return _residual, _update
    return kernel(_residual, _residual, fullgraph=False), kernel(_update, _update, fullgraph=False)


class _RawStats(NamedTuple):
    iterations: torch.Tensor  # [T, *batch] Newton updates per system-day
    residual: torch.Tensor  # [T, *batch] max |G_i| (mm/day) at the returned state
    not_converged: torch.Tensor  # [T, *batch] bool


def _newton_sequence(system: Any, S0: torch.Tensor, n_days: int, options: NewtonOptions, record: bool
                     ) -> tuple[torch.Tensor, _RawStats]:
    """Integrate all days; returns storage-first states ``[T, n, *batch]`` and raw stats.

    Per day: evaluate G (cheap, no Jacobian); stop when every system meets the tolerance;
    otherwise build the Jacobian from the same intermediates and update the active systems.
    With ``record`` (grad mode on and an input requiring grad) autograd records every Newton
    iteration (unrolled autograd); the eliminated solve is then never used.
    """
    if options.eliminate and not record and system.can_eliminate:
        states5, iterations, _ = system.eliminated(S0, n_days, options)
        residual = _full_residual(system, S0, states5, options.compile)
        err = residual if options.rtol == 0.0 else (
            residual - options.rtol / DT * states5.abs().amax(1))  # conservative: the largest storage
        return states5, _RawStats(iterations, residual, ~(err <= options.tol))  # NaN: not converged
    residual_fn, update_fn = _kernels(options.compile and not record)
    tol, rtol = float(options.tol), float(options.rtol)
    check_every = int(options.check_every)
    max_iter = int(options.max_iter)
    batch = S0.shape[:-1]
    device = S0.device

    states = None if record else torch.empty((n_days, S0.shape[-1], *batch), dtype=S0.dtype, device=device)
    kept: list[torch.Tensor] = []
    iterations = torch.empty((n_days, *batch), dtype=torch.int32, device=device)
    residual = torch.empty((n_days, *batch), dtype=S0.dtype, device=device)
    not_conv = torch.empty((n_days, *batch), dtype=torch.bool, device=device)
    zero_iters = torch.zeros(batch, dtype=torch.int32, device=device)
    all_active = torch.ones(batch, dtype=torch.bool, device=device)
    no_residual = torch.full(batch, torch.inf, dtype=S0.dtype, device=device)

    S_prev = S0.movedim(-1, 0).contiguous()
    for t in range(n_days):
        c = system.day(t)
        S, S_acc, r_acc, active, iters = S_prev, S_prev, no_residual, all_active, zero_iters
        for k in range(max_iter + 1):
            G, inner, gmax, active = residual_fn(system, S, S_prev, active, c, tol, rtol)
            if k == max_iter or (k % check_every == 0 and not bool(active.any())):
                break
            S, S_acc, r_acc, iters = update_fn(system, S, G, inner, gmax, S_acc, r_acc, active, iters, c)
        iterations[t] = iters
        residual[t] = gmax.detach()
        not_conv[t] = active
        if record:
            S = _polish(system, S, S_prev, c)
            kept.append(S)
        else:
            states[t] = S
        S_prev = S
    if record:
        states = torch.stack(kept, dim=0)
    return states, _RawStats(iterations, residual, not_conv)


def _full_residual(system: Any, S0: torch.Tensor, states5: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """max_i |G_i| (mm/day) of every day and system, ``[T, *batch]``, in one vectorised pass."""
    prev = torch.cat((S0.movedim(-1, 0).unsqueeze(0), states5[:-1]), dim=0)
    G = (states5 - prev) / DT - system.rhs_all_days(states5, fused=fused)
    return G.abs().amax(1)


# ----------------------------------------------------------------------------------------------
# Inputs, the adjoint, the public entry point.


def _check_inputs(structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """Validate shapes; return the parameters the structure uses, as tensors of S0's dtype/device."""
    n = structure.n_storages
    if S0.dim() < 1 or S0.shape[-1] != n:
        raise SolverError(f"initial state must have shape [..., {n}] ({', '.join(structure.storages)}), "
                          f"got {tuple(S0.shape)}")
    n_batch = S0.dim() - 1
    n_days = x.P.shape[0] if x.P.dim() > 0 else 0
    for name, v in zip(Forcing._fields, x):
        if v.dim() != n_batch + 1 or v.shape[0] != n_days:
            raise SolverError(f"forcing {name} must have shape [T, ...] with {n_batch} batch axes "
                              f"(T = {n_days}) broadcastable to {tuple(S0.shape[:-1])}, got {tuple(v.shape)}")
    out: dict[str, torch.Tensor] = {}
    for name in structure.parameter_names:
        if name not in p:
            raise SolverError(f"parameter {name} is missing ({structure.label})")
        v = torch.as_tensor(p[name], dtype=S0.dtype, device=S0.device)
        if v.dim() == n_batch + 1 and v.shape[0] != n_days:
            raise SolverError(f"dynamic parameter {name} has {v.shape[0]} days, forcing has {n_days}")
        if v.dim() > n_batch + 1:
            raise SolverError(f"parameter {name} has shape {tuple(v.shape)}; expected [...] (static) "
                              f"or [T, ...] (dynamic) for batch {tuple(S0.shape[:-1])}")
        out[name] = v
    return out


class _AdjointSequence(torch.autograd.Function):
    """Backward Euler over the whole sequence with the discrete adjoint as its backward."""

    @staticmethod
    def forward(ctx, setup: dict, S0: torch.Tensor, P: torch.Tensor, Tm: torch.Tensor, PET: torch.Tensor,
                *values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = Forcing(P, Tm, PET)
        p = dict(zip(setup["names"], values))
        system = implicit_system(setup["structure"], x, p, S0.dim() - 1)
        states5, raw = _newton_sequence(system, S0, P.shape[0], setup["options"], record=False)
        setup["raw"] = raw
        ctx.setup = setup
        ctx.save_for_backward(states5, P, Tm, PET, *values)
        return states5.movedim(1, -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states: torch.Tensor):  # type: ignore[override]
        states5, P, Tm, PET, *values = ctx.saved_tensors
        setup = ctx.setup
        structure = setup["structure"]
        names = setup["names"]
        x = Forcing(P, Tm, PET)
        system = implicit_system(structure, x, dict(zip(names, values)), states5.dim() - 2)
        lam5 = _adjoint_states(system, states5, grad_states.movedim(-1, 1), setup["options"].compile)

        needs = ctx.needs_input_grad
        grad_S0 = lam5[0].movedim(0, -1) / DT if needs[1] else None
        inputs = list(x) + list(values)
        wanted = [i for i, flag in enumerate(needs[2:]) if flag]
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if wanted:
            # dL/dtheta_t = lam_t^T df/dtheta_t for all days at once (static parameters sum over t);
            # fused: autograd runs the compiled backward of the compiled right-hand side
            rhs = fused_or_eager(("rhs", structure), structure.rhs, setup["options"].compile)
            with torch.enable_grad():
                leaves = [v.detach().requires_grad_(i in wanted) for i, v in enumerate(inputs)]
                f = rhs(states5.movedim(1, -1), Forcing(*leaves[:3]), dict(zip(names, leaves[3:])))
                got = torch.autograd.grad(f, [leaves[i] for i in wanted], grad_outputs=lam5.movedim(1, -1),
                                          allow_unused=True)
            for i, g in zip(wanted, got):
                grads[i] = g
        return (None, grad_S0, *grads)


def _adjoint_states(system: Any, states5: torch.Tensor, grad5: torch.Tensor, fused: bool = False) -> torch.Tensor:
    """Adjoint states ``[T, n, *batch]``: (dG/dS_t)^T lam_t = dL/dS_t + lam_{t+1}/dt, backwards in time."""
    n_days = states5.shape[0]
    adjoint_day = system.adjoint_solver(states5, fused=fused)
    grads = grad5.unbind(0)
    lams: list[torch.Tensor] = [grads[0]] * n_days
    lam_next: torch.Tensor | None = None
    for t in range(n_days - 1, -1, -1):
        lam_next = lams[t] = adjoint_day(t, grads[t], lam_next)
    return torch.stack(lams)


def _summarise(raw: _RawStats, options: NewtonOptions) -> dict:
    """Solver statistics as plain Python numbers (one host synchronisation)."""
    iters = raw.iterations
    n_days = iters.shape[0]
    hist = torch.bincount(iters.reshape(-1).to(torch.int64), minlength=options.max_iter + 1)
    per_basin_day = raw.not_converged.reshape(n_days, iters.shape[1], -1).any(-1) if iters.dim() > 2 \
        else raw.not_converged
    return {
        "iterations_hist": hist.tolist(),
        "max_iterations": int(iters.max()) if iters.numel() else 0,
        "mean_iterations": float(iters.to(torch.float64).mean()) if iters.numel() else 0.0,
        "n_system_days": int(iters.numel()),
        "n_basin_days": int(per_basin_day.numel()),
        "n_not_converged": int(per_basin_day.sum()),
        "n_not_converged_systems": int(raw.not_converged.sum()),
        "max_residual": float(raw.residual.max()) if raw.residual.numel() else 0.0,
        "tol": options.tol,
        "rtol": options.rtol,
        "max_iter": options.max_iter,
        "iterations": iters,
        "not_converged": per_basin_day,
    }


def backward_euler(structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor, *,
                   gradient: str = "adjoint", options: NewtonOptions | None = None) -> tuple[torch.Tensor, dict]:
    """Integrate ``structure`` with implicit backward Euler (daily step), Newton per basin and day.

    Parameters
    ----------
    structure
        The model structure (its right-hand side, and its own system when it has one).
    x
        Daily forcing, each ``[T, *batch]`` (or broadcastable per day, e.g. ``[T, B, 1]`` for a
        ``[B, nmul]`` batch): P (mm/day), mean T (degC), PET (mm/day).
    p
        Physical parameters by name (docs/model.md), each ``[*batch]`` (static; broadcastable)
        or ``[T, *batch]`` (dynamic); those of ``structure.parameter_names`` are used.
    S0
        Storages before the first day, ``[*batch, n]`` (mm).
    gradient
        ``"adjoint"``: the discrete adjoint (one custom autograd function for the sequence);
        ``"autograd"``: autograd unrolled through the Newton iterations.
    options
        Newton settings; defaults depend on the dtype (see :class:`NewtonOptions`).

    Returns
    -------
    states : torch.Tensor
        Converged storages after each day, ``[T, *batch, n]`` (mm).
    stats : dict
        ``iterations_hist`` (count of system-days per number of Newton updates),
        ``max_iterations``, ``mean_iterations``, ``n_not_converged`` (basin-days, the first
        batch axis being the basin, where any component missed the tolerance),
        ``n_not_converged_systems``, ``max_residual`` (mm/day), the tolerances used, and
        ``iterations``: the Newton updates of every system-day, an integer tensor ``[T, *batch]``,
        and ``not_converged``: a boolean tensor ``[T, B]`` of the basin-days counted in
        ``n_not_converged``. A non-finite residual (NaN or inf in a state or a flux) is never
        counted as converged.

    Raises
    ------
    SolverError
        On malformed inputs or an unknown ``gradient``.
    """
    if gradient not in GRADIENT_METHODS:
        raise SolverError(f"gradient must be one of {GRADIENT_METHODS}, got {gradient!r}")
    params = _check_inputs(structure, x, p, S0)
    opts = (options or NewtonOptions()).resolved(S0.dtype, S0.device)
    x = Forcing(*(torch.as_tensor(v, dtype=S0.dtype, device=S0.device) for v in x))
    if gradient == "adjoint":
        setup = {"structure": structure, "names": tuple(params), "options": opts}
        states = _AdjointSequence.apply(setup, S0, *x, *params.values())
        raw = setup["raw"]
    else:
        record = torch.is_grad_enabled() and (S0.requires_grad or any(
            v.requires_grad for v in (*x, *params.values())))
        system = implicit_system(structure, x, params, S0.dim() - 1)
        states5, raw = _newton_sequence(system, S0, x.P.shape[0], opts, record)
        states = states5.movedim(1, -1)
    return states, _summarise(raw, opts)


class BackwardEuler(TimeScheme):
    """Implicit backward Euler, one step per day, Newton per system and day.

    Parameters
    ----------
    options
        Newton settings (:class:`~benchmark.solvers.newton.NewtonOptions`); default: the
        dtype-dependent tolerances.
    """

    name = "implicit"
    gradients = GRADIENT_METHODS
    description = "implicit backward Euler"

    def __init__(self, options: NewtonOptions | None = None) -> None:
        self.options = options or NewtonOptions()

    def integrate(self, structure: Structure, x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor,
                  gradient: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        states, stats = backward_euler(structure, x, p, S0, gradient=gradient, options=self.options)
        # backward Euler: the day's flux is the rate at the converged end-of-day storages
        f = structure.fluxes(states, x, p)
        return states, {name: f[name] for name in structure.reported_fluxes}, dict(stats)

    def __repr__(self) -> str:
        return f"BackwardEuler({self.options})"


def integrate_backward_euler(x: Forcing, p: Mapping[str, torch.Tensor], S0: torch.Tensor, *,
                             capillary_rise: bool, gradient: str = "adjoint",
                             options: NewtonOptions | None = None) -> tuple[torch.Tensor, dict]:
    """:func:`backward_euler` for HBV (``NDC`` used when present with capillary rise, else 1)."""
    from benchmark.models.hbv import HBV

    structure = HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise and "NDC" in p)
    return backward_euler(structure, x, p, S0, gradient=gradient, options=options)
