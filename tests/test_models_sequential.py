"""The sequential δHBV scheme (Feng et al. 2022; docs/schemes.md#sequential-operator-splitting)
reproduces the authors' code.

Reference: tests/reference/seq_hbv.csv and seq_hbv_cr.csv, the authors' sequential model run on
basin 01022500 for 15 years with mid-range parameters (float32, storages starting at 0.001 mm).
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from benchmark.models import simulate
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.models.hbv.sequential import SM_MIN_SEQUENTIAL
from tests.models_reference import (
    ROUTING,
    SEQUENTIAL_INITIAL_STORAGE_MM,
    assert_matches,
    forcing,
    mid_params,
    reference_frame,
)

CASES = [(False, "seq_hbv"), (True, "seq_hbv_cr")]


@lru_cache(maxsize=None)
def run_reference(capillary_rise: bool, dtype: torch.dtype) -> dict:
    """The reference configuration through :func:`simulate` (cached: several tests read it)."""
    with torch.no_grad():
        return simulate(forcing(dtype), mid_params(dtype), scheme="sequential", capillary_rise=capillary_rise,
                        routing=ROUTING, initial_state=SEQUENTIAL_INITIAL_STORAGE_MM)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(("capillary_rise", "name"), CASES, ids=["original", "improved"])
def test_sequential_matches_the_authors_code_on_every_day(capillary_rise, name, dtype):
    out = run_reference(capillary_rise, dtype)
    ref = reference_frame(name)
    for column in ("Q_routed", "Q_unrouted", "Q0", "Q1", "Q2", "ET", "recharge", "perc"):
        sim = out["Q" if column == "Q_routed" else column][:, 0]
        assert_matches(sim, ref[column], label=f"{name} {column} {dtype}")
    assert_matches(out["states"][:, 0, 0, 0], ref["SWE"], label=f"{name} SWE (snowpack)", flow=False)
    assert float(out["excess"].abs().max()) == 0.0 == float(ref["excess"].abs().max())
    if capillary_rise:
        assert_matches(out["capillary"][:, 0], ref["capillary"], label=f"{name} capillary {dtype}")


@pytest.mark.parametrize(("capillary_rise", "name"), CASES, ids=["original", "improved"])
def test_mass_balance_over_15_years_closes_to_rounding(capillary_rise, name):
    out = run_reference(capillary_rise, torch.float64)
    p_total = forcing()[..., 0].sum()
    d_storage = out["final_state"].sum() - 5 * SEQUENTIAL_INITIAL_STORAGE_MM
    residual = p_total - out["ET"].sum() - out["Q_unrouted"].sum() + out["floor_source"].sum() - d_storage
    assert abs(float(residual)) <= 1e-12 * float(p_total)
    # the only non-conservative step, the SM/SLZ floor, adds a negligible amount of water
    assert 0.0 <= float(out["floor_source"].sum()) <= 1e-3


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_storages_never_negative(capillary_rise):
    # zero initial storages and the real forcing; all parameters at their range limits too
    f = forcing(days=slice(0, 1500))
    for corner in (0.0, 0.5, 1.0):
        params = {n: torch.tensor([s.lo + corner * (s.hi - s.lo)], dtype=torch.float64)
                  for n, s in HBV_PARAMETERS.items()}
        with torch.no_grad():
            out = simulate(f, params, scheme="sequential", capillary_rise=capillary_rise)
        assert float(out["states"].min()) >= 0.0
        assert float(out["states"][..., 2].min()) >= SM_MIN_SEQUENTIAL  # soil moisture floor
        for flux in ("Q0", "Q1", "Q2", "ET", "recharge", "perc", "capillary"):
            assert float(out[flux].min()) >= 0.0, flux


def test_no_precipitation_and_empty_storages_give_zero_flow():
    f = forcing(days=slice(0, 400)).clone()
    f[..., 0] = 0.0
    with torch.no_grad():
        out = simulate(f, mid_params(), scheme="sequential", routing=ROUTING)
    for key in ("Q", "Q_unrouted", "Q0", "Q1", "Q2", "recharge", "perc"):
        assert float(out[key].abs().max()) == 0.0, key
    assert float(out["states"][..., [0, 1, 3, 4]].abs().max()) == 0.0  # only the SM floor is non-zero


def test_improved_model_without_water_leaks_only_its_lower_zone_floor():
    # The improved scheme floors SLZ at 1e-5 mm after capillary rise (docs/schemes.md#order-of-updates, step 3),
    # so an empty basin drains K2 * 1e-5 mm/day forever: zero flow up to that floor.
    f = forcing(days=slice(0, 400)).clone()
    f[..., 0] = 0.0
    params = mid_params()
    with torch.no_grad():
        out = simulate(f, params, scheme="sequential", capillary_rise=True, routing=ROUTING)
    for key in ("Q0", "Q1", "recharge", "perc"):
        assert float(out[key].abs().max()) == 0.0, key
    floor_drain = float(params["K2"]) * SM_MIN_SEQUENTIAL
    assert float(out["Q2"].max()) <= floor_drain
    assert float(out["Q"].max()) <= floor_drain


def test_snowfall_only_below_the_threshold_temperature():
    days = 60
    f = torch.zeros(days, 2, 3, dtype=torch.float64)
    f[..., 0] = 4.0  # mm/day
    f[:, 0, 1] = -0.5  # just below TT = 0 degC: every drop is snow
    f[:, 1, 1] = 0.0  # at TT: rain (T >= TT)
    params = mid_params(n_basins=2)
    params["CFR"] = torch.zeros(2, dtype=torch.float64)  # no refreezing of (absent) meltwater
    with torch.no_grad():
        out = simulate(f, params, scheme="sequential")
    snow = out["states"][..., 0, 0]
    torch.testing.assert_close(snow[:, 0], torch.arange(1, days + 1, dtype=torch.float64) * 4.0)
    assert float(out["recharge"][:, 0].abs().max()) == 0.0  # nothing reaches the soil
    assert float(snow[:, 1].abs().max()) == 0.0
    assert float(out["recharge"][:, 1].sum()) > 0.0


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_gradients_to_static_and_dynamic_parameters_match_finite_differences(capillary_rise):
    # 120 days from mid-February 1981: snowmelt, rain and recessions all active
    f = forcing(days=slice(140, 260))
    n_days = f.shape[0]
    base = mid_params()
    base["BETA"] = base["BETA"].expand(n_days, 1).clone()  # dynamic, as in δHBV
    names = ["BETA", "FC", "K1", "LP", "CFMAX", "TT", "BETAET", "PERC"] + (["C"] if capillary_rise else [])

    def loss(params):
        out = simulate(f, params, scheme="sequential", capillary_rise=capillary_rise, routing=ROUTING,
                       initial_state=SEQUENTIAL_INITIAL_STORAGE_MM)
        return (out["Q"] ** 2).sum() + out["ET"].sum()

    leaves = {n: v.clone().requires_grad_(n in names) for n, v in base.items()}
    loss(leaves).backward()
    for name in names:
        grad = leaves[name].grad.sum()  # direction: all days / basins together
        h = 1e-6 * max(abs(float(base[name].mean())), 1.0)
        plus = {**base, name: base[name] + h}
        minus = {**base, name: base[name] - h}
        with torch.no_grad():
            fd = (loss(plus) - loss(minus)) / (2 * h)
        assert torch.isfinite(grad)
        assert abs(float(grad - fd)) <= 1e-5 * abs(float(fd)) + 1e-8, (name, float(grad), float(fd))


@pytest.mark.slow
def test_compiled_step_gives_the_eager_result():
    # torch.compile of the per-day step (off by default): first call compiles for ~1-2 min
    f = forcing(torch.float32, days=slice(0, 200), n_basins=3)
    kwargs = dict(scheme="sequential", capillary_rise=True, routing=ROUTING)
    with torch.no_grad():
        eager = simulate(f, mid_params(torch.float32, 3), **kwargs)
        compiled = simulate(f, mid_params(torch.float32, 3), solver_options={"compile": True}, **kwargs)
    torch.testing.assert_close(compiled["Q"], eager["Q"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled["states"], eager["states"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_hand_written_backward_equals_autograd_through_the_loop(capillary_rise):
    # the default (manual_backward=True) reverse pass vs autograd through the daily loop, with
    # every output weighted (states of every day and all fluxes), dynamic BETA/BETAET/FC,
    # random parameters over their whole ranges and non-empty initial storages
    from benchmark.models.hbv import Forcing
    from benchmark.models.hbv.sequential import FLUX_NAMES
    from benchmark.solvers.sequential import integrate_sequential

    g = torch.Generator().manual_seed(3)
    n_days, n_basins, nmul = 150, 3, 4
    f = forcing(days=slice(100, 100 + n_days), n_basins=n_basins)
    x = Forcing(*(v.unsqueeze(-1) for v in f.unbind(-1)))
    names = [n for n in HBV_PARAMETERS if n != "NDC"]
    u = {n: torch.rand((n_days, n_basins, nmul) if n in ("BETA", "BETAET", "FC") else (n_basins, nmul),
                       generator=g, dtype=torch.float64).requires_grad_() for n in names}
    scale = torch.tensor([50.0, 5.0, 300.0, 80.0, 60.0], dtype=torch.float64)
    s0 = (torch.rand(n_basins, nmul, 5, generator=g, dtype=torch.float64) * scale).requires_grad_()
    w_states = torch.randn(n_days, n_basins, nmul, 5, generator=g, dtype=torch.float64)
    w_fluxes = {k: torch.randn(n_days, n_basins, nmul, generator=g, dtype=torch.float64) for k in FLUX_NAMES}
    leaves = [s0] + [u[n] for n in names if capillary_rise or n != "C"]

    results = []
    for manual in (True, False):
        p = {n: HBV_PARAMETERS[n].scale(v) for n, v in u.items()}
        states, fluxes = integrate_sequential(x, p, s0, capillary_rise=capillary_rise, manual_backward=manual)
        loss = (states * w_states).sum() + sum((fluxes[k] * w).sum() for k, w in w_fluxes.items())
        results.append((states.detach(), fluxes, torch.autograd.grad(loss, leaves)))
    (st_m, fl_m, gr_m), (st_a, fl_a, gr_a) = results
    # bitwise: both paths run the same elementwise operations on tensors of the same shapes and
    # layouts in one process, so every kernel takes the same code path (vectorised body or
    # scalar tail, thread split) for every element; only the reverse passes differ
    assert torch.equal(st_m, st_a)
    for k in FLUX_NAMES:
        assert torch.equal(fl_m[k].detach(), fl_a[k].detach()), k
    for leaf_name, a, b in zip(["S0"] + names, gr_m, gr_a):
        assert float(b.abs().max()) > 0.0, leaf_name
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()), msg=leaf_name)
