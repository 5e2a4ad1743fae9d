"""Named HBV variants: which time scheme, gradient method, parameters and dynamic parameters.

The names are what users and configs use (``hbvbench train --model dhbv_adj``). A
:class:`ModelSpec` holds everything :func:`benchmark.models.simulate` needs besides the data
and the parameter values; :meth:`ModelSpec.simulate_options` gives those keyword arguments.

Song et al. (2024): δHBV (sequential) learns β and γ (BETA, BETAET) as dynamic parameters,
δHBV.adj (implicit + adjoint) β, γ and FC. The explicit-scheme variants of Table A2 are δHBV
with another time scheme, so they keep δHBV's dynamic parameters. The sequential improved
model fixes θNDC to 1; the implicit improved model learns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import ConfigError
from benchmark.models.parameters import parameter_names

_SEQUENTIAL_DYNAMIC = ("BETA", "BETAET")
_ADJOINT_DYNAMIC = ("BETA", "BETAET", "FC")


@dataclass(frozen=True)
class ModelSpec:
    """One registered HBV variant.

    Attributes
    ----------
    name
        Registry name.
    scheme
        ``"sequential"``, ``"euler"``, ``"rk4"`` or ``"implicit"``.
    substeps
        Time steps per day (explicit Euler: 1, 6 = 4 h, 24 = 1 h; otherwise 1).
    capillary_rise
        Whether the "improved" capillary-rise flux is on.
    gradient
        ``"autograd"`` or ``"adjoint"`` (implicit scheme).
    parameter_names
        Physical HBV parameters the network provides, in a fixed order.
    dynamic_parameters
        The subset of ``parameter_names`` that varies in time.
    description
        One line for tables and reports.
    """

    name: str
    scheme: str
    substeps: int
    capillary_rise: bool
    gradient: str
    parameter_names: tuple[str, ...]
    dynamic_parameters: tuple[str, ...]
    description: str

    @property
    def static_parameters(self) -> tuple[str, ...]:
        """Parameters constant in time (``parameter_names`` minus ``dynamic_parameters``)."""
        return tuple(n for n in self.parameter_names if n not in self.dynamic_parameters)

    def simulate_options(self) -> dict[str, object]:
        """Keyword arguments of :func:`benchmark.models.simulate` fixed by this variant."""
        return {
            "scheme": self.scheme,
            "substeps": self.substeps,
            "capillary_rise": self.capillary_rise,
            "gradient": self.gradient,
        }


def _spec(name: str, scheme: str, *, substeps: int = 1, capillary_rise: bool = False,
          description: str) -> ModelSpec:
    implicit = scheme == "implicit"
    return ModelSpec(
        name=name,
        scheme=scheme,
        substeps=substeps,
        capillary_rise=capillary_rise,
        gradient="adjoint" if implicit else "autograd",
        parameter_names=parameter_names(capillary_rise=capillary_rise, learn_ndc=implicit),
        dynamic_parameters=_ADJOINT_DYNAMIC if implicit else _SEQUENTIAL_DYNAMIC,
        description=description,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("dhbv", "sequential", description="δHBV: sequential operator splitting (Feng et al. 2022), 1 d"),
        _spec("dhbv_cr", "sequential", capillary_rise=True,
              description="δHBV improved: sequential with capillary rise (θNDC = 1)"),
        _spec("dhbv_adj", "implicit", description="δHBV.adj: implicit backward Euler, adjoint gradients"),
        _spec("dhbv_adj_cr", "implicit", capillary_rise=True,
              description="δHBV.adj improved: implicit with capillary rise, adjoint gradients"),
        _spec("dhbv_euler1d", "euler", substeps=1, description="δHBV with explicit Euler, 1 d steps"),
        _spec("dhbv_euler4h", "euler", substeps=6, description="δHBV with explicit Euler, 4 h steps"),
        _spec("dhbv_euler1h", "euler", substeps=24, description="δHBV with explicit Euler, 1 h steps"),
        _spec("dhbv_rk4", "rk4", substeps=1, description="δHBV with classical Runge-Kutta 4, 1 d steps"),
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
