"""The sequential δHBV scheme as one autograd node with a hand-written reverse pass.

Autograd through the daily loop of :mod:`benchmark.solvers.sequential` records ~45 graph
nodes per day; on a CPU the engine's per-node overhead dominates the backward pass at
training sizes (1600 systems per op). Here the whole sequence is a single
:class:`torch.autograd.Function`: the forward runs without a graph and keeps the few
intermediates and branch masks of each day; the backward walks the days in reverse applying
the chain rule of each step written out by hand.

The forward arithmetic is the same as the autograd path's, operation for operation, so both
give bitwise-identical outputs; branch choices (subgradients at kinks) are also the same:
``a.clamp(max=b)`` sends the gradient to ``a`` when ``a <= b``, ``relu`` passes none at 0,
``clamp_min`` passes it at the bound.

Inputs are per-day tensors in the order of :data:`DAY_INPUTS`, each dynamic ``[T, *batch]``
or static (broadcastable to ``batch``).
"""

from __future__ import annotations

from typing import Sequence

import torch

DAY_INPUTS: tuple[str, ...] = (
    "snowfall", "rain", "melt_pot", "refr_pot", "pet",
    "BETA", "FC", "LOGFC", "LOGLPFC", "BETAET", "CWH", "PERC", "K0", "K1", "K2", "UZL", "C",
)
(I_SNOWFALL, I_RAIN, I_MELT_POT, I_REFR_POT, I_PET, I_BETA, I_FC, I_LOGFC, I_LOGLPFC, I_BETAET,
 I_CWH, I_PERC, I_K0, I_K1, I_K2, I_UZL, I_C) = range(len(DAY_INPUTS))

N_FLUXES = 9  # Q0, Q1, Q2, ET, recharge, excess, perc, capillary, floor_source


def _forward_day(state, d, capillary_rise: bool, sm_min: float, keep: bool):
    """One day; returns (new state, fluxes, saved intermediates or None)."""
    snow, meltw, sm, suz, slz = state
    s1 = snow + d[I_SNOWFALL]
    m_melt = d[I_MELT_POT] <= s1
    melt = torch.where(m_melt, d[I_MELT_POT], s1)
    w1 = meltw + melt
    s2 = s1 - melt
    m_refr = d[I_REFR_POT] <= w1
    refr = torch.where(m_refr, d[I_REFR_POT], w1)
    s3 = s2 + refr
    w2 = w1 - refr
    dsoil = w2 - d[I_CWH] * s3
    m_ts = dsoil > 0
    to_soil = torch.relu(dsoil)
    w3 = w2 - to_soil

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
        saved = (m_melt, m_refr, m_ts, s3, sm, l1, e1, m_e1, g1, infil, m_ex, sm2, l2, e2, m_e2, g2,
                 m_et, m_floor, m_perc, m_q0, rq, suz3, slz1, cr_saved)
    fluxes = (q0, q1, q2, et, rech, ex, perc, cap, floor)
    return (s3, w3, sm_new, suz4, slz2), fluxes, saved


