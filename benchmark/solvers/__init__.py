"""Time-stepping schemes for the HBV ODE of :mod:`benchmark.models.hbv`.

- :mod:`~benchmark.solvers.sequential`: Feng et al. (2022) operator splitting (δHBV);
- :mod:`~benchmark.solvers.explicit`: explicit Euler with sub-daily steps and RK4;
- :mod:`~benchmark.solvers.implicit`: backward Euler with Newton and the discrete adjoint.

Each takes forcing ``[T, ...]``, parameters static ``[...]`` or dynamic ``[T, ...]`` and
initial storages ``[..., 5]``, and returns the end-of-day storages ``[T, ..., 5]``.
"""

from benchmark.solvers.explicit import integrate_explicit
from benchmark.solvers.sequential import integrate_sequential

__all__ = ["integrate_explicit", "integrate_sequential", "integrate_backward_euler"]


def __getattr__(name: str):
    # imported lazily: the implicit solver is the heaviest module and not needed by the others
    if name == "integrate_backward_euler":
        from benchmark.solvers.implicit import integrate_backward_euler

        return integrate_backward_euler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
