"""The model interface: structures, time schemes and gradient methods as independent parts.

A structure's fast paths are checked against the generic paths every structure gets through
the interface: HBV's structured backward-Euler system (closed-form block-triangular solves,
eliminated day solve, table-driven adjoint) against the dense system (Jacobian from
``torch.func`` or the closed form, LU solves), in float64 on real forcing. Invalid
combinations of structure, scheme and gradient are refused before anything runs.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.models import simulate
from benchmark.models.base import Forcing
from benchmark.models.hbv import HBV
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.solvers import make_scheme
from benchmark.solvers.dense import func_jacobian
from benchmark.solvers.implicit import backward_euler
from benchmark.solvers.newton import NewtonOptions
from tests.models_reference import forcing

TIGHT = NewtonOptions(tol=1e-11, max_iter=40)
FAST_VS_GENERIC_MM = 1e-9
"""States (mm) of HBV's structured solve and of the dense solve, both converged to 1e-11 mm/day."""
GRADIENT_RTOL = 1e-8


@dataclasses.dataclass(frozen=True)
class DenseHBV(HBV):
    """HBV without its fast paths: backward Euler falls back to the dense system."""

    closed_form: bool = True

    def implicit_system(self, x, p, n_batch_dims):
        return None

    def jacobian(self, S, x, p):
        return super().jacobian(S, x, p) if self.closed_form else None

    @property
    def has_eliminated_solve(self) -> bool:
        return False


def _batch(n_basins: int = 4, n_days: int = 240, seed: int = 0):
    """Real forcing of basin 01022500 (a winter and spring: snow, melt, refreezing), shifted per
    basin, random parameters over their ranges with dynamic BETA, BETAET, FC, nmul = 2."""
    g = torch.Generator().manual_seed(seed)
    base = forcing(torch.float64, days=slice(60, 60 + n_days))[:, 0]
    P = base[:, 0:1] * (0.5 + torch.rand(n_basins, generator=g, dtype=torch.float64))
    T = base[:, 1:2] + 3.0 * torch.randn(n_basins, generator=g, dtype=torch.float64)
    x = Forcing(P.unsqueeze(-1), T.unsqueeze(-1), base[:, 2:3].expand(-1, n_basins).unsqueeze(-1))
    shape = (n_basins, 2)
    p = {k: s.scale(torch.rand(shape, generator=g, dtype=torch.float64)) for k, s in HBV_PARAMETERS.items()}
    for name in ("BETA", "BETAET", "FC"):
        p[name] = HBV_PARAMETERS[name].scale(torch.rand((n_days, *shape), generator=g, dtype=torch.float64))
    S0 = torch.rand(*shape, 5, generator=g, dtype=torch.float64) * torch.tensor([20.0, 2.0, 150.0, 20.0, 40.0],
                                                                                dtype=torch.float64)
    return x, p, S0


def test_torch_func_jacobian_is_hbvs_closed_form():
    x, p, S0 = _batch()
    day = 10
    S = S0 + torch.rand(S0.shape, dtype=torch.float64)
    x_t = Forcing(*(v[day] for v in x))
    p_t = {k: v[day] if v.dim() == 3 else v for k, v in p.items()}
    for structure in (HBV(), HBV(capillary_rise=True, learn_ndc=True)):
        closed = structure.jacobian(S, x_t, p_t)
        generic = func_jacobian(structure, S, x_t, p_t)
        assert closed.shape == generic.shape == (*S.shape, 5)
        torch.testing.assert_close(generic, closed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
@pytest.mark.parametrize("closed_form", [True, False], ids=["closed-form Jacobian", "torch.func Jacobian"])
def test_structured_backward_euler_equals_the_dense_solve(capillary_rise, closed_form):
    """Same states (and the same converged statistics) from HBV's fast path and the generic dense path."""
    x, p, S0 = _batch()
    fast = HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise)
    dense = DenseHBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise, closed_form=closed_form)
    states_fast, stats_fast = backward_euler(fast, x, p, S0, options=TIGHT)
    states_dense, stats_dense = backward_euler(dense, x, p, S0, options=TIGHT)
    assert stats_fast["n_not_converged"] == stats_dense["n_not_converged"] == 0
    assert (states_fast - states_dense).abs().max().item() <= FAST_VS_GENERIC_MM


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_structured_adjoint_equals_the_dense_adjoint(capillary_rise):
    """dL/dtheta and dL/dS0 through HBV's table-driven adjoint and through the dense LU adjoint
    with the torch.func Jacobian."""
    x, p, S0 = _batch(n_basins=3, n_days=120, seed=1)
    weights = torch.randn((120, 3, 2, 5), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for structure in (HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise),
                      DenseHBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise, closed_form=False)):
        leaves = {k: v.clone().requires_grad_() for k, v in p.items() if k in structure.parameter_names}
        s0 = S0.clone().requires_grad_()
        states, _ = backward_euler(structure, x, leaves, s0, gradient="adjoint", options=TIGHT)
        q = simulate_flow(structure, states, x, leaves)
        ((states * weights).sum() + q.square().sum()).backward()
        grads.append({"S0": s0.grad, **{k: v.grad for k, v in leaves.items()}})
    fast, dense = grads
    for name, g in fast.items():
        assert float(g.abs().max()) > 0.0, name
        torch.testing.assert_close(dense[name], g, rtol=GRADIENT_RTOL, atol=GRADIENT_RTOL * float(g.abs().max()),
                                   msg=name)


