"""HBV's operator-split daily update (Feng et al. 2022, the δHBV scheme) and its hand-written reverse pass.

Per day, in this order, each step updating the storages before the next (see docs/schemes.md):

1. snow routine (:func:`benchmark.models.snow.split_snow_day`): snowfall, melt, refreezing,
   release of meltwater to the soil;
2. soil routine: recharge, excess over FC, evapotranspiration (ET limited by SM, SM >= 1e-5);
3. ("improved" models only) capillary rise from the lower zone,
   Cr = min(SLZ, C·SLZ·(1 − min(SM/FC, 1))) — θNDC fixed to 1 as in the paper's sequential model;
4. response routine: percolation, Q0 above UZL, Q1 and Q2 linear reservoirs.

Everything that does not depend on the storages (the rain/snow split, potential melt and
refreezing, log FC) is computed for all days at once before the time loop
(:func:`split_days`). One function, :func:`forward_day`, is the daily update of both gradient
paths: autograd through the loop of :mod:`benchmark.solvers.sequential`, and
:class:`SequentialFunction`, the whole sequence as one autograd node whose backward walks the
days in reverse applying the chain rule of each step written out by hand
(:func:`backward_day`), unfused or, with ``compile``, as one compiled call per day each way
(:class:`FusedSequentialFunction`). Autograd through the loop records ~45 graph nodes per day; on a CPU
the engine's per-node overhead dominates the backward pass at training sizes (1600 systems per
op), which the hand-written pass avoids. Its branch choices (subgradients at kinks) are
autograd's: ``where(a <= b, a, b)`` sends the gradient to ``a`` on a tie, ``relu`` passes none
at 0, ``clamp_min`` passes it at the bound; a test checks both paths agree.

Day inputs are per-day tensors in the order of :data:`DAY_INPUTS`, each dynamic ``[T, *batch]``
or static (broadcastable to ``batch``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from benchmark.models.base import Forcing, SplitDays
from benchmark.models.hbv.fluxes import REPORTED_FLUXES
from benchmark.models.hbv.parameters import BASE_PARAMETERS
from benchmark.models.reverse import where_else_zero, zero_where
from benchmark.models.snow import SnowForcing, snow_forcing, split_snow_day, split_snow_day_reverse
from benchmark.solvers.fused import fused_or_eager

SM_MIN_SEQUENTIAL = 1e-5
"""Floor of soil moisture (and of SLZ after capillary rise) in the sequential scheme (mm)."""

FLUX_NAMES: tuple[str, ...] = REPORTED_FLUXES + ("floor_source",)
"""Daily fluxes (mm/day) of the operator-split update, in this order (HBV's reported fluxes, then
the floor source).

