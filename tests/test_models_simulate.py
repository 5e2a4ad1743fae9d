"""The plain simulation API (benchmark.models.simulate) and the model registry."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.models import MODEL_NAMES, get_model_spec, simulate
from benchmark.models.parameters import HBV_PARAMETERS
from benchmark.models.routing import route
from tests.models_reference import ROUTING, forcing, mid_params

N_DAYS, N_BASINS, NMUL = 90, 3, 4
FAST_SCHEMES = [("sequential", 1), ("euler", 6), ("rk4", 1)]
ALL_SCHEMES = FAST_SCHEMES + [("implicit", 1)]


def real_forcing(dtype=torch.float64) -> torch.Tensor:
    """90 winter-spring days of basin 01022500, shifted per basin so the basins differ."""
    return torch.stack([forcing(dtype, days=slice(120 + 30 * i, 120 + 30 * i + N_DAYS))[:, 0]
                        for i in range(N_BASINS)], dim=1)


def random_params(shape, seed=0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: spec.scale(torch.rand(shape, generator=g, dtype=dtype)) for name, spec in HBV_PARAMETERS.items()}


@pytest.mark.parametrize(("scheme", "substeps"), ALL_SCHEMES)
def test_output_shapes_for_several_components(scheme, substeps):
    params = random_params((N_BASINS, NMUL))
    params["BETA"] = random_params((N_DAYS, N_BASINS, NMUL), seed=1)["BETA"]  # dynamic
    out = simulate(real_forcing(), params, scheme=scheme, substeps=substeps, nmul=NMUL,
                   capillary_rise=True, routing=(torch.full((N_BASINS,), 1.45), 3.25))
    for key in ("Q", "Q_unrouted", "Q0", "Q1", "Q2", "ET", "recharge", "excess", "perc", "capillary"):
        assert out[key].shape == (N_DAYS, N_BASINS), key
        assert torch.isfinite(out[key]).all(), key
    assert out["states"].shape == (N_DAYS, N_BASINS, NMUL, 5)
    assert out["final_state"].shape == (N_BASINS, NMUL, 5)
    torch.testing.assert_close(out["final_state"], out["states"][-1])
    assert isinstance(out["stats"], dict)


@pytest.mark.parametrize(("scheme", "substeps"), ALL_SCHEMES)
def test_components_are_averaged_before_routing(scheme, substeps):
    f = real_forcing()
    params = random_params((N_BASINS, NMUL))
    params["BETAET"] = random_params((N_DAYS, N_BASINS, NMUL), seed=2)["BETAET"]
    a = torch.tensor([0.5, 1.45, 2.5], dtype=torch.float64)
    b = torch.tensor([1.0, 3.25, 6.0], dtype=torch.float64)
    together = simulate(f, params, scheme=scheme, substeps=substeps, nmul=NMUL, routing=(a, b))
    singles = [simulate(f, {n: v[..., k] for n, v in params.items()}, scheme=scheme, substeps=substeps)
               for k in range(NMUL)]
    for key in ("Q0", "Q1", "Q2", "ET", "Q_unrouted"):
        torch.testing.assert_close(together[key], torch.stack([s[key] for s in singles]).mean(0))
    torch.testing.assert_close(together["Q"], route(together["Q_unrouted"], a, b))
    for k, single in enumerate(singles):
        torch.testing.assert_close(together["states"][:, :, k], single["states"][:, :, 0])


def test_dynamic_parameters_constant_in_time_equal_static_ones():
    f = real_forcing()
    static = random_params((N_BASINS, NMUL))
    dynamic = {n: v.expand(N_DAYS, -1, -1) if n in ("BETA", "BETAET", "FC") else v for n, v in static.items()}
    a = simulate(f, static, scheme="sequential", nmul=NMUL, routing=ROUTING)
    b = simulate(f, dynamic, scheme="sequential", nmul=NMUL, routing=ROUTING)
    torch.testing.assert_close(a["Q"], b["Q"], rtol=0, atol=0)


def test_no_routing_returns_the_unrouted_flow_and_floats_broadcast():
    f = real_forcing()
    params = {n: float(v[0]) for n, v in mid_params().items()}  # plain floats: same in every basin
    out = simulate(f, params, scheme="sequential", routing=None)
    torch.testing.assert_close(out["Q"], out["Q_unrouted"], rtol=0, atol=0)
    torch.testing.assert_close(out["Q_unrouted"], out["Q0"] + out["Q1"] + out["Q2"])


def test_initial_state_layouts():
    f = real_forcing()
    params = random_params((N_BASINS, 2))
    s0 = torch.tensor([10.0, 1.0, 150.0, 5.0, 40.0], dtype=torch.float64)
    full = simulate(f, params, scheme="sequential", nmul=2, initial_state=s0.expand(N_BASINS, 2, 5))
    per_basin = simulate(f, params, scheme="sequential", nmul=2, initial_state=s0.expand(N_BASINS, 5))
    torch.testing.assert_close(full["states"], per_basin["states"], rtol=0, atol=0)
    empty = simulate(f, params, scheme="sequential", nmul=2)
    zero = simulate(f, params, scheme="sequential", nmul=2, initial_state=0.0)
    torch.testing.assert_close(empty["states"], zero["states"], rtol=0, atol=0)
    assert not torch.equal(empty["states"], full["states"])


@pytest.mark.parametrize(("scheme", "substeps"), ALL_SCHEMES)
def test_gradients_reach_every_used_parameter_and_routing(scheme, substeps):
    f = real_forcing(torch.float32)
    u = {n: torch.full((N_BASINS, NMUL), 0.5, requires_grad=True) for n in HBV_PARAMETERS if n != "NDC"}
    ra = torch.full((N_BASINS,), 0.5, requires_grad=True)
    rb = torch.full((N_BASINS,), 0.5, requires_grad=True)
    params = {n: HBV_PARAMETERS[n].scale(v) for n, v in u.items()}
    s0 = torch.tensor([50.0, 2.0, 300.0, 150.0, 40.0])  # SUZ above UZL so that K0 matters
    out = simulate(f, params, scheme=scheme, substeps=substeps, nmul=NMUL, capillary_rise=True,
                   routing=(ra * 2.9, rb * 6.5), initial_state=s0.expand(N_BASINS, 5))
    out["Q"].sum().backward()
    for name, leaf in {**u, "route_a": ra, "route_b": rb}.items():
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), name
        assert float(leaf.grad.abs().sum()) > 0.0, name


# ---- errors ----------------------------------------------------------------------------


def test_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown scheme 'midpoint'.*sequential"):
        simulate(real_forcing(), mid_params(n_basins=N_BASINS), scheme="midpoint")


def test_wrong_parameter_shape_names_the_parameter():
    params = mid_params(n_basins=N_BASINS)
    params["FC"] = torch.full((N_BASINS, 2), 500.0, dtype=torch.float64)
    with pytest.raises(ConfigError, match=r"'FC' has shape \(3, 2\); expected \[3\] \(static\) or \[90, 3\]"):
        simulate(real_forcing(), params, scheme="sequential")
    params = {n: v.unsqueeze(-1).expand(-1, 4) for n, v in params.items() if n != "FC"}
    params["FC"] = torch.full((N_DAYS, N_BASINS), 500.0, dtype=torch.float64)  # nmul > 1 needs [T, B, nmul]
    with pytest.raises(ConfigError, match=r"'FC' has shape \(90, 3\); expected \[3, 4\] \(static\) or \[90, 3, 4\]"):
        simulate(real_forcing(), params, scheme="sequential", nmul=4)


def test_missing_parameter_is_named():
    params = mid_params(n_basins=N_BASINS)
    del params["K2"]
    with pytest.raises(ConfigError, match=r"missing HBV parameter\(s\) \['K2'\]"):
        simulate(real_forcing(), params, scheme="sequential")
    params = mid_params(n_basins=N_BASINS)
    del params["C"]
    with pytest.raises(ConfigError, match=r"\['C'\]"):
        simulate(real_forcing(), params, scheme="sequential", capillary_rise=True)


@pytest.mark.parametrize("bad", [torch.zeros(10, 3), torch.zeros(10, 3, 2), [[1.0, 2.0, 3.0]]])
def test_forcing_must_be_days_basins_three(bad):
    with pytest.raises(ConfigError, match=r"forcing must be a tensor \[T, B, 3\]"):
        simulate(bad, mid_params(), scheme="sequential")


def test_adjoint_gradient_is_only_for_the_implicit_scheme():
    with pytest.raises(ConfigError, match="euler scheme supports only gradient='autograd', got 'adjoint'"):
        simulate(real_forcing(), mid_params(n_basins=N_BASINS), scheme="euler", gradient="adjoint")
    with pytest.raises(ConfigError, match="sequential scheme supports only gradient='manual' or 'autograd'"):
        simulate(real_forcing(), mid_params(n_basins=N_BASINS), scheme="sequential", gradient="adjoint")


def test_bad_routing_and_initial_state_are_config_errors():
    f, params = real_forcing(), mid_params(n_basins=N_BASINS)
    with pytest.raises(ConfigError, match="routing parameter a has shape"):
        simulate(f, params, scheme="sequential", routing=(torch.ones(2), 1.0))
    with pytest.raises(ConfigError, match="routing must be"):
        simulate(f, params, scheme="sequential", routing=1.0)
    with pytest.raises(ConfigError, match="initial_state has shape"):
        simulate(f, params, scheme="sequential", initial_state=torch.zeros(N_BASINS, 4))


@pytest.mark.parametrize("scheme", ["sequential", "implicit"])
def test_unknown_solver_option_is_a_config_error_for_every_scheme(scheme):
    with pytest.raises(ConfigError, match=r"unknown solver option\(s\) \['tolerance'\]"):
        simulate(real_forcing(), mid_params(n_basins=N_BASINS), scheme=scheme, solver_options={"tolerance": 1e-6})


def test_newton_options_are_accepted_and_ignored_by_the_non_implicit_schemes():
    # the trainer passes the same solver options whatever the scheme
    f, params = real_forcing(), mid_params(n_basins=N_BASINS)
    plain = simulate(f, params, scheme="sequential")
    with_newton = simulate(f, params, scheme="sequential", solver_options={"tol": 1e-6, "max_iter": 5})
    torch.testing.assert_close(plain["Q"], with_newton["Q"], rtol=0, atol=0)


def test_sequential_backward_switch_gives_the_same_gradients():
    f = real_forcing()
    grads = []
    for manual in (True, False):
        fc = torch.full((N_BASINS,), 400.0, dtype=torch.float64, requires_grad=True)
        params = {**mid_params(n_basins=N_BASINS), "FC": fc}
        out = simulate(f, params, scheme="sequential", routing=ROUTING, initial_state=torch.full((5,), 20.0),
                       solver_options={"manual_backward": manual})
        out["Q"].sum().backward()
        grads.append(fc.grad)
    assert float(grads[1].abs().min()) > 0.0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=0.0)


# ---- registry ----------------------------------------------------------------------------


def test_registry_names_and_variants():
    assert set(MODEL_NAMES) == {"dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr", "dhbv_euler1d",
                                "dhbv_euler4h", "dhbv_euler1h", "dhbv_rk4", "gr4j", "gr4j_adj"}
    dhbv, adj = get_model_spec("dhbv"), get_model_spec("dhbv_adj")
    # δHBV's gradient is reverse mode through the daily update, written by hand (same values as autograd)
    assert (dhbv.scheme, dhbv.gradient, dhbv.dynamic_parameters) == ("sequential", "manual", ("BETA", "BETAET"))
    assert (adj.scheme, adj.gradient, adj.dynamic_parameters) == ("implicit", "adjoint", ("BETA", "BETAET", "FC"))
    assert "C" in get_model_spec("dhbv_cr").parameter_names
    assert "NDC" not in get_model_spec("dhbv_cr").parameter_names  # fixed to 1 in the sequential model
    assert get_model_spec("dhbv_adj_cr").parameter_names[-2:] == ("C", "NDC")
    assert [get_model_spec(n).substeps for n in ("dhbv_euler1d", "dhbv_euler4h", "dhbv_euler1h")] == [1, 6, 24]
    assert get_model_spec("dhbv_rk4").scheme == "rk4"
    for name in MODEL_NAMES:
        spec = get_model_spec(name)
        assert set(spec.dynamic_parameters) <= set(spec.parameter_names)
        assert set(spec.static_parameters) | set(spec.dynamic_parameters) == set(spec.parameter_names)
    with pytest.raises(Exception):
        dhbv.scheme = "rk4"  # frozen


def test_a_registry_row_is_checked_when_it_is_defined():
    from benchmark.models.hbv import HBV
    from benchmark.models.registry import ModelSpec

    row = dict(name="x", structure=HBV(), dynamic_parameters=("BETA",), label="x", colour="#000000", description="x")
    with pytest.raises(ConfigError, match="model x: the euler scheme supports only gradient='autograd'"):
        ModelSpec(scheme="euler", gradient="adjoint", **row)
    with pytest.raises(ConfigError, match="model x: the sequential scheme cannot run HBV with capillary rise"):
        ModelSpec(**{**row, "structure": HBV(capillary_rise=True, learn_ndc=True)}, scheme="sequential",
                  gradient="manual")
    with pytest.raises(ConfigError, match=r"model x: dynamic parameters \['X1'\] are not parameters of HBV"):
        ModelSpec(**{**row, "dynamic_parameters": ("X1",)}, scheme="implicit", gradient="adjoint")


def test_labels_and_colours_are_one_per_model():
    from benchmark.models.registry import MODEL_SPECS

    specs = MODEL_SPECS.values()
    assert len({s.label for s in specs}) == len({s.colour for s in specs}) == len(MODEL_SPECS)
    assert get_model_spec("dhbv_adj").counterpart == "dhbv"
    assert get_model_spec("dhbv_adj").scheme_text == "implicit backward Euler + adjoint"
    assert get_model_spec("dhbv_euler4h").time_step == "4 h"


def test_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model 'hbv_adj'.*dhbv, dhbv_adj, dhbv_cr"):
        get_model_spec("hbv_adj")


@pytest.mark.parametrize("name", ["dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr", "dhbv_euler4h", "dhbv_rk4"])
def test_registry_variants_run_through_simulate(name):
    spec = get_model_spec(name)
    f = real_forcing()
    params = {n: v for n, v in random_params((N_DAYS, N_BASINS)).items() if n in spec.dynamic_parameters}
    params.update({n: v for n, v in random_params((N_BASINS,), seed=3).items() if n in spec.static_parameters})
    out = simulate(f, params, routing=ROUTING, **spec.simulate_options())
    assert out["Q"].shape == (N_DAYS, N_BASINS) and torch.isfinite(out["Q"]).all()