def simulate_flow(structure, states, x, p):
    """The structure's outflow at the given states (mm/day)."""
    return structure.outflow(structure.fluxes(states, x, p))


# ---- invalid combinations are refused before anything runs ------------------------------------


def _forcing() -> torch.Tensor:
    return forcing(days=slice(0, 5), n_basins=2)


def _params(names) -> dict[str, float]:
    return {n: HBV_PARAMETERS[n].mid for n in names}


@pytest.mark.parametrize("scheme, gradient, message", [
    ("euler", "adjoint", "euler scheme supports only gradient='autograd'"),
    ("rk4", "manual", "rk4 scheme supports only gradient='autograd'"),
    ("implicit", "manual", "implicit scheme supports only gradient='adjoint' or 'autograd'"),
    ("sequential", "adjoint", "sequential scheme supports only gradient='manual' or 'autograd'"),
    ("implicit", "finite-differences", "unknown gradient method 'finite-differences'"),
])
def test_a_scheme_refuses_a_gradient_method_it_does_not_have(scheme, gradient, message):
    with pytest.raises(ConfigError, match=message):
        simulate(_forcing(), _params(HBV_PARAMETERS), scheme=scheme, gradient=gradient)


def test_the_operator_split_hbv_cannot_learn_ndc():
    structure = HBV(capillary_rise=True, learn_ndc=True)
    with pytest.raises(ConfigError, match="fixes NDC to 1"):
        make_scheme("sequential").check(structure, None)
    with pytest.raises(ConfigError, match="learn_ndc needs capillary_rise"):
        HBV(learn_ndc=True)


def test_compile_keeps_every_scheme_and_gradient_method():
    """``compile`` fuses the days of the scheme the model asked for; it never swaps the algorithm
    (hand-written reverse pass and eliminated solve stay, now as compiled calls)."""
    x, p = _forcing(), _params(HBV_PARAMETERS)
    for scheme, gradient in (("sequential", "manual"), ("implicit", "adjoint")):
        with torch.no_grad():
            eager = simulate(x, p, scheme=scheme, gradient=gradient)
            fused = simulate(x, p, scheme=scheme, gradient=gradient, solver_options={"compile": True})
        torch.testing.assert_close(fused["Q"], eager["Q"], rtol=1e-12, atol=1e-12)


class _NoReverseHBV(HBV):
    """HBV's operator-split update without its hand-written reverse pass."""

    @property
    def has_hand_written_backward(self) -> bool:
        return False


def test_a_structure_without_hand_written_backward_refuses_the_manual_gradient():
    with pytest.raises(ConfigError, match="has no hand-written backward"):
        make_scheme("sequential").check(_NoReverseHBV(), "manual")
    assert make_scheme("sequential").check(_NoReverseHBV(), None) == "autograd"  # its default
    assert make_scheme("sequential").check(HBV(), None) == "manual"


def test_legacy_manual_backward_option_maps_to_the_gradient_and_a_contradiction_is_an_error():
    with pytest.raises(ConfigError, match="contradicts gradient='manual'"):
        simulate(_forcing(), _params(HBV_PARAMETERS), scheme="sequential", gradient="manual",
                 solver_options={"manual_backward": False})


def test_capillary_rise_is_an_hbv_option_not_a_simulate_switch_for_other_structures():
    with pytest.raises(ConfigError, match="capillary_rise is an option of HBV"):
        simulate(_forcing(), _params(HBV_PARAMETERS), scheme="implicit", structure=HBV(), capillary_rise=True)
