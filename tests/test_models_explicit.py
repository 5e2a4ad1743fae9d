"""Explicit Euler (1 d, 4 h, 1 h) and RK4 (1 d) on the HBV RHS (docs/schemes.md#explicit-euler-and-rk4, Table A2).

Reference: tests/reference/explicit_hbv.csv and explicit_hbv_cr.csv, an independent
implementation run on basin 01022500 for 15 years with mid-range parameters (θNDC = 0.5),
storages starting empty. Sub-daily flux limiters cap the *rate* by the storage in mm
(Perc = min(SUZ, PERC)); see the module docstring of benchmark.solvers.explicit.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from benchmark.models import simulate
from tests.models_reference import ROUTING, assert_matches, forcing, mid_params, reference_frame

SCHEMES = {  # reference column suffix -> (scheme, substeps)
    "euler_1d": ("euler", 1),
    "euler_4h": ("euler", 6),
    "euler_1h": ("euler", 24),
    "rk4_1d": ("rk4", 1),
}


QUICK_DAYS = 1096
"""The fast suite checks the costlier schemes on the first 3 years (same initial state, so a
prefix of the reference trajectory); the slow suite runs all 15 years."""


@lru_cache(maxsize=None)
def run_reference(tag: str, dtype: torch.dtype, n_days: int | None = None) -> dict:
    """Both reference files in one batched run: basin 0 without, basin 1 with capillary rise.

    C = 0 makes the capillary flux exactly zero, so basin 0 is the original model.
    """
    scheme, substeps = SCHEMES[tag]
    params = mid_params(dtype, n_basins=2)
    params["C"] = torch.tensor([0.0, params["C"][1]], dtype=dtype)
    with torch.no_grad():
        return simulate(forcing(dtype, days=slice(0, n_days), n_basins=2), params, scheme=scheme,
                        substeps=substeps, capillary_rise=True, routing=ROUTING)


def check_reference(tag: str, dtype: torch.dtype, n_days: int | None = None) -> None:
    out = run_reference(tag, dtype, n_days)
    for basin, name in enumerate(("explicit_hbv", "explicit_hbv_cr")):
        ref = reference_frame(name).iloc[slice(0, n_days)]
        assert_matches(out["Q"][:, basin], ref[f"Q_routed_{tag}"], label=f"{name} Q_routed {tag} {dtype}")
        assert_matches(out["ET"][:, basin], ref[f"ET_{tag}"], label=f"{name} ET {tag} {dtype}")
        assert_matches(out["Q2"][:, basin], ref[f"Q2_{tag}"], label=f"{name} Q2 {tag} {dtype}")
        if dtype == torch.float64:
            # storages (mm, not flows) drift by ~2e-3 mm in float32 over 131 k hourly steps
            min_state = out["states"][:, basin, 0].amin(-1)
            assert_matches(min_state, ref[f"minstate_{tag}"], label=f"{name} minstate {tag}", flow=False)


def test_one_day_euler_matches_the_reference_on_every_day_for_15_years():
    check_reference("euler_1d", torch.float64)


@pytest.mark.parametrize("tag", ["euler_4h", "rk4_1d"])
def test_sub_daily_euler_and_rk4_match_the_reference_on_every_day_for_3_years(tag):
    check_reference(tag, torch.float64, QUICK_DAYS)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("tag", list(SCHEMES))
def test_explicit_schemes_match_the_reference_slow(tag, dtype):
    # all 15 years; hourly Euler is 131 k steps (~20 s); float32 for all schemes
    check_reference(tag, dtype)


def test_original_model_path_equals_improved_with_zero_capillary_coefficient():
    f = forcing(days=slice(0, 500))
    params = mid_params()
    params["C"] = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        original = simulate(f, params, scheme="rk4")
        improved = simulate(f, params, scheme="rk4", capillary_rise=True)
    torch.testing.assert_close(original["Q"], improved["Q"], rtol=0, atol=0)
    torch.testing.assert_close(original["states"], improved["states"], rtol=0, atol=0)


def test_one_day_euler_goes_negative_but_sub_daily_steps_do_not():
    # the instability of Table A2: 1-day Euler overshoots (K0 + K1 + PERC drain SUZ too fast)
    euler_1d = run_reference("euler_1d", torch.float64)
    euler_4h = run_reference("euler_4h", torch.float64, QUICK_DAYS)
    assert float(euler_1d["states"][:QUICK_DAYS].min()) < -1.0  # within the same 3 years
    assert float(euler_1d["states"].min()) < -1.0  # mm
    assert float(euler_4h["states"].min()) > -1e-20
    assert int(euler_1d["stats"]["n_negative_storage"]) > 100
    assert int(euler_4h["stats"]["n_negative_storage"]) == 0


def check_mass_balance(tag: str, n_days: int | None) -> None:
    # Each step moves exactly dt * (P - ET - Q') between the (unclipped) storages and the
    # outside, and the day's fluxes are the same weighted sums: the balance is exact.
    out = run_reference(tag, torch.float64, n_days)
    p_total = forcing(days=slice(0, n_days))[..., 0].sum()
    for basin in (0, 1):
        d_storage = out["final_state"][basin].sum()
        residual = p_total - out["ET"][:, basin].sum() - out["Q_unrouted"][:, basin].sum() - d_storage
        assert abs(float(residual)) <= 1e-11 * float(p_total), (tag, basin, float(residual))


def test_one_day_euler_mass_balance_over_15_years_closes_to_rounding():
    check_mass_balance("euler_1d", None)


@pytest.mark.parametrize("tag", ["euler_4h", "rk4_1d"])
def test_sub_daily_euler_and_rk4_mass_balance_closes_to_rounding(tag):
    check_mass_balance(tag, QUICK_DAYS)


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["euler_4h", "euler_1h", "rk4_1d"])
def test_sub_daily_euler_and_rk4_mass_balance_over_15_years_closes_to_rounding(tag):
    check_mass_balance(tag, None)


@pytest.mark.parametrize(("scheme", "substeps"), [("euler", 6), ("rk4", 1)])
def test_no_precipitation_and_empty_storages_give_zero_flow(scheme, substeps):
    f = forcing(days=slice(0, 200)).clone()
    f[..., 0] = 0.0
    with torch.no_grad():
        out = simulate(f, mid_params(), scheme=scheme, substeps=substeps, capillary_rise=True, routing=ROUTING)
    for key in ("Q", "Q0", "Q1", "Q2", "recharge", "perc", "capillary"):
        assert float(out[key].abs().max()) == 0.0, key


@pytest.mark.parametrize(("scheme", "substeps"), [("euler", 6), ("rk4", 1)])
def test_gradients_match_finite_differences(scheme, substeps):
    f = forcing(days=slice(140, 200))
    n_days = f.shape[0]
    base = mid_params()
    base["BETAET"] = base["BETAET"].expand(n_days, 1).clone()  # dynamic
    names = ["BETA", "FC", "K0", "K2", "CFMAX", "CWH", "BETAET", "C"]
    s0 = torch.tensor([[20.0, 1.0, 200.0, 10.0, 30.0]], dtype=torch.float64)

    def loss(params):
        out = simulate(f, params, scheme=scheme, substeps=substeps, capillary_rise=True, routing=ROUTING,
                       initial_state=s0)
        return (out["Q"] ** 2).sum() + out["ET"].sum()

    leaves = {n: v.clone().requires_grad_(n in names) for n, v in base.items()}
    loss(leaves).backward()
    for name in names:
        grad = leaves[name].grad.sum()
        h = 1e-6 * max(abs(float(base[name].mean())), 1.0)
        with torch.no_grad():
            fd = (loss({**base, name: base[name] + h}) - loss({**base, name: base[name] - h})) / (2 * h)
        assert abs(float(grad - fd)) <= 1e-5 * abs(float(fd)) + 1e-8, (name, float(grad), float(fd))


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_invalid_substeps_are_rejected(bad):
    from benchmark.errors import ConfigError

    with pytest.raises(ConfigError, match="substeps"):
        simulate(forcing(days=slice(0, 3)), mid_params(), scheme="euler", substeps=bad)
