"""The parameterization network g_w and the differentiable model it drives (see docs/training.md).

``g_w`` (the paper's eqs. 1 and 24, the authors' code) maps the normalized daily inputs
(3 forcings + 35 attributes) to the parameters of a model structure::

    Linear(n_inputs -> hidden) -> ReLU -> LSTM(hidden, DropConnect) -> Linear -> sigmoid

giving ``n_params * nmul + 2`` values in (0, 1) per day: one per parameter and component
plus the two gamma-routing parameters (none for a structure with its own routing). Static
parameters and routing are read at the LAST day of the window; dynamic ones
(``ModelSpec.dynamic_parameters``) are read every day. Each value ``u`` maps to the physical
range of the structure's parameter table as ``lo + u (hi - lo)``.

DropConnect: as in the authors' ``CudnnLstm``, dropout is applied to the LSTM's input-hidden
and hidden-hidden weight matrices (one mask per forward pass, i.e. per minibatch, shared by
every day), only in training mode. It is implemented with :func:`torch.func.functional_call`
so the fast fused LSTM kernel is still used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn
from torch.func import functional_call

from benchmark.config import Params
from benchmark.models.base import ParameterSpec
from benchmark.models.parameters import HBV_PARAMETERS, ROUTING_PARAMETERS
from benchmark.models.simulate import prepare, simulate

N_ROUTING = 2

INITIAL_STORAGE_MM = 1e-3
"""Every storage at the start of a window (mm), as in the authors' code. The warm-up makes the
value irrelevant to the scored output; it must be > 0 because the sequential scheme takes
``log(SM)`` (a zero soil moisture gives NaN gradients for BETA, BETAET and FC on day 1)."""


class ParameterizationLSTM(nn.Module):
    """``Linear -> ReLU -> LSTM (DropConnect) -> Linear -> sigmoid``.

    Parameters
    ----------
    n_inputs
        Inputs per day (3 forcings + attributes).
    hidden_size
        Width of the linear layer and of the LSTM state.
    n_outputs
        Outputs per day, each in (0, 1).
    dropout
        DropConnect probability on the LSTM weights (0 disables it).
    """

    def __init__(self, n_inputs: int, hidden_size: int, n_outputs: int, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_layer = nn.Linear(n_inputs, hidden_size)
        self.lstm = nn.LSTM(hidden_size, hidden_size)
        self.output_layer = nn.Linear(hidden_size, n_outputs)
        self.dropout = dropout

    def _lstm(self, h: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.dropout > 0.0):
            return self.lstm(h)[0]
        weights = dict(self.lstm.named_parameters())
        for name in ("weight_ih_l0", "weight_hh_l0"):
            weights[name] = nn.functional.dropout(weights[name], p=self.dropout, training=True)
        return functional_call(self.lstm, weights, (h,))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``[days, basins, n_inputs]`` to outputs ``[days, basins, n_outputs]`` in (0, 1)."""
        h = torch.relu(self.input_layer(x))
        return torch.sigmoid(self.output_layer(self._lstm(h)))


@dataclass(frozen=True)
class ParameterLayout:
    """How the network's outputs become physical parameters of a structure and of the routing.

    Output ``k = i * nmul + m`` is parameter ``parameter_names[i]`` of component ``m``; the
    last ``n_routing`` (2, or 0 for a structure with its own routing) outputs are the gamma
    routing parameters ``a`` and ``b``. ``table`` gives the physical ranges (the structure's).
    """

    parameter_names: tuple[str, ...]
    dynamic_parameters: tuple[str, ...]
    nmul: int
    table: Mapping[str, ParameterSpec] = field(default_factory=lambda: HBV_PARAMETERS)
    n_routing: int = N_ROUTING

    def __post_init__(self) -> None:
        unknown = [n for n in self.parameter_names if n not in self.table]
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {', '.join(self.table)}")
        stray = [n for n in self.dynamic_parameters if n not in self.parameter_names]
        if stray:
            raise ValueError(f"dynamic parameters {stray} are not among {self.parameter_names}")

    @property
    def n_outputs(self) -> int:
        """Network outputs per day: ``n_params * nmul + n_routing``."""
        return len(self.parameter_names) * self.nmul + self.n_routing

    def to_physical(self, u: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """Physical parameters from network outputs ``u`` of shape ``[days, basins, n_outputs]``.

        Returns
        -------
        params
            Parameter name -> tensor: static ``[basins, nmul]``, dynamic ``[days, basins, nmul]``
            (without the ``nmul`` axis when ``nmul == 1``, as ``simulate`` expects).
        routing
            ``(a, b)``, each ``[basins]``, from the last day; None without routing outputs.
        """
        n_days, n_basins, _ = u.shape
        n_structure = len(self.parameter_names) * self.nmul
        model = u[..., :n_structure].reshape(n_days, n_basins, len(self.parameter_names), self.nmul)
        params: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.parameter_names):
            values = model[:, :, i, :] if name in self.dynamic_parameters else model[-1, :, i, :]
            values = self.table[name].scale(values)
            params[name] = values.squeeze(-1) if self.nmul == 1 else values
        if not self.n_routing:
            return params, None
        route = u[-1, :, n_structure:]
        routing = (ROUTING_PARAMETERS["route_a"].scale(route[:, 0]), ROUTING_PARAMETERS["route_b"].scale(route[:, 1]))
        return params, routing