``floor_source`` is the water the scheme creates by flooring SM (and SLZ after capillary rise)
at :data:`SM_MIN_SEQUENTIAL`; with it the daily balance closes to rounding:
ΔS = P − ET − Q0 − Q1 − Q2 + floor_source. It is zero unless a store runs dry."""

DAY_INPUTS: tuple[str, ...] = (
    "snowfall", "rain", "melt_pot", "refr_pot", "pet",
    "BETA", "FC", "LOGFC", "LOGLPFC", "BETAET", "CWH", "PERC", "K0", "K1", "K2", "UZL", "C",
)
(I_SNOWFALL, I_RAIN, I_MELT_POT, I_REFR_POT, I_PET, I_BETA, I_FC, I_LOGFC, I_LOGLPFC, I_BETAET,
 I_CWH, I_PERC, I_K0, I_K1, I_K2, I_UZL, I_C) = range(len(DAY_INPUTS))
LOOP_PARAMETERS = DAY_INPUTS[I_BETA:]
"""Per-day inputs after the forcing terms (LOGFC = log FC, LOGLPFC = log(LP·FC))."""

N_FLUXES = len(FLUX_NAMES)


def forward_day(state, d, capillary_rise: bool, sm_min: float, keep: bool):
    """One day; returns (new state, fluxes, saved intermediates or None)."""
    snow, meltw, sm, suz, slz = state
    s3, w3, to_soil, snow_saved = split_snow_day(
        snow, meltw, SnowForcing(d[I_SNOWFALL], d[I_RAIN], d[I_MELT_POT], d[I_REFR_POT]), d[I_CWH])

    infil = d[I_RAIN] + to_soil
    l1 = torch.log(sm) - d[I_LOGFC]
    e1 = torch.exp(d[I_BETA] * l1)
    m_e1 = e1 <= 1.0
    g1 = e1.clamp_max(1.0)
    rech = infil * g1
    sm1 = sm + infil - rech
    dex = sm1 - d[I_FC]
    m_ex = dex > 0
    ex = torch.relu(dex)
    sm2 = sm1 - ex
    l2 = torch.log(sm2) - d[I_LOGLPFC]
    e2 = torch.exp(d[I_BETAET] * l2)
    m_e2 = e2 <= 1.0
    g2 = e2.clamp_max(1.0)
    etp = d[I_PET] * g2
    m_et = etp <= sm2
    et = torch.where(m_et, etp, sm2)
    sm_d = sm2 - et
    m_floor = sm_d >= sm_min
    sm3 = sm_d.clamp_min(sm_min)
    floor = sm3 - sm_d

    cr_saved = None
    if capillary_rise:
        r = sm3 / d[I_FC]
        m_r = r <= 1.0
        one_minus = 1.0 - r.clamp_max(1.0)
        cand = d[I_C] * slz * one_minus
        m_cap = slz <= cand
        cap = torch.where(m_cap, slz, cand)
        sm_w = sm3 + cap
        slz_d = slz - cap
        m_smw = sm_w >= sm_min
        m_slzd = slz_d >= sm_min
        sm_new = sm_w.clamp_min(sm_min)
        slz_a = slz_d.clamp_min(sm_min)
        floor = floor + (sm_new - sm_w) + (slz_a - slz_d)
        if keep:
            cr_saved = (sm3, slz, r, m_r, one_minus, m_cap, m_smw, m_slzd)
    else:
        cap = None
        sm_new, slz_a = sm3, slz

    suz1 = suz + rech + ex
    m_perc = suz1 <= d[I_PERC]
    perc = suz1.clamp(max=d[I_PERC])
    suz2 = suz1 - perc
    h = suz2 - d[I_UZL]
    m_q0 = h > 0
    rq = torch.relu(h)
    q0 = d[I_K0] * rq
    suz3 = suz2 - q0
    q1 = d[I_K1] * suz3
    suz4 = suz3 - q1
    slz1 = slz_a + perc
    q2 = d[I_K2] * slz1
    slz2 = slz1 - q2

    saved = None
    if keep:
        saved = (snow_saved, sm, l1, e1, m_e1, g1, infil, m_ex, sm2, l2, e2, m_e2, g2,
                 m_et, m_floor, m_perc, m_q0, rq, suz3, slz1, cr_saved)
    fluxes = (q0, q1, q2, et, rech, ex, perc, cap, floor)
    return (s3, w3, sm_new, suz4, slz2), fluxes, saved


def backward_day(g_state, g_flux, saved, d, capillary_rise: bool):
    """Reverse of :func:`forward_day`: (grads of the previous state, grads of the day inputs)."""
    gS_snow, gS_w, gS_sm, gS_suz, gS_slz = g_state
    gq0, gq1, gq2, get_, grech, gex, gperc, gcap, gfloor = g_flux
    (snow_saved, sm, l1, e1, m_e1, g1, infil, m_ex, sm2, l2, e2, m_e2, g2,
     m_et, m_floor, m_perc, m_q0, rq, suz3, slz1, cr_saved) = saved
    gi: list = [None] * len(DAY_INPUTS)

    # response routine
    g_slz1 = gS_slz
    g_q2 = gq2 - gS_slz
    g_slz1 = g_slz1 + g_q2 * d[I_K2]
    gi[I_K2] = g_q2 * slz1
    g_slza = g_slz1
    g_perc = gperc + g_slz1
    g_suz3 = gS_suz
    g_q1 = gq1 - gS_suz
    g_suz3 = g_suz3 + g_q1 * d[I_K1]
    gi[I_K1] = g_q1 * suz3
    g_suz2 = g_suz3
    g_q0 = gq0 - g_suz3
    gi[I_K0] = g_q0 * rq
    g_h = where_else_zero(m_q0, g_q0 * d[I_K0])
    g_suz2 = g_suz2 + g_h
    gi[I_UZL] = -g_h
    g_suz1 = g_suz2
    g_perc = g_perc - g_suz2
    g_suz1 = g_suz1 + where_else_zero(m_perc, g_perc)
    gi[I_PERC] = zero_where(m_perc, g_perc)
    g_suz = g_suz1
    g_rech = grech + g_suz1
    g_ex = gex + g_suz1

    # capillary rise and the SM floor
    g_fc = None
    if capillary_rise:
        sm3, slz, r, m_r, one_minus, m_cap, m_smw, m_slzd = cr_saved
        g_floor0 = gfloor
        g_smw = where_else_zero(m_smw, gS_sm + gfloor) - gfloor
        g_slzd = where_else_zero(m_slzd, g_slza + gfloor) - gfloor
        g_slz = g_slzd
        g_cap = gcap - g_slzd + g_smw
        g_sm3 = g_smw
        g_slz = g_slz + where_else_zero(m_cap, g_cap)
        g_cand = zero_where(m_cap, g_cap)
        c = d[I_C]
        gi[I_C] = g_cand * slz * one_minus
        g_slz = g_slz + g_cand * c * one_minus
        g_r = where_else_zero(m_r, -g_cand * c * slz)
        g_sm3 = g_sm3 + g_r / d[I_FC]
        g_fc = -g_r * r / d[I_FC]
    else:
        g_floor0 = gfloor
        g_sm3 = gS_sm
        g_slz = g_slza

    # soil routine
    g_smd = where_else_zero(m_floor, g_sm3 + g_floor0) - g_floor0
    g_sm2 = g_smd
    g_et = get_ - g_smd
    g_etp = where_else_zero(m_et, g_et)
    g_sm2 = g_sm2 + zero_where(m_et, g_et)
    gi[I_PET] = g_etp * g2
    g_e2 = where_else_zero(m_e2, g_etp * d[I_PET]) * e2
    gi[I_BETAET] = g_e2 * l2
    g_l2 = g_e2 * d[I_BETAET]
    g_sm2 = g_sm2 + g_l2 / sm2
    gi[I_LOGLPFC] = -g_l2
    g_sm1 = g_sm2
    g_ex = g_ex - g_sm2
    g_exm = where_else_zero(m_ex, g_ex)
    g_sm1 = g_sm1 + g_exm
    gi[I_FC] = -g_exm if g_fc is None else g_fc - g_exm
    g_sm = g_sm1
    g_infil = g_sm1 + (g_rech - g_sm1) * g1
    g_e1 = where_else_zero(m_e1, (g_rech - g_sm1) * infil) * e1
    gi[I_BETA] = g_e1 * l1
    g_l1 = g_e1 * d[I_BETA]
    g_sm = g_sm + g_l1 / sm
    gi[I_LOGFC] = -g_l1
    gi[I_RAIN] = g_infil

    # snow routine
    g = split_snow_day_reverse(gS_snow, gS_w, g_infil, snow_saved, d[I_CWH])
    gi[I_CWH], gi[I_REFR_POT], gi[I_MELT_POT], gi[I_SNOWFALL] = g.cwh, g.refreeze_pot, g.melt_pot, g.snowfall
    return (g.snow, g.meltwater, g_sm, g_suz, g_slz), gi


class SequentialFunction(torch.autograd.Function):
    """Whole-sequence sequential δHBV with a hand-written backward (see module docstring)."""

    @staticmethod
    def forward(ctx, capillary_rise: bool, sm_min: float, dynamic: tuple[bool, ...], S0: torch.Tensor,
                *inputs: torch.Tensor):
        n_days = next(v.shape[0] for v, dyn in zip(inputs, dynamic) if dyn)
        per_day = [v.unbind(0) if dyn else None for v, dyn in zip(inputs, dynamic)]
        keep = any(ctx.needs_input_grad[3:])
        state = tuple(S0.unbind(-1))
        states, fluxes, saved = [], [], []
        for t in range(n_days):
            d = [seq[t] if seq is not None else v for seq, v in zip(per_day, inputs)]
            state, f, s = forward_day(state, d, capillary_rise, sm_min, keep)
            states.append(state)
            fluxes.append(f)
            saved.append(s)
        out_states = torch.stack([s for storage in zip(*states) for s in storage], dim=0)
        out_states = out_states.unflatten(0, (5, n_days)).movedim(0, -1).contiguous()
        like = fluxes[0][0]
        flux_series = []
        for k in range(N_FLUXES):
            series = [f[k] for f in fluxes]
            flux_series.append(torch.zeros((n_days,) + like.shape, dtype=like.dtype, device=like.device)
                               if series[0] is None else torch.stack(series, dim=0))
        ctx.capillary_rise, ctx.dynamic, ctx.n_days = capillary_rise, dynamic, n_days
        ctx.saved_days = saved
        ctx.save_for_backward(S0, *inputs)
        return (out_states, *flux_series)

    @staticmethod
    def backward(ctx, g_states: torch.Tensor, *g_fluxes: torch.Tensor):
        S0, *inputs = ctx.saved_tensors
        dynamic, n_days, cr = ctx.dynamic, ctx.n_days, ctx.capillary_rise
        per_day = [v.unbind(0) if dyn else None for v, dyn in zip(inputs, dynamic)]
        g_states_days = g_states.unbind(0)
        g_flux_days = [g.unbind(0) for g in g_fluxes]
        zeros = torch.zeros_like(S0[..., 0])
        g_state = (zeros,) * 5
        dyn_grads: list[list] = [[None] * n_days if dyn else None for dyn in dynamic]
        static_grads: list = [None] * len(inputs)
        for t in range(n_days - 1, -1, -1):
            g_out = g_states_days[t].unbind(-1)
            g_state = tuple(a + b for a, b in zip(g_state, g_out))
            d = [seq[t] if seq is not None else v for seq, v in zip(per_day, inputs)]
            g_flux = [g[t] for g in g_flux_days]
            g_state, gi = backward_day(g_state, g_flux, ctx.saved_days[t], d, cr)
            for k, g in enumerate(gi):
                if g is None:
                    continue
                if dynamic[k]:
                    dyn_grads[k][t] = g
                else:
                    static_grads[k] = g if static_grads[k] is None else static_grads[k] + g
        ctx.saved_days = None
        grads = []
        for k, v in enumerate(inputs):
            if not ctx.needs_input_grad[4 + k]:
                grads.append(None)
            elif dynamic[k]:
                series = [g if g is not None else torch.zeros_like(zeros) for g in dyn_grads[k]]
                grads.append(_reduce(torch.stack(series, dim=0), v.shape))
            else:
                g = static_grads[k]
                grads.append(None if g is None else _reduce(g, v.shape))
        g_s0 = torch.stack(g_state, dim=-1) if ctx.needs_input_grad[3] else None
        return (None, None, None, g_s0, *grads)


def _reduce(g: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum a broadcast gradient back to the input's ``shape``."""
    return g if tuple(g.shape) == tuple(shape) else g.sum_to_size(shape)


