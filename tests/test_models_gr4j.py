"""GR4J in continuous state-space form (docs/gr4j.md): every scheme, mass balance, limits, the
adjoint, and agreement with the classic daily GR4J on a real basin.

Real forcing: basin 02296500 (Florida; never below 0 degC, so no snow) and 01022500 (Maine;
a snowpack every winter) from the embedded CAMELS-US files, Hargreaves PET.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch

from benchmark.data.camels import forcing_path, read_forcing
from benchmark.data.pet import hargreaves_pet_series
from benchmark.errors import ConfigError
from benchmark.models import get_model_spec, simulate
from benchmark.models.base import Forcing
from benchmark.models.gr4j import GR4J, GR4J_PARAMETERS
from benchmark.models.gr4j.fluxes import I_ROUT, STORAGES, UH1, rhs
from benchmark.models.gr4j.implicit import cascade_matrix
from benchmark.models.gr4j.sequential import cascade_exact
from benchmark.models.hbv import HBV
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.solvers import make_scheme
from benchmark.solvers.dense import DenseSystem
from benchmark.solvers.implicit import backward_euler
from benchmark.solvers.newton import NewtonOptions
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params  # noqa: F401 - fixtures

RAW_DIR = "data/camels_us"
WARM_BASIN, SNOWY_BASIN = "02296500", "01022500"
SCHEMES = [("sequential", 1), ("implicit", 1), ("euler", 24), ("rk4", 6)]
MASS_BALANCE_MM = 1e-8
"""Closure of the balance over the whole run (mm), float64, every scheme but backward Euler."""
NEWTON_BALANCE_MM_PER_DAY = 1e-7
"""Backward Euler closes the balance to its Newton tolerance (1e-8 mm/day per storage)."""


@lru_cache(maxsize=None)
def _forcing(gauge: str, n_days: int, start: str = "1985-10-01") -> torch.Tensor:
    """``[T, 3]`` P (mm/day), mean T (degC), Hargreaves PET (mm/day) of an embedded basin."""
    bf = read_forcing(forcing_path(RAW_DIR, gauge))
    data = bf.data.loc[start:].iloc[:n_days]
    pet = hargreaves_pet_series(data, bf.latitude).to_numpy()
    tmean = 0.5 * (data["tmax"] + data["tmin"]).to_numpy()
    return torch.tensor(np.stack([data["prcp"].to_numpy(), tmean, pet], axis=-1), dtype=torch.float64)


def _two_basins(n_days: int) -> torch.Tensor:
    return torch.stack([_forcing(WARM_BASIN, n_days), _forcing(SNOWY_BASIN, n_days)], dim=1)


def _mid(**values: float) -> dict[str, float]:
    return {name: spec.mid for name, spec in GR4J_PARAMETERS.items()} | values


def _balance(out: dict, forcing: torch.Tensor, S0: torch.Tensor) -> torch.Tensor:
    """Sum over the run of P - ET - Q + exchange - the change of storage (mm), per basin."""
    gained = forcing[..., 0].sum(0) - out["ET"].sum(0) - out["Q"].sum(0) + out["exchange"].sum(0)
    return gained - (out["final_state"].sum(-1) - S0.sum(-1)).mean(-1)


# ---- the parts ---------------------------------------------------------------------------------


def test_parameter_table_storages_and_network_layout():
    assert tuple(GR4J_PARAMETERS) == ("X1", "X2", "X3", "X4", "TT", "CFMAX", "CFR", "CWH")
    assert (GR4J_PARAMETERS["X1"].lo, GR4J_PARAMETERS["X1"].hi, GR4J_PARAMETERS["X1"].unit) == (100.0, 1200.0, "mm")
    assert (GR4J_PARAMETERS["X2"].lo, GR4J_PARAMETERS["X2"].hi) == (-5.0, 3.0)
    assert (GR4J_PARAMETERS["X3"].lo, GR4J_PARAMETERS["X3"].hi) == (20.0, 300.0)
    assert (GR4J_PARAMETERS["X4"].lo, GR4J_PARAMETERS["X4"].hi, GR4J_PARAMETERS["X4"].unit) == (1.1, 2.9, "d")
    for name in ("TT", "CFMAX", "CFR", "CWH"):  # the snow routine's, shared with HBV
        assert GR4J_PARAMETERS[name] is HBV_PARAMETERS[name]
    assert len(STORAGES) == 23 and STORAGES[UH1][0] == "UH1_1" and STORAGES[I_ROUT] == "ROUT"

    from benchmark.training.network import DifferentiableHBV

    model = DifferentiableHBV(get_model_spec("gr4j_adj"), n_inputs=5, hidden_size=4, nmul=3)
    assert model.layout.n_outputs == 8 * 3 and model.layout.n_routing == 0  # GR4J routes itself


def test_exact_cascade_day_is_the_matrix_exponential_of_the_chain():
    k = torch.tensor([15.4 / 1.1, 8.0 / 2.9, 0.7], dtype=torch.float64)
    E, g = cascade_exact(k, 11)
    for b, rate in enumerate(k.tolist()):
        A = torch.zeros(12, 12, dtype=torch.float64)
        A[range(11), range(11)] = -rate
        A[range(1, 11), range(10)] = rate
        A[0, 11] = 1.0  # a constant inflow of 1 mm/day into store 1
        M = torch.linalg.matrix_exp(A)
        torch.testing.assert_close(E[b], M[:11, :11], rtol=0, atol=1e-14)
        torch.testing.assert_close(g[b], M[:11, 11], rtol=0, atol=1e-14)


def test_backward_euler_cascade_day_solves_the_chain_equations():
    k = torch.tensor([7.7, 0.3], dtype=torch.float64)
    M = cascade_matrix(k, 5)
    prev = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    inflow = torch.tensor([3.0, 0.5], dtype=torch.float64)
    H = (M @ (prev + torch.nn.functional.pad(inflow.unsqueeze(-1), (0, 4))).unsqueeze(-1)).squeeze(-1)
    upstream = torch.cat((inflow.unsqueeze(-1), k.unsqueeze(-1) * H[:, :-1]), dim=-1)
    torch.testing.assert_close(H - prev, upstream - k.unsqueeze(-1) * H, rtol=0, atol=1e-13)


# ---- every scheme on GR4J --------------------------------------------------------------------


@pytest.mark.parametrize("scheme, substeps", SCHEMES)
def test_every_scheme_closes_the_mass_balance_including_the_exchange(scheme, substeps):
    """Two years of a warm and a snowy basin, X2 < 0 (water lost to the aquifer), nmul = 2."""
    forcing = _two_basins(2 * 365)
    S0 = torch.full((2, 2, 23), 5.0, dtype=torch.float64)
    out = simulate(forcing, _mid(X2=-2.0), structure=GR4J(), scheme=scheme, substeps=substeps, nmul=2,
                   initial_state=S0)
    assert out["Q"].shape == (2 * 365, 2) and bool(torch.isfinite(out["Q"]).all())
    assert float(out["exchange"].sum()) < 0.0
    tolerance = NEWTON_BALANCE_MM_PER_DAY * 2 * 365 if scheme == "implicit" else MASS_BALANCE_MM
    assert float(_balance(out, forcing, S0).abs().max()) <= tolerance
    if scheme in ("sequential", "implicit"):
        assert float(out["states"].min()) >= 0.0
    if scheme == "implicit":
        assert out["stats"]["n_not_converged"] == 0


def test_the_schemes_agree_on_the_continuous_solution():
    """Explicit Euler at 1 h and RK4 at 4 h resolve the stiff cascades and agree closely; backward
    Euler at 1 d follows them (with its daily discretisation error); the operator split, a
    different discretisation (snow and production store updated in turn), less closely."""
    forcing = _two_basins(2 * 365)
    runs = {s: simulate(forcing, _mid(), structure=GR4J(), scheme=s, substeps=n, initial_state=1.0)["Q"]
            for s, n in SCHEMES}
    fine = runs["euler"]
    assert _nse(runs["rk4"], fine) >= 0.999
    for scheme, nse_min, volume in (("implicit", 0.95, 0.04), ("sequential", 0.85, 0.02)):
        assert _nse(runs[scheme], fine) >= nse_min, scheme
        assert float((runs[scheme].sum(0) / fine.sum(0) - 1.0).abs().max()) <= volume, scheme


def _nse(sim: torch.Tensor, ref: torch.Tensor) -> float:
    """Worst NSE over basins of ``sim`` against ``ref`` ([T, B])."""
    nse = 1.0 - ((sim - ref) ** 2).sum(0) / ((ref - ref.mean(0)) ** 2).sum(0)
    return float(nse.min())


def test_gr4j_has_no_hand_written_backward():
    with pytest.raises(ConfigError, match="GR4J has no hand-written backward"):
        make_scheme("sequential").check(GR4J(), "manual")
    with pytest.raises(ConfigError, match="capillary_rise is an option of HBV"):
        simulate(_two_basins(5), _mid(), structure=GR4J(), scheme="sequential", capillary_rise=True)


# ---- limits ------------------------------------------------------------------------------------


def test_no_rain_gives_a_recession_only():
    """Warm and dry, no exchange: the flow falls every day, the production store and the total
    storage only lose water (the cascades pass it on downstream), no water appears."""
    n_days = 120
    forcing = torch.tensor([0.0, 20.0, 3.0], dtype=torch.float64).expand(n_days, 1, 3)
    S0 = torch.tensor([0.0, 0.0, 400.0] + [2.0] * 19 + [80.0], dtype=torch.float64)
    for scheme, substeps in SCHEMES[:2]:
        out = simulate(forcing, _mid(X2=0.0), structure=GR4J(), scheme=scheme, initial_state=S0)
        q = out["Q"][:, 0]
        assert bool((q[1:] < q[:-1]).all()), scheme
        assert float(out["Ps"].abs().max()) == 0.0 and float(out["exchange"].abs().max()) <= 1e-12
        total, prod = out["states"].sum(-1), out["states"][..., 2]
        assert bool((total[1:] < total[:-1]).all()) and bool((prod[1:] < prod[:-1]).all()), scheme
    empty = simulate(forcing, _mid(), structure=GR4J(), scheme="implicit", initial_state=0.0)
    assert float(empty["Q"].abs().max()) == 0.0 and float(empty["states"].abs().max()) == 0.0


def test_constant_forcing_reaches_the_steady_state_where_inflow_balances_outflow():
    """20 years of 4 mm/day rain, 1 mm/day PET, 15 degC: f(S) -> 0 and Q = P - ET + exchange."""
    n_days = 20 * 365
    forcing = torch.tensor([4.0, 15.0, 1.0], dtype=torch.float64).expand(n_days, 1, 3)
    p = _mid(X2=1.0)
    out = simulate(forcing, p, structure=GR4J(), scheme="implicit", initial_state=0.0)
    S = out["final_state"][0, 0]
    x = Forcing(*(torch.tensor(v, dtype=torch.float64) for v in (4.0, 15.0, 1.0)))
    tendency = rhs(S, x, {k: torch.tensor(v, dtype=torch.float64) for k, v in p.items()})
    assert float(tendency.abs().max()) <= 1e-6
    last = {k: float(out[k][-1, 0]) for k in ("Q", "ET", "exchange")}
    assert abs(4.0 - last["ET"] - last["Q"] + last["exchange"]) <= 1e-6
    assert last["exchange"] > 0.0  # X2 > 0: the aquifer feeds the routing store


def test_snow_is_hbvs_routine_shared_not_copied():
    """The snow storages do not depend on what lies below them: GR4J and HBV with the same snow
    parameters carry the same snowpack, scheme by scheme."""
    forcing = _forcing(SNOWY_BASIN, 2 * 365).unsqueeze(1)
    snow = {n: HBV_PARAMETERS[n].mid for n in ("TT", "CFMAX", "CFR", "CWH")}
    hbv = {n: s.mid for n, s in HBV_PARAMETERS.items()} | snow
    for scheme in ("sequential", "implicit"):
        g = simulate(forcing, _mid(**snow), structure=GR4J(), scheme=scheme, initial_state=0.0)["states"]
        h = simulate(forcing, hbv, structure=HBV(), scheme=scheme, initial_state=0.0)["states"]
        assert float(g[..., 0].max()) > 50.0  # a real snowpack
        torch.testing.assert_close(g[..., :2], h[..., :2], rtol=0, atol=0)


# ---- the classic daily GR4J --------------------------------------------------------------------


def _daily_gr4j(P: np.ndarray, E: np.ndarray, X1: float, X2: float, X3: float, X4: float) -> np.ndarray:
    """The discrete daily GR4J of Perrin et al. (2003), with its unit-hydrograph ordinates (mm/day)."""
    def sh1(t: float) -> float:
        return 0.0 if t <= 0 else (t / X4) ** 2.5 if t < X4 else 1.0

    def sh2(t: float) -> float:
        if t <= 0:
            return 0.0
        if t < X4:
            return 0.5 * (t / X4) ** 2.5
        return 1.0 - 0.5 * (2.0 - t / X4) ** 2.5 if t < 2 * X4 else 1.0

    uh1 = np.diff([sh1(j) for j in range(math.ceil(X4) + 1)])
    uh2 = np.diff([sh2(j) for j in range(math.ceil(2 * X4) + 1)])
    queue1, queue2 = np.zeros(uh1.size), np.zeros(uh2.size)
    S, R = 0.0, 0.0
    Q = np.zeros(P.size)
    for t in range(P.size):
        if P[t] >= E[t]:
            pn, en = P[t] - E[t], 0.0
            tp = math.tanh(pn / X1)
            ps, es = X1 * (1 - (S / X1) ** 2) * tp / (1 + S / X1 * tp), 0.0
        else:
            pn, en = 0.0, E[t] - P[t]
            te = math.tanh(en / X1)
            ps, es = 0.0, S * (2 - S / X1) * te / (1 + (1 - S / X1) * te)
        S = S - es + ps
        perc = S * (1 - (1 + (4 * S / (9 * X1)) ** 4) ** -0.25)
        S -= perc
        pr = perc + pn - ps
        queue1 = np.append(queue1[1:], 0.0) + pr * uh1
        queue2 = np.append(queue2[1:], 0.0) + pr * uh2
        q9, q1 = 0.9 * queue1[0], 0.1 * queue2[0]
        exchange = X2 * (R / X3) ** 3.5
        R = max(0.0, R + q9 + exchange)
        qr = R * (1 - (1 + (R / X3) ** 4) ** -0.25)
        R -= qr
        Q[t] = qr + max(0.0, q1 + exchange)
    return Q


@pytest.mark.parametrize("X4, years", [(1.3, 5), pytest.param(2.5, 15, marks=pytest.mark.slow)])
def test_agrees_with_the_classic_daily_gr4j_on_a_real_basin(X4, years):
    """Basin 02296500 from 1985-10-01, no snow, the first year warm-up: the daily GR4J with its
    unit-hydrograph ordinates against (a) our operator-split GR4J, the same daily algorithm with
    Nash cascades for the unit hydrographs; (b) the continuous solution (explicit Euler, 1 h),
    which lags the daily GR4J by about a day: the daily GR4J passes a day's inflow to the routing
    store out again on the same day, the store of the ODE takes its time; (c) backward Euler,
    whose evaporation from the production store at the end-of-day storage gives about 1 % less
    ET and 3-5 % more flow."""
    n_days = years * 365
    f = _forcing(WARM_BASIN, n_days)
    p = _mid(X1=350.0, X2=-0.5, X3=90.0, X4=X4, TT=-2.5)
    reference = torch.tensor(_daily_gr4j(f[:, 0].numpy(), f[:, 2].numpy(), 350.0, -0.5, 90.0, X4))[365:]

    def q(scheme: str, substeps: int = 1) -> torch.Tensor:
        return simulate(f.unsqueeze(1), p, structure=GR4J(), scheme=scheme, substeps=substeps)["Q"][365:]

    split, continuous, implicit = q("sequential"), q("euler", 24), q("implicit")
    ref = reference.unsqueeze(1)
    assert _nse(split, ref) >= 0.93 and abs(float(split.sum() / ref.sum()) - 1.0) <= 0.01
    assert _nse(continuous[1:], ref[:-1]) >= 0.97 and abs(float(continuous.sum() / ref.sum()) - 1.0) <= 0.01
    assert _nse(implicit, ref) >= 0.9 and 1.0 <= float(implicit.sum() / ref.sum()) <= 1.06


# ---- fast path and gradients ---------------------------------------------------------------------


def _problem(n_days: int = 40, n_basins: int = 3, seed: int = 0):
    """Real forcing of both basins (winter and spring) with +-20 % jitter, random parameters over
    their ranges with X1 and X2 dynamic, non-empty storages; float64."""
    g = torch.Generator().manual_seed(seed)
    base = _two_basins(120 + n_days)[120:]
    pick = torch.arange(n_basins) % 2
    P = base[:, pick, 0] * (0.8 + 0.4 * torch.rand(n_basins, generator=g, dtype=torch.float64))
    x = Forcing(P, base[:, pick, 1], base[:, pick, 2])
    p = {n: s.scale(0.1 + 0.8 * torch.rand(n_basins, generator=g, dtype=torch.float64))
         for n, s in GR4J_PARAMETERS.items()}
    for name in ("X1", "X2"):
        p[name] = GR4J_PARAMETERS[name].scale(0.1 + 0.8 * torch.rand(n_days, n_basins, generator=g,
                                                                     dtype=torch.float64))
    S0 = 1.0 + 20.0 * torch.rand(n_basins, 23, generator=g, dtype=torch.float64)
    S0[:, 2] = 150.0
    S0[:, I_ROUT] = 60.0
    return x, p, S0


class _DenseGR4J(GR4J):
    """GR4J without its eliminated day solve: Newton on all 23 storages."""

    def implicit_system(self, x, p, n_batch_dims):
        return DenseSystem(self, x, p, n_batch_dims)

    @property
    def has_eliminated_solve(self) -> bool:
        return False


def test_eliminated_day_solve_gives_the_full_newton_solution():
    x, p, S0 = _problem(n_days=120, n_basins=4, seed=1)
    options = NewtonOptions(tol=1e-11, max_iter=40)
    fast, stats_fast = backward_euler(GR4J(), x, p, S0, options=options)
    full, stats_full = backward_euler(_DenseGR4J(), x, p, S0, options=options)
    assert stats_fast["n_not_converged"] == stats_full["n_not_converged"] == 0
    assert stats_fast["max_residual"] <= 1e-11
    assert float((fast - full).abs().max()) <= 1e-8


def test_blocks_of_days_checked_once_give_the_per_iteration_solution():
    """The eliminated solve with one host synchronisation per block of days (fixed masked
    updates, a day above tolerance solved again) equals the loop that checks every iteration."""
    x, p, S0 = _problem(n_days=120, n_basins=4, seed=2)
    reference, stats_ref = backward_euler(GR4J(), x, p, S0, options=NewtonOptions(sync_days=0))
    assert stats_ref["max_iterations"] >= 2
    for sync_days in (5, 16):
        blocked, stats = backward_euler(GR4J(), x, p, S0, options=NewtonOptions(sync_days=sync_days))
        assert torch.equal(blocked, reference)
        assert torch.equal(stats["iterations"], stats_ref["iterations"])


def _loss(states: torch.Tensor, x: Forcing, p: dict, weights: torch.Tensor) -> torch.Tensor:
    f = GR4J().fluxes(states, x, p)
    return (weights * states).sum() + (f["Qr"] + f["Qd"]).square().sum() + (f["ET"] * f["Qr"]).sum()


def _gradients(gradient: str):
    x, p, S0 = _problem()
    leaves = {k: v.clone().requires_grad_() for k, v in p.items()}
    s0 = S0.clone().requires_grad_()
    weights = torch.linspace(-1.0, 1.0, s0.numel() * x.P.shape[0], dtype=torch.float64).reshape(-1, *s0.shape)
    states, stats = backward_euler(GR4J(), x, leaves, s0, gradient=gradient,
                                   options=NewtonOptions(tol=1e-12, max_iter=40))
    assert stats["n_not_converged"] == 0
    _loss(states, x, leaves, weights).backward()
    return {"S0": s0.grad, **{k: v.grad for k, v in leaves.items()}}, (x, p, S0, weights)


def test_adjoint_equals_unrolled_autograd_and_central_differences():
    """float64: the discrete adjoint (torch.func Jacobian, LU solves) against autograd unrolled
    through every Newton iteration (<= 1e-9 relative) and central finite differences (<= 1e-5)."""
    adjoint, (x, p, S0, weights) = _gradients("adjoint")
    unrolled, _ = _gradients("autograd")
    for name, g in adjoint.items():
        scale = float(unrolled[name].abs().max())
        assert scale > 0.0, name
        torch.testing.assert_close(g, unrolled[name], rtol=1e-9, atol=1e-9 * scale, msg=name)

    options = NewtonOptions(tol=1e-13, max_iter=50)

    def loss(pp: dict, s0: torch.Tensor) -> float:
        states, _ = backward_euler(GR4J(), x, pp, s0, options=options)
        return float(_loss(states, x, pp, weights))

    for name, index in (("X1", (10, 1)), ("X2", (25, 0)), ("X3", (2,)), ("X4", (1,)), ("CFMAX", (1,)),
                        ("TT", (0,)), ("S0", (2, 14))):
        base = S0 if name == "S0" else p[name]
        h = 1e-6 * max(abs(float(base[index])), 1.0)
        values = []
        for sign in (1.0, -1.0):
            shifted = base.clone()
            shifted[index] += sign * h
            values.append(loss(p, shifted) if name == "S0" else loss({**p, name: shifted}, S0))
        fd = (values[0] - values[1]) / (2.0 * h)
        assert abs(float(adjoint[name][index]) - fd) <= 1e-5 * max(abs(fd), 1e-3), (name, float(adjoint[name][index]), fd)


# ---- the registry rows, the network, training ----------------------------------------------------


@pytest.mark.parametrize("name", ["gr4j", "gr4j_adj"])
def test_registry_rows_train_through_the_network(name):
    """Forward and backward of the LSTM + GR4J on real forcing: finite, every weight reached."""
    from benchmark.training.network import DifferentiableHBV

    torch.manual_seed(0)
    spec = get_model_spec(name)
    assert spec.dynamic_parameters == ("X1", "X2") and spec.structure == GR4J()
    model = DifferentiableHBV(spec, n_inputs=6, hidden_size=8, nmul=2, solver_options={"max_iter": 20})
    forcing = _two_basins(200).to(torch.float32)
    out = model(torch.randn(200, 2, 6), forcing)
    assert out["routing"] is None and out["params"]["X1"].shape == (200, 2, 2)
    assert bool(torch.isfinite(out["Q"]).all())
    out["Q"][100:].square().mean().backward()
    assert all(bool(torch.isfinite(w.grad).all()) and float(w.grad.abs().max()) > 0 for w in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gr4j", "gr4j_adj"])
def test_trains_and_evaluates_on_the_ci_basins(name, tmp_path, ci_data_dir, ci_dataset):
    """The ci profile (4 real basins): training writes a checkpoint, evaluation scores every basin."""
    from benchmark.training.evaluate import evaluate_model
    from benchmark.training.trainer import train_model

    params = ci_params(tmp_path, ci_data_dir)
    result = train_model(params, name, epochs=1, dataset=ci_dataset, track=False)
    assert (result.model_dir / "checkpoint.pt").is_file()
    per_basin, summary = evaluate_model(params, name, dataset=ci_dataset, track=False)
    assert len(per_basin) == 4 and bool(np.isfinite(per_basin["NSE"]).all())
