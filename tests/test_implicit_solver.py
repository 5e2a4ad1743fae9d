"""Backward Euler + Newton for HBV (docs/schemes.md#implicit-backward-euler): Jacobian, reference run, mass balance,
convergence statistics.

The reference is the authors' implicit code converged to 1e-10 on basin 01022500
(tests/reference/imp_hbv*.csv, columns ``*_tight``); see tests/reference/README.md.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
import torch

from benchmark.data.camels import forcing_path, list_basins, read_forcing
from benchmark.data.pet import hargreaves_pet_series
from benchmark.models import hbv
from benchmark.models.hbv import SM_FLOOR, Forcing
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.models.routing import route
from benchmark.models.hbv.jacobian import rhs_and_jacobian
from benchmark.solvers.implicit import NewtonOptions, integrate_backward_euler
from tests.models_reference import ROUTING, assert_matches, forcing, mid_params, reference_frame

RAW_DIR = "data/camels_us"
MASS_BALANCE_RTOL = 1e-6
CONVERGED_WITHIN = 6
CONVERGED_SHARE = 0.999


@lru_cache(maxsize=None)
def _reference_run(capillary_rise: bool, dtype: torch.dtype = torch.float64) -> tuple[Forcing, dict, torch.Tensor, dict]:
    """Basin 01022500, 1980-10-01..1995-09-30, mid-range parameters, empty stores (cached)."""
    x = Forcing(*forcing(dtype).unbind(-1))  # each [T, 1]
    p = mid_params(dtype)
    if not capillary_rise:
        p = {k: v for k, v in p.items() if k not in ("C", "NDC")}
    S0 = torch.zeros(1, 5, dtype=dtype)
    states, stats = integrate_backward_euler(x, p, S0, capillary_rise=capillary_rise)
    return x, p, states, stats


def test_closed_form_jacobian_is_autograds_jacobian() -> None:
    """Including autograd's subgradient at kinks: empty stores, ties in min(), clipped SM."""
    g = torch.Generator().manual_seed(1)
    n = 3000
    p = {k: s.scale(torch.rand(n, generator=g, dtype=torch.float64)) for k, s in HBV_PARAMETERS.items()}
    x = Forcing(torch.rand(n, generator=g, dtype=torch.float64) * 20,
                torch.randn(n, generator=g, dtype=torch.float64) * 5,
                torch.rand(n, generator=g, dtype=torch.float64) * 5)
    S = torch.rand(n, 5, generator=g, dtype=torch.float64) * torch.tensor([50.0, 10.0, 600.0, 80.0, 100.0],
                                                                          dtype=torch.float64)
    S[:600, :2] = 0.0  # no snow: melt = min(0, 0) ties where T < TT
    S[400:900, 3] = 0.0
    S[800:1000, 2] = -1e-30  # SM below its floor
    S[1000:1100, 3] = p["PERC"][1000:1100]  # tie in min(SUZ, PERC)
    for capillary_rise in (False, True):
        f, jac = rhs_and_jacobian(S, x, p, capillary_rise=capillary_rise)
        assert torch.equal(f, hbv.rhs(S, x, p, capillary_rise=capillary_rise))
        auto = torch.func.vmap(torch.func.jacrev(
            lambda s, xx, pp: hbv.rhs(s, Forcing(*xx), pp, capillary_rise=capillary_rise)))(S, tuple(x), p)
        assert (jac - auto).abs().max() <= 1e-12


@pytest.mark.parametrize("capillary_rise, name", [(False, "imp_hbv"), (True, "imp_hbv_cr")])
def test_reference_run_matches_converged_reference(capillary_rise: bool, name: str) -> None:
    x, p, states, stats = _reference_run(capillary_rise)
    assert stats["n_not_converged"] == 0
    ref = reference_frame(name)
    f = hbv.fluxes(states, x, p, capillary_rise=capillary_rise)
    q_unrouted = f.Q0 + f.Q1 + f.Q2
    assert_matches(route(q_unrouted, *ROUTING)[:, 0], ref["Q_routed_tight"], label=f"{name} Q_routed")
    assert_matches(f.ET[:, 0], ref["ET_tight"], label=f"{name} ET", flow=False)
    assert_matches(f.Q2[:, 0], ref["Q2_tight"], label=f"{name} Q2")


