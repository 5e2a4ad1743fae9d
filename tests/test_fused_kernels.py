"""Fused daily kernels (``compile=True``, docs/schemes.md#fused-daily-kernels) give the unfused results.

The unfused path is the reference. On real forcing (the reference basin, tiled) in float64, with
static and per-day parameters and a loss on states and fluxes, the fused path must give:

- sequential δHBV (one compiled call per day forward, one per day for the hand-written reverse
  pass): the same states, fluxes and parameter gradients to 1e-12 relative;
- implicit δHBV.adj (the eliminated day solve and the adjoint's transposed solve as compiled
  calls, the right-hand side's vector-Jacobian product compiled): the same states to 1e-12 mm,
  the same Newton iteration count on every system-day, gradients to 1e-10 relative;

and a fused training step must dispatch at most 40 aten operations per simulated day (torch
profiler; the count does not depend on the machine). The adjoint's agreement with unrolled
autograd and finite differences on the fused path is in tests/test_implicit_adjoint.py.
Compilation takes ~10-30 s per kernel on a 2-core CPU the first time (inductor caches on disk).
"""

from __future__ import annotations

import pytest
import torch

from benchmark.models.base import Forcing
from benchmark.models.hbv import HBV
from benchmark.models.hbv import sequential as hbv_sequential
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.solvers.implicit import backward_euler
from benchmark.solvers.newton import NewtonOptions
from tests.models_reference import forcing
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params  # noqa: F401 - fixtures

N_BASINS, NMUL, N_DAYS = 3, 2, 200
DYNAMIC = ("BETA", "BETAET")
START_MM = (5.0, 1.0, 150.0, 100.0, 50.0)
"""Initial SNOW, MELT, SM, SUZ, SLZ (mm): a full upper zone, so that every flux (Q0 too) runs."""
MAX_ATEN_OPS_PER_DAY = 40


def _inputs(structure: HBV, dtype=torch.float64):
    """Real forcing ``[T, B, 1]`` and the structure's parameters spread over their ranges (some per day), as leaves."""
    x = forcing(dtype, days=slice(0, N_DAYS), n_basins=N_BASINS).unsqueeze(2)
    g = torch.Generator().manual_seed(3)
    names = [n for n in HBV_PARAMETERS if n in structure.parameter_names]
    leaves = {}
    for name in names:
        shape = (N_DAYS, N_BASINS, NMUL) if name in DYNAMIC else (N_BASINS, NMUL)
        u = 0.1 + 0.8 * torch.rand(shape, generator=g, dtype=dtype)
        leaves[name] = u.requires_grad_()
    return Forcing(x[..., 0], x[..., 1], x[..., 2]), leaves


def _physical(leaves):
    return {name: HBV_PARAMETERS[name].scale(u) for name, u in leaves.items()}


def _sequential(fused: bool | None, capillary_rise: bool):
    x, leaves = _inputs(HBV(capillary_rise=capillary_rise))
    S0 = torch.tensor(START_MM, dtype=torch.float64).expand(N_BASINS, NMUL, 5).clone()
    days = hbv_sequential.split_days(x, _physical(leaves), S0, capillary_rise=capillary_rise)
    args = (capillary_rise, hbv_sequential.SM_MIN_SEQUENTIAL, tuple(days.dynamic))
    if fused is None:
        states, *fluxes = hbv_sequential.SequentialFunction.apply(*args, S0, *days.inputs)
    else:
        states, *fluxes = hbv_sequential.FusedSequentialFunction.apply(*args, fused, S0, *days.inputs)
    q = fluxes[0] + fluxes[1] + fluxes[2]
    loss = (q ** 2).mean() + 1e-3 * (states ** 2).mean() + (fluxes[3] * q).mean()
    loss.backward()
    return states.detach(), torch.stack(fluxes).detach(), {k: v.grad for k, v in leaves.items()}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_fused_sequential_equals_the_hand_written_pass(capillary_rise: bool) -> None:
    ref_states, ref_fluxes, ref_grads = _sequential(None, capillary_rise)
    for fused in (False, True):  # the day functions run eagerly, then compiled
        states, fluxes, grads = _sequential(fused, capillary_rise)
        assert _relative(states, ref_states) <= 1e-12
        assert _relative(fluxes, ref_fluxes) <= 1e-12
        for name, ref in ref_grads.items():
            assert ref.abs().max() > 0, f"{name}: zero gradient, the check would be vacuous"
            assert _relative(grads[name], ref) <= 1e-12, name


