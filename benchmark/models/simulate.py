"""Run one HBV variant with given physical parameters: the plain simulation API.

``simulate`` is the single code path used by users (parameters in hand, no network) and by the
trainer (parameters from the LSTM). It

1. checks and lays out the inputs as ``[T, B, nmul]`` (forcing gets a component axis of 1),
2. dispatches on the time scheme (sequential, explicit Euler, RK4, implicit backward Euler),
3. averages the daily fluxes over the ``nmul`` components, and
4. routes the component-mean unrouted flow with the gamma unit hydrograph.

Shapes (T days, B basins): ``forcing`` [T, B, 3] = (P mm/day, mean T degC, PET mm/day).
Parameters by name (docs/model.md#parameters): with ``nmul == 1`` static [B] or dynamic [T, B]; with
``nmul > 1`` static [B, nmul] or dynamic [T, B, nmul]; a float or 0-d tensor is the same
value everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models import hbv
from benchmark.models.hbv import Forcing
from benchmark.models.parameters import BASE_PARAMETERS
from benchmark.models.routing import route

SCHEMES: tuple[str, ...] = ("implicit", "sequential", "euler", "rk4")
GRADIENTS: tuple[str, ...] = ("adjoint", "autograd")
COMPONENT_FLUXES: tuple[str, ...] = ("Q0", "Q1", "Q2", "ET", "recharge", "excess", "perc", "capillary")
"""Daily fluxes returned as component means (mm/day)."""

_SIMPLE_OPTIONS = ("compile", "manual_backward")
NEGATIVE_STORAGE_MM = 1e-6
"""Storages below minus this (mm) count as negative in the explicit schemes' stats."""


def _check_forcing(forcing: torch.Tensor) -> None:
    if not isinstance(forcing, torch.Tensor) or forcing.dim() != 3 or forcing.shape[-1] != 3:
        shape = tuple(forcing.shape) if isinstance(forcing, torch.Tensor) else type(forcing).__name__
        raise ConfigError(f"simulate: forcing must be a tensor [T, B, 3] (P, T, PET), got {shape}")
    if forcing.shape[0] < 1:
        raise ConfigError("simulate: forcing has no time steps")
    if not forcing.is_floating_point():
        raise ConfigError(f"simulate: forcing must be floating point, got {forcing.dtype}")


def _layout_parameter(name: str, value: Any, n_days: int, n_basins: int, nmul: int,
                      like: torch.Tensor) -> torch.Tensor:
    """A parameter as static ``[B, nmul]`` or dynamic ``[T, B, nmul]`` (dtype/device of ``like``)."""
    v = torch.as_tensor(value, dtype=like.dtype, device=like.device) if not isinstance(value, torch.Tensor) \
        else value.to(dtype=like.dtype, device=like.device)
    if v.dim() == 0:
        return v.expand(n_basins, nmul)
    if nmul == 1:
        if v.shape == (n_basins,):
            return v.unsqueeze(-1)
        if v.shape == (n_days, n_basins):
            return v.unsqueeze(-1)
        expected = f"[{n_basins}] (static) or [{n_days}, {n_basins}] (dynamic)"
    else:
        if v.shape == (n_basins, nmul) or v.shape == (n_days, n_basins, nmul):
            return v
        expected = f"[{n_basins}, {nmul}] (static) or [{n_days}, {n_basins}, {nmul}] (dynamic)"
    raise ConfigError(f"simulate: parameter {name!r} has shape {tuple(v.shape)}; expected {expected}")


