"""Run a model structure with given physical parameters: the plain simulation API.

``simulate`` is the single code path used by users (parameters in hand, no network) and by the
trainer (parameters from the LSTM). It

1. checks and lays out the inputs as ``[T, B, nmul]`` (forcing gets a component axis of 1),
2. builds the time scheme (:func:`benchmark.solvers.make_scheme`) and checks that it, the
   structure and the gradient method go together (before anything runs),
3. runs the scheme, averages the daily fluxes over the ``nmul`` components, and
4. routes the component-mean outflow with the gamma unit hydrograph (structures with their own
   routing, such as GR4J, take ``routing=None``).

Shapes (T days, B basins): ``forcing`` [T, B, 3] = (P mm/day, mean T degC, PET mm/day).
Parameters by name (docs/model.md): with ``nmul == 1`` static [B] or dynamic [T, B]; with
``nmul > 1`` static [B, nmul] or dynamic [T, B, nmul]; a float or 0-d tensor is the same
value everywhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch

from benchmark.errors import ConfigError
from benchmark.models.base import Forcing, Structure
from benchmark.models.hbv import HBV
from benchmark.models.routing import route
from benchmark.solvers import SCHEME_NAMES, make_scheme
from benchmark.solvers.base import TimeScheme
from benchmark.solvers.newton import NewtonOptions

SCHEMES: tuple[str, ...] = SCHEME_NAMES

_SIMPLE_OPTIONS = ("compile", "manual_backward")


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


def _layout_parameters(params: Mapping[str, Any], structure: Structure, n_days: int, n_basins: int,
                       nmul: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
    names = structure.parameter_names
    missing = [name for name in names if name not in params]
    if missing:
        raise ConfigError(f"simulate: missing {type(structure).__name__} parameter(s) {missing}; got {sorted(params)}")
    return {name: _layout_parameter(name, params[name], n_days, n_basins, nmul, like) for name in names}


def _initial_state(initial_state: Any, n_basins: int, nmul: int, n_storages: int, like: torch.Tensor
                   ) -> torch.Tensor:
    shape = (n_basins, nmul, n_storages)
    if initial_state is None:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    s0 = torch.as_tensor(initial_state).to(dtype=like.dtype, device=like.device)
    if s0.dim() == 2 and s0.shape[-1] == n_storages:
        s0 = s0.unsqueeze(1)  # [B, n]: the same initial storages in every component
    try:
        return torch.broadcast_to(s0, shape)
    except RuntimeError:
        raise ConfigError(
            f"simulate: initial_state has shape {tuple(s0.shape)}; expected [{n_basins}, {nmul}, {n_storages}], "
            f"[{n_basins}, {n_storages}] or a scalar (mm)"
        ) from None


def _split_options(solver_options: Any) -> tuple[dict[str, Any], NewtonOptions | dict[str, Any] | None]:
    """Split ``solver_options`` into the options of the simple schemes and the Newton options.

    Every key must be a :class:`~benchmark.solvers.newton.NewtonOptions` field, ``compile`` or
    ``manual_backward``, whatever the scheme (a typo is an error, not a silently ignored option).
    """
    if solver_options is None:
        return {}, None
    if dataclasses.is_dataclass(solver_options):
        return {"compile": getattr(solver_options, "compile", False)}, solver_options
    if not isinstance(solver_options, Mapping):
        raise ConfigError(f"simulate: solver_options must be a mapping or NewtonOptions, got {solver_options!r}")
    newton_fields = {f.name for f in dataclasses.fields(NewtonOptions)}
    known = newton_fields | set(_SIMPLE_OPTIONS)
    unknown = sorted(set(solver_options) - known)
    if unknown:
        raise ConfigError(f"simulate: unknown solver option(s) {unknown}; known: {sorted(known)}")
    simple = {k: v for k, v in solver_options.items() if k in _SIMPLE_OPTIONS}
    return simple, {k: v for k, v in solver_options.items() if k in newton_fields}


def _structure(structure: Structure | None, capillary_rise: bool, scheme: str, params: Mapping[str, Any]
               ) -> Structure:
    """The structure to run: the one given, or HBV configured by the legacy arguments."""
    if structure is None:
        learn_ndc = capillary_rise and scheme != "sequential" and "NDC" in params
        return HBV(capillary_rise=capillary_rise, learn_ndc=learn_ndc)
    if not isinstance(structure, Structure):
        raise ConfigError(f"simulate: structure must be a Structure (e.g. HBV(), GR4J()), got {structure!r}")
    if capillary_rise:
        raise ConfigError("simulate: capillary_rise is an option of HBV; pass structure=HBV(capillary_rise=True)")
    return structure


def _gradient(gradient: str | None, scheme: str, simple: Mapping[str, Any]) -> str | None:
    """The asked gradient method, with the legacy ``manual_backward`` option of the sequential scheme."""
    if scheme != "sequential" or "manual_backward" not in simple:
        return gradient
    legacy = "manual" if simple["manual_backward"] else "autograd"
    if gradient not in (None, legacy):
        raise ConfigError(f"simulate: solver option manual_backward={simple['manual_backward']} contradicts "
                          f"gradient={gradient!r}")
    return legacy


def prepare(structure: Structure | None, scheme: str, *, substeps: int = 1, gradient: str | None = None,
            solver_options: Any = None, capillary_rise: bool = False, params: Mapping[str, Any] = {}
            ) -> tuple[Structure, TimeScheme, str]:
    """The structure, the time scheme and the gradient method of a run, checked to go together.

    Takes :func:`simulate`'s arguments of the same names; callers that run many simulations
    (the network) call it once up front, so that an invalid combination is refused before any
    work (``params`` only decides whether HBV's NDC is learned when ``structure`` is None).

    Raises
    ------
    ConfigError
        For an unknown scheme, option or gradient method, or a combination that does not go together.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"simulate: unknown scheme {scheme!r}; expected one of {SCHEMES}")
    simple, newton = _split_options(solver_options)
    model = _structure(structure, capillary_rise, scheme, params)
    try:
        time_scheme = make_scheme(scheme, substeps=substeps, compile=bool(simple.get("compile", False)),
                                  newton=newton)
        return model, time_scheme, time_scheme.check(model, _gradient(gradient, scheme, simple))
    except ConfigError as error:
        raise ConfigError(f"simulate: {error}") from None


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
    structure: Structure | None = None,
) -> dict[str, Any]:
    """Simulate a model structure (HBV by default) for B basins over T days.

    Parameters
    ----------
    forcing
        ``[T, B, 3]``: precipitation (mm/day), mean temperature (degC), PET (mm/day).
        Its dtype and device are used throughout.
    params
        Physical parameters by name (docs/model.md; for HBV: BETA, FC, K0, K1, K2, LP, PERC,
        UZL, TT, CFMAX, CFR, CWH, BETAET; plus C with capillary rise, and NDC for the
        implicit/explicit improved models — default 1 when absent; the sequential model always
        uses 1). Shapes: ``nmul == 1``: static [B] / dynamic [T, B]; ``nmul > 1``: static
        [B, nmul] / dynamic [T, B, nmul]; floats are broadcast. Extra names are ignored.
    scheme
        ``"implicit"`` (backward Euler + Newton), ``"sequential"`` (operator splitting; for
        HBV the δHBV update of Feng et al. 2022), ``"euler"`` (explicit Euler, ``substeps``
        per day) or ``"rk4"``.
    capillary_rise
        HBV only: the "improved" model with capillary rise from the lower zone.
    substeps
        Steps per day of the explicit schemes (Euler 1 d / 4 h / 1 h: 1 / 6 / 24).
    routing
        ``(a, b)`` physical gamma routing parameters, each a float or a tensor [B];
        ``None``: no routing (``Q`` is the unrouted flow).
    nmul
        Number of parallel components per basin; fluxes are averaged over them.
    gradient
        ``"adjoint"`` (implicit scheme; its default) or ``"autograd"`` (unrolled Newton);
        ``"manual"`` (sequential scheme: the structure's hand-written reverse pass, its default
        where the structure has one) or ``"autograd"`` (through the daily loop; same values and
        gradients, slower); the explicit schemes: ``"autograd"``. Invalid combinations raise
        :class:`ConfigError` before anything runs.
    initial_state
        Storages at the start (mm): ``[B, nmul, n]``, ``[B, n]`` or a scalar; default zeros.
        Order: the structure's ``storages`` (HBV: SNOW, MELT, SM, SUZ, SLZ).
    solver_options
        A mapping or :class:`benchmark.solvers.newton.NewtonOptions`. The implicit scheme
        reads the Newton options (``tol``, ``rtol``, ``max_iter``, ``eliminate``, ``compile``,
        ...); the other schemes read only ``compile`` (``torch.compile`` the per-day step,
        default off) and ignore Newton settings (the trainer passes one set of options to
        every scheme). ``manual_backward`` (sequential scheme) is the older spelling of
        ``gradient``: True = ``"manual"``, False = ``"autograd"``.
    structure
        The model structure (:class:`benchmark.models.base.Structure`, e.g.
        ``benchmark.models.gr4j.GR4J()``); default HBV configured by ``capillary_rise``.

    Returns
    -------
    dict
        The structure's reported fluxes as component means (HBV: ``Q0``, ``Q1``, ``Q2``, ``ET``,
        ``recharge``, ``excess``, ``perc``, ``capillary``), ``Q_unrouted`` (the structure's
        outflow) and ``Q`` (routed total flow) — each ``[T, B]`` mm/day; ``states``
        ``[T, B, nmul, n]`` (end-of-day storages, mm), ``final_state`` ``[B, nmul, n]`` and
        ``stats``: solver statistics (numbers or 0-d tensors) and per-day tensors —
        ``non_finite`` (every scheme: bool ``[T, B]``, basin-days with a NaN/inf storage or
        routed flow); for the implicit scheme also ``not_converged`` (bool ``[T, B]``) and
        ``iterations`` (int ``[T, B, nmul]``).
    """
    _check_forcing(forcing)
    if not isinstance(nmul, int) or nmul < 1:
        raise ConfigError(f"simulate: nmul must be a positive integer, got {nmul!r}")
    model, time_scheme, gradient = prepare(structure, scheme, substeps=substeps, gradient=gradient,
                                           solver_options=solver_options, capillary_rise=capillary_rise,
                                           params=params)

    n_days, n_basins, _ = forcing.shape
    p = _layout_parameters(params, model, n_days, n_basins, nmul, forcing)
    x = Forcing(*(v.unsqueeze(-1) for v in forcing.unbind(-1)))  # each [T, B, 1]
    S0 = _initial_state(initial_state, n_basins, nmul, model.n_storages, forcing)
    states, fluxes, stats = time_scheme.integrate(model, x, p, S0, gradient)

    # component means of every daily flux the scheme reports (the structure's reported fluxes at least)
    out: dict[str, Any] = {name: series.mean(-1) for name, series in fluxes.items()}
    out["Q_unrouted"] = model.outflow(out)
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