def _implicit(compile_: bool, capillary_rise: bool):
    x, leaves = _inputs(HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise))
    S0 = torch.tensor(START_MM, dtype=torch.float64).expand(N_BASINS, NMUL, 5).clone()
    structure = HBV(capillary_rise=capillary_rise, learn_ndc=capillary_rise)
    states, stats = backward_euler(structure, x, _physical(leaves), S0, gradient="adjoint",
                                   options=NewtonOptions(compile=compile_))
    f = structure.fluxes(states, x, _physical(leaves))
    loss = ((f["Q0"] + f["Q1"] + f["Q2"]) ** 2).mean() + 1e-3 * (states ** 2).mean()
    loss.backward()
    return states.detach(), stats, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("capillary_rise", [False, True], ids=["original", "improved"])
def test_fused_implicit_solve_and_adjoint_equal_the_unfused_ones(capillary_rise: bool) -> None:
    ref_states, ref_stats, ref_grads = _implicit(False, capillary_rise)
    states, stats, grads = _implicit(True, capillary_rise)
    assert float((states - ref_states).abs().max()) <= 1e-12
    assert torch.equal(stats["iterations"], ref_stats["iterations"])
    assert torch.equal(stats["not_converged"], ref_stats["not_converged"])
    assert ref_stats["max_iterations"] >= 3  # the blocks' update counts and the redo path are exercised
    for name, ref in ref_grads.items():
        assert ref.abs().max() > 0, f"{name}: zero gradient, the check would be vacuous"
        assert _relative(grads[name], ref) <= 1e-10, name


def _aten_ops(function) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        function()
    return sum(1 for event in prof.profiler.kineto_results.events() if event.name().startswith("aten::"))


@pytest.mark.parametrize("model", ["dhbv", "dhbv_adj", "dhbv_cr", "dhbv_adj_cr"])
def test_a_fused_training_step_dispatches_at_most_40_aten_operations_per_day(model: str) -> None:
    from benchmark.models import simulate
    from benchmark.models.registry import get_model_spec

    spec = get_model_spec(model)
    x, leaves = _inputs(spec.structure, torch.float32)
    forcing_ = torch.stack(tuple(x), dim=-1)[:, :, 0]

    def step() -> None:
        out = simulate(forcing_, _physical(leaves), **spec.simulate_options(), nmul=NMUL,
                       solver_options={"compile": True})
        out["Q"].square().mean().backward()

    step()  # compiles
    assert _aten_ops(step) / N_DAYS <= MAX_ATEN_OPS_PER_DAY


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dhbv", "dhbv_adj_cr"])
def test_training_and_evaluation_with_train_compile_give_the_unfused_results(model, tmp_path, ci_data_dir,
                                                                              ci_dataset) -> None:
    """``train.compile: true`` on the real ci basins: the same losses and test metrics as unfused, to float32 rounding."""
    from benchmark.training.evaluate import evaluate_model
    from benchmark.training.trainer import train_model

    runs = {}
    for fused in (False, True):
        folder = tmp_path / ("fused" if fused else "eager")
        folder.mkdir()
        params = ci_params(folder, ci_data_dir, compile=fused)
        assert params.fused_kernels is fused
        trained = train_model(params, model, epochs=2, dataset=ci_dataset, track=False)
        per_basin, _ = evaluate_model(params, model, dataset=ci_dataset, track=False)
        runs[fused] = ([h["train_loss"] for h in trained.history], per_basin)
    (loss_eager, eager), (loss_fused, fused_) = runs[False], runs[True]
    assert loss_fused == pytest.approx(loss_eager, rel=1e-4)
    for column in ("NSE", "KGE"):
        assert fused_[column].to_numpy() == pytest.approx(eager[column].to_numpy(), rel=1e-3, abs=1e-4), column