_ZEROS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A cached 0-d zero (``where`` with a tensor operand skips a scalar conversion per call)."""
    key = (like.dtype, like.device)
    if key not in _ZEROS:
        _ZEROS[key] = torch.zeros((), dtype=like.dtype, device=like.device)
    return _ZEROS[key]


def _where(mask, a):
    """``a`` where ``mask`` else 0."""
    return torch.where(mask, a, _zero(a))


def _not_where(mask, a):
    """``a`` where not ``mask`` else 0."""
    return torch.where(mask, _zero(a), a)


def _backward_day(g_state, g_flux, saved, d, capillary_rise: bool):
    """Reverse of :func:`_forward_day`: (grads of the previous state, grads of the day inputs)."""
    gS_snow, gS_w, gS_sm, gS_suz, gS_slz = g_state
    gq0, gq1, gq2, get_, grech, gex, gperc, gcap, gfloor = g_flux
    (m_melt, m_refr, m_ts, s3, sm, l1, e1, m_e1, g1, infil, m_ex, sm2, l2, e2, m_e2, g2,
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
    g_h = _where(m_q0, g_q0 * d[I_K0])
    g_suz2 = g_suz2 + g_h
    gi[I_UZL] = -g_h
    g_suz1 = g_suz2
    g_perc = g_perc - g_suz2
    g_suz1 = g_suz1 + _where(m_perc, g_perc)
    gi[I_PERC] = _not_where(m_perc, g_perc)
    g_suz = g_suz1
    g_rech = grech + g_suz1
    g_ex = gex + g_suz1

    # capillary rise and the SM floor
    g_fc = None
    if capillary_rise:
        sm3, slz, r, m_r, one_minus, m_cap, m_smw, m_slzd = cr_saved
        g_floor0 = gfloor
        g_smw = _where(m_smw, gS_sm + gfloor) - gfloor
        g_slzd = _where(m_slzd, g_slza + gfloor) - gfloor
        g_slz = g_slzd
        g_cap = gcap - g_slzd + g_smw
        g_sm3 = g_smw
        g_slz = g_slz + _where(m_cap, g_cap)
        g_cand = _not_where(m_cap, g_cap)
        c = d[I_C]
        gi[I_C] = g_cand * slz * one_minus
        g_slz = g_slz + g_cand * c * one_minus
        g_r = _where(m_r, -g_cand * c * slz)
        g_sm3 = g_sm3 + g_r / d[I_FC]
        g_fc = -g_r * r / d[I_FC]
    else:
        g_floor0 = gfloor
        g_sm3 = gS_sm
        g_slz = g_slza

    # soil routine
    g_smd = _where(m_floor, g_sm3 + g_floor0) - g_floor0
    g_sm2 = g_smd
    g_et = get_ - g_smd
    g_etp = _where(m_et, g_et)
    g_sm2 = g_sm2 + _not_where(m_et, g_et)
    gi[I_PET] = g_etp * g2
    g_e2 = _where(m_e2, g_etp * d[I_PET]) * e2
    gi[I_BETAET] = g_e2 * l2
    g_l2 = g_e2 * d[I_BETAET]
    g_sm2 = g_sm2 + g_l2 / sm2
    gi[I_LOGLPFC] = -g_l2
    g_sm1 = g_sm2
    g_ex = g_ex - g_sm2
    g_exm = _where(m_ex, g_ex)
    g_sm1 = g_sm1 + g_exm
    gi[I_FC] = -g_exm if g_fc is None else g_fc - g_exm
    g_sm = g_sm1
    g_infil = g_sm1 + (g_rech - g_sm1) * g1
    g_e1 = _where(m_e1, (g_rech - g_sm1) * infil) * e1
    gi[I_BETA] = g_e1 * l1
    g_l1 = g_e1 * d[I_BETA]
    g_sm = g_sm + g_l1 / sm
    gi[I_LOGFC] = -g_l1
    gi[I_RAIN] = g_infil

    # snow routine
    g_w2 = gS_w
    g_ts = g_infil - gS_w
    g_d = _where(m_ts, g_ts)
    g_w2 = g_w2 + g_d
    g_s3 = gS_snow - g_d * d[I_CWH]
    gi[I_CWH] = -g_d * s3
    g_w1 = g_w2
    g_refr = g_s3 - g_w2
    gi[I_REFR_POT] = _where(m_refr, g_refr)
    g_w1 = g_w1 + _not_where(m_refr, g_refr)
    g_s1 = g_s3
    g_melt = g_w1 - g_s3
    gi[I_MELT_POT] = _where(m_melt, g_melt)
    g_s1 = g_s1 + _not_where(m_melt, g_melt)
    gi[I_SNOWFALL] = g_s1
    return (g_s1, g_w1, g_sm, g_suz, g_slz), gi


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
            state, f, s = _forward_day(state, d, capillary_rise, sm_min, keep)
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
            g_state, gi = _backward_day(g_state, g_flux, ctx.saved_days[t], d, cr)
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