# ---------------------------------------------------------------------------------------------
# The fused pass: one compiled call per day forward and one per day backward
# (benchmark/solvers/fused.py). The backward call recomputes its day's forward from the entering
# storages and applies backward_day: recomputing a day costs less than storing its two dozen
# intermediates, since the pass is dispatch-bound, not compute-bound.


def _assemble(dynamic: Sequence[bool], row: torch.Tensor, statics: torch.Tensor) -> list[torch.Tensor]:
    """The day's inputs in :data:`DAY_INPUTS` order from the stacked dynamic row and stacked static inputs."""
    rows, fixed = iter(row.unbind(0)), iter(statics.unbind(0))
    return [next(rows) if is_dynamic else next(fixed) for is_dynamic in dynamic]


def _stack_fluxes(fluxes: Sequence[torch.Tensor | None], like: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.zeros_like(like) if f is None else f.expand_as(like) for f in fluxes])


def sequential_kernels(dynamic: tuple[bool, ...], capillary_rise: bool, sm_min: float, fused: bool
                       ) -> tuple[Callable, Callable]:
    """The forward and reverse day functions of the sequential scheme for one input layout.

    Returns
    -------
    forward(state5, row, statics) -> (state5, fluxes9)
        ``state5`` storages ``[5, *batch]`` (mm), ``row`` the day's dynamic inputs
        ``[k, *batch]``, ``statics`` the static inputs stacked ``[s, *batch]``; fluxes ``[N_FLUXES, *batch]`` (mm/day).
    reverse(prev5, row, statics, g_next5, g_out5, g_flux, g_static) -> (g_prev5, g_row, g_static)
        Gradients with respect to the entering storages, the day's dynamic inputs
        ``[k, *batch]`` and the running sum of the static inputs' gradients ``[s, *batch]``;
        ``g_next5`` is the gradient arriving from the next day, ``g_out5`` that of the day's
        reported storages, ``g_flux`` that of its fluxes.
    """
    n_static = dynamic.count(False)

    def forward(state5: torch.Tensor, row: torch.Tensor, statics: torch.Tensor):
        d = _assemble(dynamic, row, statics)
        state, fluxes, _ = forward_day(tuple(state5.unbind(0)), d, capillary_rise, sm_min, False)
        new5 = torch.stack(state)
        return new5, _stack_fluxes(fluxes, new5[0])

    def reverse(prev5: torch.Tensor, row: torch.Tensor, statics: torch.Tensor, g_next5: torch.Tensor,
                g_out5: torch.Tensor, g_flux: torch.Tensor, g_static: torch.Tensor):
        d = _assemble(dynamic, row, statics)
        _, _, saved = forward_day(tuple(prev5.unbind(0)), d, capillary_rise, sm_min, True)
        g_state = tuple((g_next5 + g_out5).unbind(0))
        g_prev, gi = backward_day(g_state, tuple(g_flux.unbind(0)), saved, d, capillary_rise)
        like = g_prev[0]
        zero = torch.zeros_like(like)
        g_row = [zero if g is None else g.expand_as(like) for g, dyn in zip(gi, dynamic) if dyn]
        g_fixed = [zero if g is None else g.expand_as(like) for g, dyn in zip(gi, dynamic) if not dyn]
        g_static = g_static + torch.stack(g_fixed) if n_static else g_static
        return torch.stack(g_prev), torch.stack(g_row), g_static

    key = ("hbv-sequential", dynamic, capillary_rise, sm_min)
    return fused_or_eager(key + ("forward",), forward, fused), fused_or_eager(key + ("reverse",), reverse, fused)