@pytest.mark.parametrize("capillary_rise", [False, True])
def test_mass_balance_closes_and_storages_stay_non_negative(capillary_rise: bool) -> None:
    """15 years of basin 01022500: sum P - sum ET - sum Q' - dS <= 1e-6 of sum P (float64)."""
    x, p, states, _ = _reference_run(capillary_rise)
    f = hbv.fluxes(states, x, p, capillary_rise=capillary_rise)
    p_sum = x.P.sum()
    residual = p_sum - f.ET.sum() - (f.Q0 + f.Q1 + f.Q2).sum() - states[-1].sum()
    assert abs(residual.item()) <= MASS_BALANCE_RTOL * p_sum.item()
    # storages: never below minus the SM floor (SM may sit a hair below 0 when ET empties it)
    assert states.min().item() >= -SM_FLOOR


@pytest.mark.slow
def test_float32_run_converges_and_agrees_with_float64() -> None:
    _, _, s64, _ = _reference_run(False)
    x, p, s32, stats = _reference_run(False, torch.float32)
    assert stats["n_not_converged"] == 0
    f32 = hbv.fluxes(s32, x, p, capillary_rise=False)
    q32 = (f32.Q0 + f32.Q1 + f32.Q2).double()
    f64 = hbv.fluxes(s64, Forcing(*forcing(torch.float64).unbind(-1)), mid_params(torch.float64),
                     capillary_rise=False)
    q64 = f64.Q0 + f64.Q1 + f64.Q2
    assert (q32 - q64).abs().max().item() <= 1e-3


def test_no_rain_and_empty_stores_give_zero_flow() -> None:
    n_days = 30
    x = Forcing(torch.zeros(n_days, 2, dtype=torch.float64), torch.full((n_days, 2), 12.0, dtype=torch.float64),
                torch.full((n_days, 2), 3.0, dtype=torch.float64))
    p = {k: v.expand(2) for k, v in mid_params(torch.float64).items()}
    states, stats = integrate_backward_euler(x, p, torch.zeros(2, 5, dtype=torch.float64), capillary_rise=True)
    f = hbv.fluxes(states, x, p, capillary_rise=True)
    assert stats["n_not_converged"] == 0
    assert torch.all(f.Q0 + f.Q1 + f.Q2 == 0.0)
    assert states.abs().max().item() <= SM_FLOOR


BASIN_INDEPENDENCE_RTOL = 1e-12
"""Relative (and absolute, mm) agreement of a basin solved in a batch and alone, float64.

Bitwise equality is not guaranteed: an elementwise kernel (``pow``, ``exp``, ``log``) takes
its vectorised body or its scalar tail depending on the tensor's length and on how the
work is split between threads, and the two may round the last bit differently. A batch of
8 and a batch of 1 therefore see the same arithmetic only up to rounding; what must not
differ is anything the basin decides on its own, such as its Newton iteration count."""


