"""The parameterization network g_w and how its outputs become HBV parameters."""

import torch

from benchmark.models.parameters import HBV_PARAMETERS, ROUTING_PARAMETERS
from benchmark.training.network import ParameterizationLSTM, ParameterLayout

NAMES = ("BETA", "FC", "K0", "BETAET")


def test_outputs_are_in_the_unit_interval_with_the_expected_width():
    layout = ParameterLayout(NAMES, ("BETA", "BETAET"), nmul=3)
    assert layout.n_outputs == 4 * 3 + 2
    net = ParameterizationLSTM(38, 16, layout.n_outputs, dropout=0.5)
    u = net(torch.randn(20, 5, 38))
    assert u.shape == (20, 5, 14)
    assert (u > 0).all() and (u < 1).all()


def test_static_parameters_and_routing_come_from_the_last_day_dynamic_ones_from_every_day():
    layout = ParameterLayout(NAMES, ("BETA",), nmul=2)
    u = torch.rand(6, 3, layout.n_outputs, dtype=torch.float64)
    params, (a, b) = layout.to_physical(u)
    hbv = u[..., :-2].reshape(6, 3, 4, 2)
    beta, fc = HBV_PARAMETERS["BETA"], HBV_PARAMETERS["FC"]
    assert params["BETA"].shape == (6, 3, 2)
    torch.testing.assert_close(params["BETA"], beta.lo + hbv[:, :, 0, :] * (beta.hi - beta.lo))
    assert params["FC"].shape == (3, 2)
    torch.testing.assert_close(params["FC"], fc.lo + hbv[-1, :, 1, :] * (fc.hi - fc.lo))
    ra = ROUTING_PARAMETERS["route_a"]
    torch.testing.assert_close(a, ra.lo + u[-1, :, -2] * (ra.hi - ra.lo))
    assert b.shape == (3,)


def test_single_component_drops_the_component_axis():
    layout = ParameterLayout(NAMES, ("BETA",), nmul=1)
    params, _ = layout.to_physical(torch.rand(4, 2, layout.n_outputs))
    assert params["BETA"].shape == (4, 2)
    assert params["K0"].shape == (2,)


def test_dropconnect_is_seeded_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    net = ParameterizationLSTM(5, 8, 3, dropout=0.5)
    x = torch.randn(10, 2, 5)
    torch.manual_seed(1)
    first = net(x)
    torch.manual_seed(1)
    again = net(x)
    torch.manual_seed(2)
    other = net(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    net.eval()
    assert torch.equal(net(x), net(x))
    assert not torch.equal(net(x), first)


def test_the_improved_adjoint_trains_through_the_eliminated_solve(monkeypatch):
    """δHBV.adj improved (capillary rise) built as training builds it runs the eliminated day solve
    (Newton on SM alone), not the five-storage Newton, and its gradients reach the network."""
    from benchmark.config import load_params
    from tests.paths import DEFAULT_PARAMS
    from benchmark.models.hbv.implicit import HBVImplicitSystem
    from benchmark.models.registry import get_model_spec
    from benchmark.training.network import build_model

    calls = []
    eliminated = HBVImplicitSystem.eliminated

    def counting(self, *args, **kwargs):
        calls.append(self.capillary_rise)
        return eliminated(self, *args, **kwargs)

    monkeypatch.setattr(HBVImplicitSystem, "eliminated", counting)
    torch.manual_seed(0)
    model = build_model(get_model_spec("dhbv_adj_cr"), load_params(DEFAULT_PARAMS), n_inputs=4)
    days, basins = 30, 2
    forcing = torch.stack((10.0 * torch.rand(days, basins), 5.0 + torch.randn(days, basins),
                           torch.full((days, basins), 2.0)), dim=-1)
    out = model(torch.randn(days, basins, 4), forcing)
    out["Q"].square().mean().backward()
    assert calls == [True]
    grads = [p.grad for p in model.network.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
