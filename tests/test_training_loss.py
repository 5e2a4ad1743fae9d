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


def test_sharded_loss_gives_the_pooled_loss_and_its_gradient():
    """Two shards of a minibatch (as two DDP processes would hold): the summed sums give the
    pooled loss, and the shards' surrogate gradients, averaged as DDP averages, equal the
    gradient of the pooled loss (masking included)."""
    from benchmark.training.loss import sharded_rmse_combined_loss, squared_error_sums

    g_ = torch.Generator().manual_seed(0)
    qsim = (torch.rand(30, 4, generator=g_, dtype=torch.float64) * 5).requires_grad_()
    qobs = torch.rand(30, 4, generator=g_, dtype=torch.float64) * 5
    qobs[3:9, 1] = float("nan")
    pooled = rmse_combined_loss(qsim, qobs, alpha=0.25)
    (expected,) = torch.autograd.grad(pooled, qsim)

    shards = [slice(0, 2), slice(2, 4)]
    totals = sum(squared_error_sums(qsim.detach()[:, s], qobs[:, s]) for s in shards)

    def reduce_sum(t: torch.Tensor) -> None:  # the other shard's sums, as all_reduce would add them
        t.copy_(totals)

    grad = torch.zeros_like(qsim)
    for s in shards:
        loss, surrogate = sharded_rmse_combined_loss(qsim[:, s], qobs[:, s], reduce_sum, 2, alpha=0.25)
        assert math.isclose(float(loss), float(pooled), rel_tol=1e-12)
        (part,) = torch.autograd.grad(surrogate, qsim)
        grad += part / 2  # DDP averages over the processes
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-14)


def test_sharded_loss_on_one_process_is_the_plain_loss():
    from benchmark.training.loss import sharded_rmse_combined_loss

    qsim = torch.tensor([[1.0, 4.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    qobs = torch.tensor([[2.0, 4.0], [1.0, 0.5]], dtype=torch.float64)
    loss, surrogate = sharded_rmse_combined_loss(qsim, qobs, lambda t: None, 1)
    assert math.isclose(float(loss), float(rmse_combined_loss(qsim, qobs)), rel_tol=1e-12)
    (a,) = torch.autograd.grad(surrogate, qsim)
    (b,) = torch.autograd.grad(rmse_combined_loss(qsim, qobs), qsim)
    assert torch.allclose(a, b, rtol=1e-12)
