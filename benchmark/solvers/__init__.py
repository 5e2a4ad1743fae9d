"""Time schemes and gradient methods for any model structure of :mod:`benchmark.models`.

- :mod:`~benchmark.solvers.base`: the :class:`TimeScheme` interface, gradient methods and
  which combinations are valid;
- :mod:`~benchmark.solvers.sequential`: operator splitting (the structure's daily update);
- :mod:`~benchmark.solvers.explicit`: explicit Euler with sub-daily steps and RK4;
- :mod:`~benchmark.solvers.implicit`: backward Euler with Newton and the discrete adjoint,
  with :mod:`~benchmark.solvers.dense` (any structure) and :mod:`~benchmark.solvers.newton`.

Each takes forcing ``[T, ...]``, parameters static ``[...]`` or dynamic ``[T, ...]`` and
initial storages ``[..., n]``, and returns the end-of-day storages ``[T, ..., n]``.
:func:`make_scheme` builds a scheme from its name and options. Imports are lazy, so that a
structure's module may import :mod:`benchmark.solvers.newton` without loading the schemes.
"""

from __future__ import annotations

from typing import Any

SCHEME_NAMES: tuple[str, ...] = ("implicit", "sequential", "euler", "rk4")
"""The time schemes by name, as configs and :func:`benchmark.models.simulate` spell them."""

_EXPORTS = {
    "TimeScheme": "benchmark.solvers.base",
    "GRADIENTS": "benchmark.solvers.base",
    "OperatorSplitting": "benchmark.solvers.sequential",
    "ExplicitEuler": "benchmark.solvers.explicit",
    "RungeKutta4": "benchmark.solvers.explicit",
    "BackwardEuler": "benchmark.solvers.implicit",
    "NewtonOptions": "benchmark.solvers.newton",
    "integrate_sequential": "benchmark.solvers.sequential",
    "integrate_explicit": "benchmark.solvers.explicit",
    "integrate_backward_euler": "benchmark.solvers.implicit",
}

__all__ = ["SCHEME_NAMES", "make_scheme", *_EXPORTS]


def make_scheme(name: str, *, substeps: int = 1, compile: bool = False, newton: Any = None) -> Any:
    """The time scheme ``name`` with its own options (and only those).

    Parameters
    ----------
    name
        One of :data:`SCHEME_NAMES`.
    substeps
        Steps per day of the explicit schemes (1 for the others).
    compile
        ``torch.compile`` the daily update (sequential, explicit schemes).
    newton
        Newton options of the implicit scheme (a mapping or ``NewtonOptions``; its own
        ``compile`` field decides for the implicit scheme).

    Raises
    ------
    ConfigError
        For an unknown name or an option the scheme does not have.
    """
    from benchmark.errors import ConfigError
    from benchmark.solvers.explicit import ExplicitEuler, RungeKutta4
    from benchmark.solvers.implicit import BackwardEuler
    from benchmark.solvers.newton import NewtonOptions
    from benchmark.solvers.sequential import OperatorSplitting

    if name not in SCHEME_NAMES:
        raise ConfigError(f"unknown scheme {name!r}; expected one of {SCHEME_NAMES}")
    if name in ("sequential", "implicit") and substeps != 1:
        raise ConfigError(f"the {name} scheme takes one step per day; got substeps={substeps}")
    if name == "sequential":
        return OperatorSplitting(compile=compile)
    if name == "euler":
        return ExplicitEuler(substeps, compile=compile)
    if name == "rk4":
        return RungeKutta4(substeps, compile=compile)
    if newton is not None and not isinstance(newton, NewtonOptions):
        newton = NewtonOptions(**newton)
    return BackwardEuler(newton)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