def _solve(x: Forcing, p: dict, S0: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return integrate_backward_euler(x, p, S0, capillary_rise=True)


def _solve_full_newton(x: Forcing, p: dict, S0: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return integrate_backward_euler(x, p, S0, capillary_rise=True, options=NewtonOptions(eliminate=False))


def _assert_basins_solved_independently(solve, x: Forcing, p: dict, S0: torch.Tensor) -> None:
    """Every basin of the batch, solved alone, takes the same Newton iterations on every day
    and reaches the same states (to :data:`BASIN_INDEPENDENCE_RTOL`)."""
    batch, batch_stats = solve(x, p, S0)
    for basin in range(S0.shape[0]):
        one = slice(basin, basin + 1)
        alone, alone_stats = solve(Forcing(*(v[:, one] for v in x)), {k: v[one] for k, v in p.items()}, S0[one])
        assert torch.equal(batch_stats["iterations"][:, one], alone_stats["iterations"]), (
            f"basin {basin}: its Newton iteration counts depend on the other basins of the batch")
        torch.testing.assert_close(batch[:, one], alone, rtol=BASIN_INDEPENDENCE_RTOL, atol=BASIN_INDEPENDENCE_RTOL,
                                   msg=lambda m: f"basin {basin}: states differ in a batch and alone: {m}")


@pytest.mark.parametrize("solve", [_solve, _solve_full_newton], ids=["eliminated", "full Newton"])
def test_each_basin_converges_on_its_own(solve) -> None:
    """A basin's solution does not depend on which other basins share the batch."""
    x, p, S0 = _random_batch(n_basins=8)
    _assert_basins_solved_independently(solve, x, p, S0)


def test_the_independence_check_catches_a_batch_wide_convergence_test(monkeypatch) -> None:
    """The check above fails for a solver whose systems stop only when *all* have converged
    (a converged basin keeps iterating while another one has not)."""
    import benchmark.solvers.implicit as implicit

    per_system = implicit._residual

    def batch_wide(*args, **kwargs):
        G, inner, gmax, active = per_system(*args, **kwargs)
        return G, inner, gmax, active | active.any()

    monkeypatch.setattr(implicit, "_residual", batch_wide)
    x, p, S0 = _random_batch(n_basins=8)
    with pytest.raises(AssertionError, match="iteration counts depend on the other basins"):
        _assert_basins_solved_independently(_solve_full_newton, x, p, S0)


def test_non_converged_days_are_counted_not_hidden() -> None:
    x, p, S0 = _random_batch(n_basins=8)
    _, stats = integrate_backward_euler(x, p, S0, capillary_rise=False, options=NewtonOptions(max_iter=1))
    assert stats["n_not_converged"] > 0
    assert stats["max_residual"] > stats["tol"]
    assert stats["iterations_hist"][1] == stats["n_system_days"] - stats["iterations_hist"][0]
    _, stats = integrate_backward_euler(x, p, S0, capillary_rise=False)
    assert stats["n_not_converged"] == 0
    assert stats["max_residual"] <= stats["tol"]
    assert sum(stats["iterations_hist"]) == stats["n_system_days"] == 8 * x.P.shape[0]


@pytest.mark.parametrize("nmul", [None, 3])
def test_eliminated_newton_gives_the_full_newton_solution(nmul: int | None) -> None:
    """Without capillary rise the piecewise-linear storages are solved exactly and Newton runs on
    SM alone: the same states as Newton on all five storages, on days of snowfall, melt and
    refreezing alike (float64, random parameters over their whole ranges)."""
    x, p, S0 = _random_batch(n_basins=8, n_days=730, nmul=nmul, seed=3)
    assert bool((x.T < p["TT"]).any()) and bool((x.T > p["TT"]).any())
    # both converged far below the default tolerance, so that they can only differ by rounding
    tight = 1e-11
    reduced, stats_r = integrate_backward_euler(x, p, S0, capillary_rise=False, options=NewtonOptions(tol=tight))
    full, stats_f = integrate_backward_euler(x, p, S0, capillary_rise=False,
                                             options=NewtonOptions(tol=tight, eliminate=False))
    assert stats_r["n_not_converged"] == stats_f["n_not_converged"] == 0
    assert stats_r["max_residual"] <= tight
    assert (reduced - full).abs().max().item() <= 1e-9


@pytest.mark.parametrize("nmul", [None, 3])
def test_eliminated_newton_with_capillary_rise_gives_the_full_newton_solution(nmul: int | None) -> None:
    """With capillary rise SLZ feeds back into SM (Cr = C SLZ (1 - SM / (NDC FC))); Cr is linear in
    SLZ, so SUZ and SLZ are exact functions of SM and Newton still runs on SM alone: the same
    states as Newton on all five storages to 1e-12 (relative, float64), in fewer updates."""
    x, p, S0 = _random_batch(n_basins=8, n_days=730, nmul=nmul, seed=3)
    # converged to rounding: |G_i| <= 1e-13 + 1e-15 |S_i| (mm/day)
    tight = NewtonOptions(tol=1e-13, rtol=1e-15, max_iter=40)
    reduced, stats_r = integrate_backward_euler(x, p, S0, capillary_rise=True, options=tight)
    full, stats_f = integrate_backward_euler(x, p, S0, capillary_rise=True,
                                             options=dataclasses.replace(tight, eliminate=False))
    assert stats_r["n_not_converged"] == stats_f["n_not_converged"] == 0
    capillary = hbv.fluxes(full, x if nmul is None else Forcing(*x), p, capillary_rise=True).capillary
    assert capillary.max().item() > 1.0  # the coupling is exercised (mm/day)
    relative = (reduced - full).abs() / full.abs().clamp_min(1.0)
    assert relative.max().item() <= 1e-12
    assert stats_r["mean_iterations"] < stats_f["mean_iterations"]


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["plain", "capillary rise"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_one_host_synchronisation_per_block_of_days_gives_the_same_solution(capillary_rise: bool, dtype) -> None:
    """Blocks of days with a fixed count of masked Newton updates, checked once per block (and a
    day above tolerance solved again with a check per iteration), give exactly the states,
    iteration counts and convergence flags of checking every iteration."""
    x, p, S0 = _random_batch(n_basins=6, n_days=365, nmul=2, seed=5)
    x = Forcing(*(v.to(dtype) for v in x))
    p = {k: v.to(dtype) for k, v in p.items()}
    S0 = S0.to(dtype)
    runs = {}
    for sync_days in (0, 1, 7, 16, 365):
        states, stats = integrate_backward_euler(x, p, S0, capillary_rise=capillary_rise,
                                                 options=NewtonOptions(sync_days=sync_days))
        runs[sync_days] = states, stats
    states0, stats0 = runs[0]
    assert stats0["max_iterations"] >= 3  # days that need more updates than the block started with
    for sync_days, (states, stats) in runs.items():
        assert torch.equal(states, states0), f"sync_days={sync_days}"
        assert torch.equal(stats["iterations"], stats0["iterations"]), f"sync_days={sync_days}"
        assert torch.equal(stats["not_converged"], stats0["not_converged"]), f"sync_days={sync_days}"


def test_a_block_is_solved_again_from_its_first_day_above_tolerance() -> None:
    """march_days: each block starts with the updates the previous block needed at most (1 at
    first); a day needing more is solved again, with a check per iteration, from that day on
    with the state entering it; days before it keep their fixed-update results."""
    from benchmark.solvers.newton import march_days

    need = torch.tensor([[1, 1], [1, 2], [1, 1], [1, 1], [3, 1], [1, 1], [1, 1], [2, 1]], dtype=torch.int32)
    calls: list[tuple[int, int | None]] = []

    def day_step(t: int, state: torch.Tensor, updates: int | None):
        calls.append((t, updates))
        iters = need[t] if updates is None else need[t].clamp_max(updates)
        active = torch.zeros(2, dtype=torch.bool) if updates is None else need[t] > updates
        return state + iters, iters, active

    iterations = torch.empty_like(need)
    not_converged = torch.empty(need.shape, dtype=torch.bool)
    final = march_days(day_step, torch.zeros(2, dtype=torch.int32), 8, NewtonOptions(sync_days=4, max_iter=5),
                       iterations, not_converged)
    assert torch.equal(iterations, need) and not not_converged.any()
    assert torch.equal(final, need.sum(0))
    assert calls == [(0, 1), (1, 1), (2, 1), (3, 1), (1, None), (2, None), (3, None),  # block 1: day 1 needs 2
                     (4, 2), (5, 2), (6, 2), (7, 2), (4, None), (5, None), (6, None), (7, None)]


def test_systems_not_converged_after_max_iter_are_not_solved_again() -> None:
    """With as many fixed updates as max_iter, a day above tolerance is a genuine failure: it is
    counted, not repeated."""
    from benchmark.solvers.newton import march_days

    calls: list[tuple[int, int | None]] = []

    def day_step(t: int, state: torch.Tensor, updates: int | None):
        calls.append((t, updates))
        return state, torch.full((1,), 2, dtype=torch.int32), torch.ones(1, dtype=torch.bool)

    iterations = torch.empty((4, 1), dtype=torch.int32)
    not_converged = torch.empty((4, 1), dtype=torch.bool)
    march_days(day_step, torch.zeros(1), 4, NewtonOptions(sync_days=2, max_iter=2), iterations, not_converged)
    assert not_converged.all()
    assert calls == [(0, 1), (1, 1), (0, None), (1, None), (2, 2), (3, 2)]


def _random_batch(n_basins: int, n_days: int = 365, nmul: int | None = None, seed: int = 0):
    """The reference forcing scaled per basin, parameters drawn uniformly over their ranges."""
    g = torch.Generator().manual_seed(seed)
    base = forcing(torch.float64, days=slice(0, n_days))[:, 0]
    P = base[:, 0:1] * (0.5 + 1.5 * torch.rand(n_basins, generator=g, dtype=torch.float64))
    T = base[:, 1:2] + 4.0 * torch.randn(n_basins, generator=g, dtype=torch.float64)
    PET = base[:, 2:3].expand(-1, n_basins)
    shape = (n_basins,) if nmul is None else (n_basins, nmul)
    p = {k: s.scale(torch.rand(shape, generator=g, dtype=torch.float64)) for k, s in HBV_PARAMETERS.items()}
    x = Forcing(P, T, PET.contiguous())
    if nmul is not None:
        x = Forcing(*(v.unsqueeze(-1) for v in x))
    return x, p, torch.zeros(*shape, 5, dtype=torch.float64)


def _embedded_forcing() -> tuple[list[str], Forcing]:
    """All 35 embedded basins, full record: P, mean T, Hargreaves PET (docs/data.md#hargreaves-pet), [T, B]."""
    basins = list_basins(RAW_DIR)
    frames = []
    for gauge in basins:
        bf = read_forcing(forcing_path(RAW_DIR, gauge))
        data = bf.data.copy()
        data["pet"] = hargreaves_pet_series(data, bf.latitude)
        frames.append(data)
    index = frames[0].index
    for gauge, data in zip(basins, frames):
        assert data.index.equals(index), f"{gauge}: dates differ from {basins[0]}"

    def column(fn) -> torch.Tensor:
        return torch.tensor(np.stack([fn(d) for d in frames], axis=1), dtype=torch.float64)

    return basins, Forcing(column(lambda d: d["prcp"].to_numpy()),
                           column(lambda d: 0.5 * (d["tmax"] + d["tmin"]).to_numpy()),
                           column(lambda d: d["pet"].to_numpy()))


@pytest.mark.slow
@pytest.mark.parametrize("capillary_rise, setting", [(False, "mid-range"), (True, "random, nmul 4")])
def test_newton_converges_fast_on_embedded_basins(capillary_rise: bool, setting: str) -> None:
    """<= 6 iterations on >= 99.9 % of basin-days of the 35 embedded basins (1980-2014)."""
    basins, x = _embedded_forcing()
    n_basins = len(basins)
    assert n_basins == 35
    if setting == "mid-range":
        p = {k: v.expand(n_basins) for k, v in mid_params(torch.float64).items()}
        S0 = torch.zeros(n_basins, 5, dtype=torch.float64)
    else:
        g = torch.Generator().manual_seed(7)
        p = {k: s.scale(torch.rand(n_basins, 4, generator=g, dtype=torch.float64)) for k, s in HBV_PARAMETERS.items()}
        x = Forcing(*(v.unsqueeze(-1) for v in x))
        S0 = torch.zeros(n_basins, 4, 5, dtype=torch.float64)
    _, stats = integrate_backward_euler(x, p, S0, capillary_rise=capillary_rise)
    hist = stats["iterations_hist"]
    share = sum(hist[:CONVERGED_WITHIN + 1]) / stats["n_system_days"]
    assert share >= CONVERGED_SHARE, f"only {share:.5f} of system-days converged within {CONVERGED_WITHIN}: {hist}"
    assert stats["n_not_converged"] == 0, stats


@pytest.mark.slow
def test_compiled_newton_step_matches_eager() -> None:
    x, p, S0 = _random_batch(n_basins=4, n_days=60)
    # compile=True compiles the full-vector Newton: its eager counterpart is the reference
    eager, _ = integrate_backward_euler(x, p, S0, capillary_rise=True, options=NewtonOptions(eliminate=False))
    compiled, _ = integrate_backward_euler(x, p, S0, capillary_rise=True,
                                           options=NewtonOptions(compile=True, eliminate=False))
    assert torch.allclose(eager, compiled, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("capillary_rise", [False, True])
def test_a_nan_in_the_forcing_is_counted_as_not_converged_never_as_a_result(capillary_rise: bool) -> None:
    """NaN precipitation on one day of one basin: that basin-day is reported not converged
    (whatever the state the safeguarded Newton stops at); the other basins are untouched."""
    from benchmark.models import simulate

    x, p, S0 = _random_batch(n_basins=3, n_days=60)
    P = x.P.clone()
    P[20, 1] = float("nan")
    forcing = torch.stack((P, x.T, x.PET), dim=-1)
    out = simulate(forcing, p, scheme="implicit", capillary_rise=capillary_rise)
    stats = out["stats"]
    assert stats["n_not_converged"] >= 1 and bool(stats["not_converged"][20, 1])
    assert not stats["not_converged"][:20].any() and not stats["not_converged"][:, [0, 2]].any()
    assert not stats["non_finite"][:, [0, 2]].any()
    clean = simulate(torch.stack((x.P, x.T, x.PET), dim=-1), p, scheme="implicit", capillary_rise=capillary_rise)
    torch.testing.assert_close(out["Q"][:, [0, 2]], clean["Q"][:, [0, 2]], rtol=1e-12, atol=1e-12)