def _stack_statics(inputs: Sequence[torch.Tensor], dynamic: Sequence[bool], batch: Sequence[int]) -> torch.Tensor:
    """The static inputs broadcast to the batch and stacked, ``[s, *batch]``: one kernel argument."""
    fixed = [torch.broadcast_to(v, tuple(batch)) for v, is_dynamic in zip(inputs, dynamic) if not is_dynamic]
    return torch.stack(fixed) if fixed else inputs[0].new_zeros((0, *batch))


class FusedSequentialFunction(torch.autograd.Function):
    """Whole-sequence sequential δHBV, one fused call per day forward and one per day backward.

    Same inputs and outputs as :class:`~benchmark.models.hbv.sequential.SequentialFunction`.
    """

    @staticmethod
    def forward(ctx, capillary_rise: bool, sm_min: float, dynamic: tuple[bool, ...], fused: bool, S0: torch.Tensor,
                *inputs: torch.Tensor):
        batch = S0.shape[:-1]
        dyn = [v for v, is_dynamic in zip(inputs, dynamic) if is_dynamic]
        statics = _stack_statics(inputs, dynamic, batch)
        table = torch.stack([torch.broadcast_to(v, dyn[0].shape[:1] + batch) for v in dyn], dim=1)  # [T, k, *batch]
        forward_fn, _ = sequential_kernels(dynamic, capillary_rise, sm_min, fused)
        state = S0.movedim(-1, 0).contiguous()
        states, fluxes = [], []
        for row in table.unbind(0):
            state, flux = forward_fn(state, row, statics)
            states.append(state)
            fluxes.append(flux)
        states5 = torch.stack(states)  # [T, 5, *batch]
        ctx.setup = (capillary_rise, sm_min, dynamic, fused)
        ctx.save_for_backward(S0, table, states5, *inputs)
        return (states5.movedim(1, -1), *torch.stack(fluxes).unbind(1))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_states: torch.Tensor, *g_fluxes: torch.Tensor):
        capillary_rise, sm_min, dynamic, fused = ctx.setup
        S0, table, states5, *inputs = ctx.saved_tensors
        statics = _stack_statics(inputs, dynamic, S0.shape[:-1])
        _, reverse_fn = sequential_kernels(dynamic, capillary_rise, sm_min, fused)
        n_days = table.shape[0]
        prev5 = torch.cat((S0.movedim(-1, 0).unsqueeze(0), states5[:-1]))
        g_out5 = g_states.movedim(-1, 1).contiguous()
        g_flux = torch.stack(g_fluxes, dim=1)
        g_state = torch.zeros_like(states5[0])
        g_static = g_state.new_zeros((dynamic.count(False), *g_state.shape[1:]))
        g_rows: list[torch.Tensor] = [g_state] * n_days
        rows, prevs, outs, flux_days = table.unbind(0), prev5.unbind(0), g_out5.unbind(0), g_flux.unbind(0)
        for t in range(n_days - 1, -1, -1):
            g_state, g_rows[t], g_static = reverse_fn(prevs[t], rows[t], statics, g_state, outs[t], flux_days[t],
                                                      g_static)
        g_table = torch.stack(g_rows)
        g_dyn, g_fixed = iter(g_table.unbind(1)), iter(g_static.unbind(0))
        grads = []
        for k, (v, is_dynamic) in enumerate(zip(inputs, dynamic)):
            g = next(g_dyn) if is_dynamic else next(g_fixed)
            grads.append(_reduce(g, v.shape) if ctx.needs_input_grad[5 + k] else None)
        g_s0 = g_state.movedim(0, -1) if ctx.needs_input_grad[4] else None
        return (None, None, None, None, g_s0, *grads)


