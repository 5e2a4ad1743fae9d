"""The RMSE-combined loss (eqs. 35-36): a hand-computed case and masking of missing observations."""

import math

import torch

from benchmark.training.loss import rmse_combined_loss


def g(q: float) -> float:
    return math.log10(math.sqrt(q + 1e-6) + 0.1)


def test_loss_matches_hand_computation():
    qsim = torch.tensor([[1.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
    qobs = torch.tensor([[2.0, 4.0], [1.0, 0.5]], dtype=torch.float64)
    pairs = [(1.0, 2.0), (4.0, 4.0), (0.0, 1.0), (2.0, 0.5)]
    rmse = math.sqrt(sum((s - o) ** 2 for s, o in pairs) / 4)
    rmse_log = math.sqrt(sum((g(s) - g(o)) ** 2 for s, o in pairs) / 4)
    expected = 0.75 * rmse + 0.25 * rmse_log
    assert math.isclose(float(rmse_combined_loss(qsim, qobs)), expected, rel_tol=1e-12)


def test_alpha_weights_the_two_terms():
    qsim = torch.tensor([3.0], dtype=torch.float64)
    qobs = torch.tensor([1.0], dtype=torch.float64)
    assert math.isclose(float(rmse_combined_loss(qsim, qobs, alpha=0.0)), 2.0, rel_tol=1e-12)
    assert math.isclose(float(rmse_combined_loss(qsim, qobs, alpha=1.0)), abs(g(3.0) - g(1.0)), rel_tol=1e-12)


def test_missing_observations_are_left_out_not_zero_filled():
    qsim = torch.tensor([1.0, 2.0, 5.0, 3.0], dtype=torch.float64, requires_grad=True)
    qobs = torch.tensor([1.5, float("nan"), 4.0, float("nan")], dtype=torch.float64)
    loss = rmse_combined_loss(qsim, qobs)
    only_observed = rmse_combined_loss(qsim.detach()[[0, 2]], qobs[[0, 2]])
    zero_filled = rmse_combined_loss(qsim.detach(), torch.nan_to_num(qobs, nan=0.0))
    assert math.isclose(float(loss), float(only_observed), rel_tol=1e-12)
    assert not math.isclose(float(loss), float(zero_filled), rel_tol=1e-3)
    loss.backward()
    assert torch.isfinite(qsim.grad).all()
    assert qsim.grad[1] == 0 and qsim.grad[3] == 0
    assert qsim.grad[0] != 0 and qsim.grad[2] != 0


def test_batch_without_any_observation_gives_zero_loss_and_zero_gradient():
    qsim = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = rmse_combined_loss(qsim, torch.full((2,), float("nan")))
    loss.backward()
    assert float(loss) == 0.0
    assert torch.equal(qsim.grad, torch.zeros(2))


def test_negative_simulated_flow_keeps_the_loss_finite():
    qsim = torch.tensor([-0.5, 1.0], requires_grad=True)
    loss = rmse_combined_loss(qsim, torch.tensor([0.2, 1.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(qsim.grad).all()
