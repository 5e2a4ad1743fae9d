"""Gamma unit-hydrograph routing (Song et al. 2024, eqs. 21-22; docs/model.md#routing)."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.models.routing import UH_LENGTH, gamma_kernel, route
from tests.models_reference import ROUTING, assert_matches, reference_frame


def gamma_pdf_weights(a: float, b: float) -> list[float]:
    """The textbook gamma density at t = 0.5..14.5, normalised (docs/model.md#routing)."""
    alpha, theta = a + 0.1, b + 0.5
    w = [t ** (alpha - 1) * math.exp(-t / theta) / (math.gamma(alpha) * theta ** alpha)
         for t in (k + 0.5 for k in range(UH_LENGTH))]
    return [v / sum(w) for v in w]


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.0), (1.45, 3.25), (2.9, 6.5), (0.3, 5.0)])
def test_kernel_is_the_normalised_gamma_density(a, b):
    kernel = gamma_kernel(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    assert kernel.shape == (UH_LENGTH,)
    torch.testing.assert_close(kernel, torch.tensor(gamma_pdf_weights(a, b), dtype=torch.float64),
                               rtol=1e-12, atol=1e-15)
    assert float(kernel.min()) >= 0.0
    assert abs(float(kernel.sum()) - 1.0) <= 1e-12


def test_kernel_sums_to_one_in_float32_over_the_whole_parameter_range():
    a = torch.linspace(0.0, 2.9, 30).repeat_interleave(30)
    b = torch.linspace(0.0, 6.5, 30).repeat(30)
    kernel = gamma_kernel(a, b)
    assert kernel.shape == (900, UH_LENGTH)
    assert torch.isfinite(kernel).all()
    torch.testing.assert_close(kernel.sum(-1), torch.ones(900), rtol=0, atol=1e-6)


def test_routing_is_causal_and_the_impulse_response_is_the_kernel():
    n_days, impulse_day = 40, 10
    q = torch.zeros(n_days, 3, dtype=torch.float64)
    q[impulse_day] = 1.0
    a = torch.tensor([0.2, 1.45, 2.9], dtype=torch.float64)
    b = torch.tensor([0.1, 3.25, 6.5], dtype=torch.float64)
    routed = route(q, a, b)
    assert float(routed[:impulse_day].abs().max()) == 0.0  # nothing before the input
    kernel = gamma_kernel(a, b)
    torch.testing.assert_close(routed[impulse_day:impulse_day + UH_LENGTH], kernel.T)
    assert float(routed[impulse_day + UH_LENGTH:].abs().max()) == 0.0  # nothing after 15 days


def test_routing_conserves_volume_once_the_hydrograph_has_passed():
    q = torch.rand(200, 4, dtype=torch.float64)
    q[-UH_LENGTH:] = 0.0
    routed = route(q, 1.0, 2.0)
    torch.testing.assert_close(routed.sum(0), q.sum(0))


def test_routing_reproduces_the_reference_routed_flow():
    ref = reference_frame("seq_hbv")
    q = torch.tensor(ref[["Q_unrouted", "Q2"]].to_numpy(), dtype=torch.float64)
    routed = route(q, *ROUTING)
    assert_matches(routed[:, 0], ref["Q_routed"], label="Q_routed")
    assert_matches(routed[:, 1], ref["Q2_routed"], label="Q2_routed")


def test_routing_is_differentiable_in_its_parameters():
    q = torch.rand(60, 2, dtype=torch.float64)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([2.0, 4.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: route(q, a, b), (a, b))