def _step_plain(state, day):
    """One day of the original δHBV (no capillary rise): (state, fluxes)."""
    state, fluxes, _ = forward_day(state, day, False, SM_MIN_SEQUENTIAL, False)
    return state, fluxes


def _step_capillary(state, day):
    """One day of the improved δHBV (capillary rise between the soil and response routines)."""
    state, fluxes, _ = forward_day(state, day, True, SM_MIN_SEQUENTIAL, False)
    return state, fluxes


def _stack_states(state_hist: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    """Daily states (tuples of storages) as one tensor ``[T, ..., 5]`` (a non-contiguous view)."""
    states = torch.stack([s for storage in zip(*state_hist) for s in storage], dim=0)
    return states.unflatten(0, (len(state_hist[0]), len(state_hist))).movedim(0, -1)


def _as_tensor(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A parameter as a tensor of ``like``'s dtype and device (floats become 0-d tensors)."""
    if isinstance(value, torch.Tensor):
        return value if value.dtype == like.dtype and value.device == like.device else value.to(like)
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def split_days(x: Forcing, p: Mapping[str, torch.Tensor | float], S0: torch.Tensor, *,
               capillary_rise: bool) -> SplitDays:
    """The operator-split update over the days of ``x``, ready for :mod:`benchmark.solvers.sequential`.

    Parameters
    ----------
    x
        Daily forcing, each ``[T, ...]`` broadcastable against the batch shape of ``S0``.
    p
        Physical parameters by name (:data:`~benchmark.models.hbv.parameters.BASE_PARAMETERS`,
        plus ``C`` with capillary rise); each static (``[...]`` or a float) or dynamic
        (``[T, ...]``). ``NDC`` is not used (fixed to 1).
    S0
        Initial storages ``[..., 5]`` (mm).
    capillary_rise
        The "improved" model with capillary rise (step 3).
    """
    names = BASE_PARAMETERS + (("C",) if capillary_rise else ())
    n_days = x.P.shape[0]
    rank = S0.dim()
    params = {name: _as_tensor(p[name], S0) for name in names}
    dynamic = {name: value.dim() == rank for name, value in params.items()}
    forcing = snow_forcing(x.P, x.T, params["TT"], params["CFMAX"], params["CFR"])
    params["LOGFC"] = torch.log(params["FC"])
    params["LOGLPFC"] = torch.log(params["LP"] * params["FC"])
    dynamic["LOGFC"] = dynamic["FC"]
    dynamic["LOGLPFC"] = dynamic["LP"] or dynamic["FC"]
    if "C" not in params:
        params["C"], dynamic["C"] = torch.zeros((), dtype=S0.dtype, device=S0.device), False
    full = (n_days,) + tuple(S0.shape[:-1])
    terms = (forcing.snowfall, forcing.rain, forcing.melt_pot, forcing.refreeze_pot, x.PET)
    inputs = [torch.broadcast_to(v, torch.broadcast_shapes(v.shape, full)) for v in terms]
    inputs += [params[name] for name in LOOP_PARAMETERS]
    flags = [True] * len(terms) + [dynamic[name] for name in LOOP_PARAMETERS]

    def hand_written(s0: torch.Tensor, fused: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if fused:
            states, *series = FusedSequentialFunction.apply(capillary_rise, SM_MIN_SEQUENTIAL, tuple(flags), True, s0,
                                                            *inputs)
        else:
            states, *series = SequentialFunction.apply(capillary_rise, SM_MIN_SEQUENTIAL, tuple(flags), s0, *inputs)
        return states, dict(zip(FLUX_NAMES, series))

    return SplitDays(
        step=_step_capillary if capillary_rise else _step_plain, inputs=inputs, dynamic=flags,
        flux_names=FLUX_NAMES, unpack=lambda s0: tuple(s0.unbind(-1)), stack=_stack_states,
        hand_written=hand_written,
    )