def _layout_parameters(params: Mapping[str, Any], names: tuple[str, ...], n_days: int, n_basins: int,
                       nmul: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
    missing = [name for name in names if name not in params]
    if missing:
        raise ConfigError(f"simulate: missing HBV parameter(s) {missing}; got {sorted(params)}")
    return {name: _layout_parameter(name, params[name], n_days, n_basins, nmul, like) for name in names}


def _initial_state(initial_state: Any, n_basins: int, nmul: int, like: torch.Tensor) -> torch.Tensor:
    shape = (n_basins, nmul, hbv.N_STORAGES)
    if initial_state is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    s0 = torch.as_tensor(initial_state).to(dtype=like.dtype, device=like.device)
    if s0.dim() == 2 and s0.shape[-1] == hbv.N_STORAGES:
        s0 = s0.unsqueeze(1)  # [B, 5]: the same initial storages in every component
    try:
        return torch.broadcast_to(s0, shape)
    except RuntimeError:
        raise ConfigError(
            f"simulate: initial_state has shape {tuple(s0.shape)}; expected [{n_basins}, {nmul}, 5], "
            f"[{n_basins}, 5] or a scalar (mm)"
        ) from None


def _split_options(solver_options: Any) -> tuple[dict[str, Any], Any]:
    """Split ``solver_options`` into the options of the simple schemes and the Newton options.

    Every key must be a :class:`~benchmark.solvers.implicit.NewtonOptions` field or
    ``compile``, whatever the scheme (a typo is an error, not a silently ignored option).
    """
    if solver_options is None:
        return {}, None
    if dataclasses.is_dataclass(solver_options):
        return {"compile": getattr(solver_options, "compile", False)}, solver_options
    if not isinstance(solver_options, Mapping):
        raise ConfigError(f"simulate: solver_options must be a mapping or NewtonOptions, got {solver_options!r}")
    from benchmark.solvers.implicit import NewtonOptions

    known = {f.name for f in dataclasses.fields(NewtonOptions)} | set(_SIMPLE_OPTIONS)
    unknown = sorted(set(solver_options) - known)
    if unknown:
        raise ConfigError(f"simulate: unknown solver option(s) {unknown}; known: {sorted(known)}")
    simple = {k: v for k, v in solver_options.items() if k in _SIMPLE_OPTIONS}
    return simple, dict(solver_options)


def _newton_options(newton: Any):
    from benchmark.solvers.implicit import NewtonOptions

    if newton is None or isinstance(newton, NewtonOptions):
        return newton
    return NewtonOptions(**newton)


def _integrate(scheme: str, x: Forcing, p: dict[str, torch.Tensor], S0: torch.Tensor, *,
               capillary_rise: bool, substeps: int, gradient: str, compile: bool,
               manual_backward: bool, newton: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """States [T, B, nmul, 5], per-component daily fluxes [T, B, nmul] and solver stats."""
    if scheme == "sequential":
        from benchmark.solvers.sequential import integrate_sequential

        states, fluxes = integrate_sequential(x, p, S0, capillary_rise=capillary_rise, compile=compile,
                                              manual_backward=manual_backward)
        return states, fluxes, {}
    if scheme in ("euler", "rk4"):
        from benchmark.solvers.explicit import integrate_explicit

        states, fluxes = integrate_explicit(x, p, S0, capillary_rise=capillary_rise, method=scheme,
                                            substeps=substeps, compile=compile)
        # storages of an explicit scheme may go negative (the 1-day Euler instability): count the
        # basin-component-days with a storage below -NEGATIVE_STORAGE_MM (0-d tensor, no sync)
        stats = {"n_negative_storage": (states.detach().amin(-1) < -NEGATIVE_STORAGE_MM).sum()}
        return states, fluxes, stats
    from benchmark.solvers.implicit import integrate_backward_euler

    states, stats = integrate_backward_euler(x, p, S0, capillary_rise=capillary_rise, gradient=gradient,
                                             options=_newton_options(newton))
    # backward Euler: the day's flux is the rate at the converged end-of-day storages
    f = hbv.fluxes(states, x, p, capillary_rise=capillary_rise)
    fluxes = {name: getattr(f, name) for name in COMPONENT_FLUXES}
    return states, fluxes, dict(stats)


def simulate(
    forcing: torch.Tensor,
    params: Mapping[str, Any],
    *,
    scheme: str = "implicit",
    capillary_rise: bool = False,
    substeps: int = 1,
    routing: tuple[Any, Any] | None = None,
    nmul: int = 1,
    gradient: str | None = None,
    initial_state: Any = None,
    solver_options: Any = None,
) -> dict[str, Any]:
    """Simulate an HBV variant for B basins over T days.

    Parameters
    ----------
    forcing
        ``[T, B, 3]``: precipitation (mm/day), mean temperature (degC), PET (mm/day).
        Its dtype and device are used throughout.
    params
        Physical parameters by name (docs/model.md#parameters: BETA, FC, K0, K1, K2, LP, PERC, UZL, TT, CFMAX,
        CFR, CWH, BETAET; plus C with capillary rise, and NDC for the implicit/explicit
        improved models — default 1 when absent; the sequential model always uses 1).
        Shapes: ``nmul == 1``: static [B] / dynamic [T, B]; ``nmul > 1``: static [B, nmul] /
        dynamic [T, B, nmul]; floats are broadcast. Extra names are ignored.
    scheme
        ``"implicit"`` (backward Euler + Newton), ``"sequential"`` (Feng et al. 2022 operator
        splitting), ``"euler"`` (explicit Euler, ``substeps`` per day) or ``"rk4"``.
    capillary_rise
        The "improved" model with capillary rise from the lower zone.
    substeps
        Steps per day of the explicit schemes (Euler 1 d / 4 h / 1 h: 1 / 6 / 24).
    routing
        ``(a, b)`` physical gamma routing parameters, each a float or a tensor [B];
        ``None``: no routing (``Q`` is the unrouted flow).
    nmul
        Number of parallel components per basin; fluxes are averaged over them.
    gradient
        Implicit scheme only: ``"adjoint"`` (default) or ``"autograd"`` (unrolled Newton).
        The other schemes always use autograd (``None`` or ``"autograd"``).
    initial_state
        Storages at the start (mm): ``[B, nmul, 5]``, ``[B, 5]`` or a scalar; default zeros.
        Order: SNOW, MELT, SM, SUZ, SLZ.
    solver_options
        A mapping or :class:`benchmark.solvers.implicit.NewtonOptions`. The implicit scheme
        reads the Newton options (``tol``, ``rtol``, ``max_iter``, ...); the other schemes
        read only ``compile`` (``torch.compile`` the per-day step, default off) and, for the
        sequential scheme, ``manual_backward`` (default True: the whole sequence is one
        autograd node with a hand-written reverse pass; False: autograd through the daily
        loop — same values and gradients, slower), and ignore Newton settings.

    Returns
    -------
    dict
        ``Q`` (routed total flow), ``Q_unrouted``, ``Q0``, ``Q1``, ``Q2``, ``ET``, ``recharge``,
        ``excess``, ``perc``, ``capillary`` — each ``[T, B]`` mm/day, means over components;
        ``states`` ``[T, B, nmul, 5]`` (end-of-day storages, mm), ``final_state``
        ``[B, nmul, 5]`` and ``stats``: solver statistics (numbers or 0-d tensors) and
        per-day tensors — ``non_finite`` (every scheme: bool ``[T, B]``, basin-days with a
        NaN/inf storage or routed flow); for the implicit scheme also ``not_converged``
        (bool ``[T, B]``) and ``iterations`` (int ``[T, B, nmul]``).
    """
    _check_forcing(forcing)
    if scheme not in SCHEMES:
        raise ConfigError(f"simulate: unknown scheme {scheme!r}; expected one of {SCHEMES}")
    if scheme == "implicit":
        gradient = gradient or "adjoint"
        if gradient not in GRADIENTS:
            raise ConfigError(f"simulate: unknown gradient method {gradient!r}; expected one of {GRADIENTS}")
    elif gradient not in (None, "autograd"):
        raise ConfigError(f"simulate: the {scheme} scheme supports only gradient='autograd', got {gradient!r}")
    if not isinstance(nmul, int) or nmul < 1:
        raise ConfigError(f"simulate: nmul must be a positive integer, got {nmul!r}")
    if scheme in ("sequential", "implicit") and substeps != 1:
        raise ConfigError(f"simulate: the {scheme} scheme takes one step per day; got substeps={substeps}")

    n_days, n_basins, _ = forcing.shape
    names = BASE_PARAMETERS + (("C",) if capillary_rise else ())
    if capillary_rise and scheme != "sequential" and "NDC" in params:
        names = names + ("NDC",)
    p = _layout_parameters(params, names, n_days, n_basins, nmul, forcing)
    x = Forcing(*(v.unsqueeze(-1) for v in forcing.unbind(-1)))  # each [T, B, 1]
    S0 = _initial_state(initial_state, n_basins, nmul, forcing)
    simple, newton = _split_options(solver_options)

    states, fluxes, stats = _integrate(
        scheme, x, p, S0, capillary_rise=capillary_rise, substeps=substeps, gradient=gradient or "autograd",
        compile=bool(simple.get("compile", False)), manual_backward=bool(simple.get("manual_backward", True)),
        newton=newton,
    )

    # component means of every daily flux the scheme reports (COMPONENT_FLUXES at least)
    out: dict[str, Any] = {name: series.mean(-1) for name, series in fluxes.items()}
    out["Q_unrouted"] = out["Q0"] + out["Q1"] + out["Q2"]
    out["Q"] = out["Q_unrouted"] if routing is None else route(out["Q_unrouted"], *_routing(routing, forcing))
    out["states"] = states
    out["final_state"] = states[-1]
    # basin-days whose storages or routed flow are NaN/inf, whatever the scheme: callers
    # refuse them (training) or mark the basin failed (evaluation); a reduction, no host sync
    bad_states = ~torch.isfinite(states.detach()).flatten(2).all(-1)
    out["stats"] = {**stats, "non_finite": bad_states | ~torch.isfinite(out["Q"].detach())}
    return out


def _routing(routing: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        a, b = routing
    except (TypeError, ValueError):
        raise ConfigError(f"simulate: routing must be (a, b) or None, got {routing!r}") from None
    n_basins = like.shape[1]
    out = []
    for name, v in (("a", a), ("b", b)):
        t = torch.as_tensor(v).to(dtype=like.dtype, device=like.device)
        if t.dim() == 0:
            t = t.expand(n_basins)
        if t.shape != (n_basins,):
            raise ConfigError(f"simulate: routing parameter {name} has shape {tuple(t.shape)}; expected [{n_basins}]")
        out.append(t)
    return out[0], out[1]