class DifferentiableHBV(nn.Module):
    """g_w followed by the model of a :class:`~benchmark.models.registry.ModelSpec` (HBV, GR4J, ...).

    Parameters
    ----------
    spec
        The registry row (structure, scheme, substeps, gradient method, dynamic parameters).
    n_inputs, hidden_size, nmul, dropout
        Network sizes (see :class:`ParameterizationLSTM`).
    solver_options
        Passed to ``simulate`` (e.g. Newton tolerance and iteration cap).
    dynamic_parameters
        Override of ``spec.dynamic_parameters`` (e.g. from tuning); None keeps the spec's.
    """

    def __init__(
        self,
        spec: Any,
        *,
        n_inputs: int,
        hidden_size: int,
        nmul: int,
        dropout: float = 0.5,
        solver_options: dict[str, Any] | None = None,
        dynamic_parameters: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        dynamic = tuple(spec.dynamic_parameters) if dynamic_parameters is None else tuple(dynamic_parameters)
        structure = spec.structure
        self.layout = ParameterLayout(tuple(spec.parameter_names), dynamic, nmul, table=structure.parameters,
                                      n_routing=N_ROUTING if structure.routed else 0)
        self.network = ParameterizationLSTM(n_inputs, hidden_size, self.layout.n_outputs, dropout)
        self.solver_options = dict(solver_options or {})
        prepare(**self._simulate_options())  # an invalid scheme/gradient/option combination fails here

    def _simulate_options(self) -> dict[str, Any]:
        return {**self.spec.simulate_options(), "solver_options": self.solver_options or None}

    def forward(self, inputs: torch.Tensor, forcing: torch.Tensor) -> dict[str, Any]:
        """Simulate a window.

        Parameters
        ----------
        inputs
            Normalized network inputs ``[days, basins, n_inputs]``.
        forcing
            Physical forcing ``[days, basins, 3]``: P (mm/day), mean T (degC), PET (mm/day).

        Returns
        -------
        dict
            ``simulate``'s outputs (``Q``, ``Q_unrouted``, ``Q2``, ``ET`` ... ``[days, basins]``,
            ``stats``) plus ``params`` (physical) and ``routing`` ``(a, b)`` (None for a
            structure with its own routing).
        """
        params, routing = self.layout.to_physical(self.network(inputs))
        out = simulate(forcing, params, routing=routing, nmul=self.layout.nmul, initial_state=INITIAL_STORAGE_MM,
                       **self._simulate_options())
        out = dict(out)
        out["params"] = params
        out["routing"] = routing
        return out


# ----------------------------------------------------------------------------- built from the configuration


def solver_options(params: Params) -> dict[str, Any]:
    """Options passed to ``simulate`` for the implicit solver."""
    options: dict[str, Any] = {"max_iter": params.train.newton_max_iter, "compile": params.fused_kernels}
    if params.train.newton_tol is not None:
        options["tol"] = params.train.newton_tol
    return options


def build_model(spec: Any, params: Params, n_inputs: int) -> DifferentiableHBV:
    """The network + HBV variant sized by the active profile."""
    profile = params.active
    return DifferentiableHBV(
        spec,
        n_inputs=n_inputs,
        hidden_size=profile.hidden_size,
        nmul=profile.nmul,
        dropout=params.train.dropout,
        solver_options=solver_options(params),
        dynamic_parameters=dynamic_parameters(params, spec),
    )


def dynamic_parameters(params: Params, spec: Any) -> tuple[str, ...]:
    """``train.dynamic_parameters`` when set, else the model's own (registry)."""
    override = getattr(params.train, "dynamic_parameters", None)
    return tuple(spec.dynamic_parameters) if override is None else tuple(override)
