"""A structure with only the required parts runs through the generic paths of every scheme but
operator splitting (docs/adding-a-model.md): a single linear reservoir, whose backward-Euler day
has the closed form S_t = (S_(t-1) + P_t) / (1 + K) and whose explicit Euler day is
S_t = S_(t-1) + P_t - K S_(t-1)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from benchmark.errors import ConfigError
from benchmark.models import simulate
from benchmark.models.base import ParameterSpec, Structure, parameter_table
from tests.models_reference import forcing

TABLE = parameter_table(ParameterSpec("K", 0.01, 0.9, "1/d", "recession rate"))


@dataclass(frozen=True)
class LinearReservoir(Structure):
    """dS/dt = P - K S, Q = K S (mm, mm/day); no snow, no ET."""

    name = "linear"
    storages = ("S",)
    reported_fluxes = ("Q", "ET")
    routed = False

    @property
    def parameters(self):
        return TABLE

    def fluxes(self, S, x, p):
        q = p["K"] * S[..., 0]
        return {"P": torch.broadcast_to(x.P, q.shape), "Q": q, "ET": torch.zeros_like(q)}

    def tendency(self, f):
        return (f["P"] - f["Q"]).unsqueeze(-1)

    def outflow(self, f):
        return f["Q"]


def _run(scheme: str, k: torch.Tensor, **options):
    f = forcing(torch.float64, days=slice(0, 200), n_basins=2)
    return f, simulate(f, {"K": k}, structure=LinearReservoir(), scheme=scheme, initial_state=10.0, **options)


def test_backward_euler_through_the_dense_system_is_the_closed_form_and_its_adjoint_the_derivative():
    k = torch.tensor([0.2, 0.6], dtype=torch.float64, requires_grad=True)
    f, out = _run("implicit", k, solver_options={"tol": 1e-12})
    expected, s = [], torch.full((2,), 10.0, dtype=torch.float64)
    for t in range(f.shape[0]):
        s = (s + f[t, :, 0]) / (1.0 + k.detach())
        expected.append(s)
    torch.testing.assert_close(out["states"][:, :, 0, 0], torch.stack(expected), rtol=1e-12, atol=1e-12)
    out["Q"].sum().backward()
    h = 1e-6
    with torch.no_grad():
        plus = _run("implicit", k.detach() + torch.tensor([h, 0.0], dtype=torch.float64))[1]["Q"].sum()
        minus = _run("implicit", k.detach() - torch.tensor([h, 0.0], dtype=torch.float64))[1]["Q"].sum()
    assert abs(float(k.grad[0]) - float(plus - minus) / (2 * h)) <= 1e-6 * abs(float(k.grad[0]))


def test_explicit_euler_through_the_right_hand_side():
    k = torch.tensor([0.2, 0.6], dtype=torch.float64)
    f, out = _run("euler", k)
    s = torch.full((2,), 10.0, dtype=torch.float64)
    for t in range(f.shape[0]):
        s = s + f[t, :, 0] - k * s
    torch.testing.assert_close(out["final_state"][:, 0, 0], s, rtol=1e-12, atol=1e-12)


def test_operator_splitting_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="cannot run linear: linear has no operator-split daily update"):
        _run("sequential", torch.tensor([0.2, 0.6], dtype=torch.float64))
