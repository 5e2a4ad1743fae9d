"""The benchmark's models, one row each: structure, time scheme, gradient method, dynamic parameters,
label and colour.

The names are what users and configs use (``hbvbench train --model dhbv_adj``). Everything that
is said about a model — by the network (its parameters), the trainer, the report (label,
colour, scheme), ``hbvbench perf`` and the tracking tags — is read from its
:class:`ModelSpec` here; nothing else restates it. A row is checked when it is defined: a
structure, scheme and gradient method that do not go together raise
:class:`~benchmark.errors.ConfigError`.

Song et al. (2024): δHBV (sequential) learns β and γ (BETA, BETAET) as dynamic parameters,
δHBV.adj (implicit + adjoint) β, γ and FC. The explicit-scheme variants of Table A2 are δHBV
with another time scheme, so they keep δHBV's dynamic parameters. The sequential improved
model fixes θNDC to 1; the implicit improved model learns it. Rows are in the paper's order
(Table 1, then Table A2), then the GR4J pair (docs/gr4j.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.errors import ConfigError
from benchmark.models.base import Structure
from benchmark.models.gr4j import GR4J
from benchmark.models.hbv import HBV
from benchmark.solvers import make_scheme
from benchmark.solvers.base import TimeScheme


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model.

    Attributes
    ----------
    name
        Registry name.
    structure
        The model structure (:class:`~benchmark.models.base.Structure`) in its configuration.
    scheme
        ``"sequential"``, ``"euler"``, ``"rk4"`` or ``"implicit"``.
    gradient
        ``"manual"`` (hand-written reverse pass), ``"autograd"`` or ``"adjoint"``.
    dynamic_parameters
        The subset of the structure's parameters that varies in time.
    label
        Display label (the paper's notation).
    colour
        The model's one colour in every figure (hex).
    description
        One line for tables and reports.
    substeps
        Time steps per day (explicit Euler: 1, 6 = 4 h, 24 = 1 h; otherwise 1).
    counterpart
        The model this one is compared with basin by basin (an adjoint model's sequential twin).
    """

    name: str
    structure: Structure
    scheme: str
    gradient: str
    dynamic_parameters: tuple[str, ...]
    label: str
    colour: str
    description: str
    substeps: int = 1
    counterpart: str | None = None

    def __post_init__(self) -> None:
        stray = [n for n in self.dynamic_parameters if n not in self.parameter_names]
        if stray:
            raise ConfigError(f"model {self.name}: dynamic parameters {stray} are not parameters of "
                              f"{self.structure.label} ({', '.join(self.parameter_names)})")
        try:
            self.time_scheme().check(self.structure, self.gradient)
        except ConfigError as error:
            raise ConfigError(f"model {self.name}: {error}") from None

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Physical parameters the network provides, in its output order (the structure's)."""
        return self.structure.parameter_names

    @property
    def static_parameters(self) -> tuple[str, ...]:
        """Parameters constant in time (``parameter_names`` minus ``dynamic_parameters``)."""
        return tuple(n for n in self.parameter_names if n not in self.dynamic_parameters)

    @property
    def capillary_rise(self) -> bool | None:
        """HBV's capillary-rise option (None for other structures)."""
        return getattr(self.structure, "capillary_rise", None)

    def time_scheme(self, newton: Any = None, compile: bool = False) -> TimeScheme:
        """The time scheme object, with Newton options for the implicit scheme."""
        return make_scheme(self.scheme, substeps=self.substeps, compile=compile, newton=newton)

    @property
    def scheme_text(self) -> str:
        """The numerical scheme as a table cell, e.g. ``implicit backward Euler + adjoint``."""
        text = self.time_scheme().description
        return text + " + adjoint" if self.gradient == "adjoint" else text

    @property
    def time_step(self) -> str:
        """The time step as a table cell (``1 d``, ``4 h``, ``1 h``)."""
        return self.time_scheme().time_step

    def simulate_options(self) -> dict[str, object]:
        """Keyword arguments of :func:`benchmark.models.simulate` fixed by this model."""
        return {
            "structure": self.structure,
            "scheme": self.scheme,
            "substeps": self.substeps,
            "gradient": self.gradient,
        }


_SEQUENTIAL_DYNAMIC = ("BETA", "BETAET")
_ADJOINT_DYNAMIC = ("BETA", "BETAET", "FC")
_GR4J_DYNAMIC = ("X1", "X2")
"""GR4J has no shape parameters: the production store capacity varies in time as δHBV.adj's FC does
(seasonal root-zone capacity), and the groundwater exchange with the season's aquifer level."""

MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("dhbv", HBV(), "sequential", "manual", _SEQUENTIAL_DYNAMIC, "δHBV", "#0072B2",
                  "δHBV: sequential operator splitting (Feng et al. 2022), 1 d"),
        ModelSpec("dhbv_adj", HBV(), "implicit", "adjoint", _ADJOINT_DYNAMIC, "δHBV.adj", "#D55E00",
                  "δHBV.adj: implicit backward Euler, adjoint gradients", counterpart="dhbv"),
        ModelSpec("dhbv_cr", HBV(capillary_rise=True), "sequential", "manual", _SEQUENTIAL_DYNAMIC,
                  "δHBV improved", "#56B4E9", "δHBV improved: sequential with capillary rise (θNDC = 1)"),
        ModelSpec("dhbv_adj_cr", HBV(capillary_rise=True, learn_ndc=True), "implicit", "adjoint", _ADJOINT_DYNAMIC,
                  "δHBV.adj improved", "#E69F00", "δHBV.adj improved: implicit with capillary rise, adjoint gradients",
                  counterpart="dhbv_cr"),
        ModelSpec("dhbv_euler1d", HBV(), "euler", "autograd", _SEQUENTIAL_DYNAMIC, "δHBV Euler 1 d", "#9467BD",
                  "δHBV with explicit Euler, 1 d steps", substeps=1),
        ModelSpec("dhbv_euler4h", HBV(), "euler", "autograd", _SEQUENTIAL_DYNAMIC, "δHBV Euler 4 h", "#CC79A7",
                  "δHBV with explicit Euler, 4 h steps", substeps=6),
        ModelSpec("dhbv_euler1h", HBV(), "euler", "autograd", _SEQUENTIAL_DYNAMIC, "δHBV Euler 1 h", "#BCBD22",
                  "δHBV with explicit Euler, 1 h steps", substeps=24),
        ModelSpec("dhbv_rk4", HBV(), "rk4", "autograd", _SEQUENTIAL_DYNAMIC, "δHBV RK4 1 d", "#7F7F7F",
                  "δHBV with classical Runge-Kutta 4, 1 d steps"),
        ModelSpec("gr4j", GR4J(), "sequential", "autograd", _GR4J_DYNAMIC, "δGR4J", "#332288",
                  "δGR4J: GR4J (state-space, Nash-cascade unit hydrographs, HBV snow), daily operator splitting"),
        ModelSpec("gr4j_adj", GR4J(), "implicit", "adjoint", _GR4J_DYNAMIC, "δGR4J.adj", "#AA4499",
                  "δGR4J.adj: GR4J by implicit backward Euler, adjoint gradients (torch.func Jacobian)",
                  counterpart="gr4j"),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name``.

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the known names.
    """
    try:
        return MODEL_SPECS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
