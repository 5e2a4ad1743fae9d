"""The discrete adjoint of the backward-Euler solver is the exact gradient (docs/schemes.md#the-discrete-adjoint).

Checked three ways in float64 on a small kink-free problem (tests/implicit_problem.py), for
static parameters, dynamic (per-day) parameters and the initial state, with and without
capillary rise: torch.autograd.gradcheck, agreement with autograd unrolled through the Newton
iterations (<= 1e-6 relative) and with central finite differences (<= 1e-4 relative).
The ``fused`` variants run the adjoint through the compiled daily kernels (``compile=True``,
benchmark/solvers/fused.py); the ``gpu`` variants run the checks on CUDA when a GPU exists.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.errors import SolverError
from benchmark.models import hbv
from benchmark.models.hbv import Forcing
from benchmark.solvers.implicit import NewtonOptions, integrate_backward_euler
from tests.implicit_problem import problem

TIGHT = NewtonOptions(tol=1e-12, max_iter=30)
FUSED = dataclasses.replace(TIGHT, compile=True)
ADJOINT_VS_UNROLLED_RTOL = 1e-6
ADJOINT_VS_FD_RTOL = 1e-4

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]),
]


def _loss(states: torch.Tensor, x: Forcing, p: dict[str, torch.Tensor], capillary_rise: bool,
          weights: torch.Tensor) -> torch.Tensor:
    """A loss on the states and on the fluxes evaluated at them (as simulate does)."""
    f = hbv.fluxes(states, x, p, capillary_rise=capillary_rise)
    q = f.Q0 + f.Q1 + f.Q2
    return (weights * states).sum() + (q ** 2).sum() + (f.ET * q).sum()


def _gradients(gradient: str, capillary_rise: bool, device: str, options: NewtonOptions = TIGHT
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    x, p, S0 = problem(device=device)
    leaves = {k: v.clone().requires_grad_() for k, v in p.items()}
    S0 = S0.clone().requires_grad_()
    weights = torch.linspace(-1.0, 1.0, S0.numel() * x.P.shape[0], dtype=S0.dtype, device=device)
    states, stats = integrate_backward_euler(x, leaves, S0, capillary_rise=capillary_rise, gradient=gradient,
                                             options=options)
    assert stats["n_not_converged"] == 0
    _loss(states, x, leaves, capillary_rise, weights.reshape(states.shape)).backward()
    used = [k for k in leaves if leaves[k].grad is not None]
    return {k: leaves[k].grad for k in used}, S0.grad


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("capillary_rise", [False, True])
def test_adjoint_equals_unrolled_autograd(capillary_rise: bool, device: str, fused: bool) -> None:
    adj, adj_s0 = _gradients("adjoint", capillary_rise, device, FUSED if fused else TIGHT)
    ref, ref_s0 = _gradients("autograd", capillary_rise, device)
    assert set(adj) == set(ref)
    expected = {"BETA", "BETAET", "FC", "TT", "CFMAX", "CFR", "CWH", "LP", "PERC", "UZL", "K0", "K1", "K2"}
    if capillary_rise:
        expected |= {"C", "NDC"}
    assert expected <= set(adj)
    for name in sorted(adj):
        rel = ((adj[name] - ref[name]).norm() / ref[name].norm()).item()
        assert rel <= ADJOINT_VS_UNROLLED_RTOL, f"{name}: adjoint vs unrolled autograd differ by {rel:.2e}"
        assert ref[name].norm() > 0, f"{name}: zero gradient, the check would be vacuous"
    rel = ((adj_s0 - ref_s0).norm() / ref_s0.norm()).item()
    assert rel <= ADJOINT_VS_UNROLLED_RTOL, f"initial state: differ by {rel:.2e}"


def _scalar_loss(x: Forcing, p: dict[str, torch.Tensor], S0: torch.Tensor, capillary_rise: bool,
                 options: NewtonOptions = TIGHT) -> torch.Tensor:
    states, _ = integrate_backward_euler(x, p, S0, capillary_rise=capillary_rise, options=options)
    weights = torch.linspace(-1.0, 1.0, states.numel(), dtype=states.dtype).reshape(states.shape)
    return _loss(states, x, p, capillary_rise, weights)


# (what, name, index): static parameters [B], dynamic parameters [T, B], initial state [B, 5]
PROBES = [
    ("param", "CFMAX", (1,)), ("param", "CWH", (0,)), ("param", "TT", (2,)), ("param", "K1", (0,)),
    ("param", "PERC", (1,)), ("param", "LP", (2,)),
    ("param", "BETA", (3, 1)), ("param", "FC", (2, 0)), ("param", "BETAET", (5, 2)), ("param", "FC", (0, 2)),
    ("state", "S0", (1, 0)), ("state", "S0", (0, 1)), ("state", "S0", (2, 2)), ("state", "S0", (1, 4)),
    ("param", "C", (0,)), ("param", "NDC", (1,)),
]


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
@pytest.mark.parametrize("capillary_rise", [False, True])
def test_adjoint_equals_central_finite_differences(capillary_rise: bool, fused: bool) -> None:
    x, p, S0 = problem()
    leaves = {k: v.clone().requires_grad_() for k, v in p.items()}
    S0_leaf = S0.clone().requires_grad_()
    _scalar_loss(x, leaves, S0_leaf, capillary_rise, FUSED if fused else TIGHT).backward()
    checked = 0
    for what, name, index in PROBES:
        if name in ("C", "NDC") and not capillary_rise:
            continue
        base = S0 if what == "state" else p[name]
        analytic = (S0_leaf.grad if what == "state" else leaves[name].grad)[index].item()
        h = 1e-6 * max(abs(base[index].item()), 1.0)
        values = []
        for sign in (1.0, -1.0):
            bumped = base.clone()
            bumped[index] += sign * h
            if what == "state":
                values.append(_scalar_loss(x, p, bumped, capillary_rise).item())
            else:
                values.append(_scalar_loss(x, {**p, name: bumped}, S0, capillary_rise).item())
        fd = (values[0] - values[1]) / (2.0 * h)
        assert abs(analytic - fd) <= ADJOINT_VS_FD_RTOL * max(abs(fd), 1e-8), \
            f"{name}{list(index)}: adjoint {analytic:.10g} vs finite differences {fd:.10g}"
        checked += 1
    assert checked >= 14


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("capillary_rise", [False, True])
def test_gradcheck_adjoint_function(capillary_rise: bool, device: str) -> None:
    x, p, S0 = problem(device=device, n_days=4)
    x = Forcing(*(v[:, :2] for v in x))
    p = {k: v[..., :2] for k, v in p.items()}
    S0 = S0[:2]
    names = ("BETA", "CFMAX", "K1", "TT", "CWH") + (("NDC",) if capillary_rise else ())

    def run(s0: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        states, _ = integrate_backward_euler(x, {**p, **dict(zip(names, values))}, s0,
                                             capillary_rise=capillary_rise, options=TIGHT)
        return states

    inputs = (S0.clone().requires_grad_(), *(p[n].clone().requires_grad_() for n in names))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_unknown_gradient_method_is_rejected() -> None:
    x, p, S0 = problem()
    with pytest.raises(SolverError, match="gradient"):
        integrate_backward_euler(x, p, S0, capillary_rise=False, gradient="finite-differences")


def test_missing_parameter_is_named() -> None:
    x, p, S0 = problem()
    del p["K2"]
    with pytest.raises(SolverError, match="K2"):
        integrate_backward_euler(x, p, S0, capillary_rise=False)
