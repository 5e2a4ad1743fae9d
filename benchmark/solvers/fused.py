"""Fused daily kernels: one compiled call per simulated day (see docs/schemes.md#fused-daily-kernels).

A training step of a differentiable bucket model is dispatch-bound: each simulated day is a few
hundred tiny elementwise operations over the batch (basins x components), each a separate
dispatch on a CPU and a separate kernel launch on a GPU, while the arithmetic of a day is a few
hundred floating-point operations per system. Every operation of a day is elementwise per
system, so a whole day is one elementwise function of the day's inputs: ``torch.compile``
(inductor: C++ with OpenMP on a CPU, Triton on CUDA) fuses it into one or a few kernels.

Besides the days, the whole-sequence elementwise passes of the adjoint (the Jacobian
coefficients of all days, the right-hand side and its vector-Jacobian product) are compiled
too: inductor fuses their chains of elementwise operations into a few loops over memory.

The structures write their fused days as plain Python functions of tensors (HBV:
:class:`~benchmark.models.hbv.sequential.FusedSequentialFunction`, the fused forms in
:mod:`benchmark.models.hbv.implicit`); this module compiles them. Conventions:

- a kernel's identity (``key``) is hashable Python data: a structure (a frozen dataclass, equal
  by value), flags, layouts; its tensors are arguments, never attributes of a per-call object;
- a day function takes stacked tensors (storages ``[n, *batch]``, the day's dynamic inputs
  ``[k, *batch]``) and returns stacked tensors, so that one call allocates a couple of outputs
  instead of one tensor per storage or flux;
- it contains no host synchronisation and no Python branch on tensor values; Python constants
  (a configuration flag, a number of Newton updates) are part of the kernel's identity;
- the same function run eagerly is the reference: the tests compare the compiled path with the
  uncompiled one to rounding (inductor contracts multiply-adds and vectorises transcendental
  functions, so the results agree to ~1e-12 in float64, not bitwise).

Compiled code is cached in memory per process and by inductor on disk
(``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_<user>``): the first process
compiles each kernel (tens of seconds on a 2-core CPU), later processes load it (about a second).
"""

from __future__ import annotations

from typing import Callable, Hashable, NamedTuple, Sequence

import torch

RECOMPILE_LIMIT = 64
"""Compiled variants kept per Python function (dynamo's default of 8 is shared by every shape and
constant a function is called with: batch shapes x configurations x dtypes)."""

_KERNELS: dict[Hashable, Callable] = {}


def kernel(key: Hashable, function: Callable, fullgraph: bool = True) -> Callable:
    """``torch.compile(function)`` (static shapes; one graph unless ``fullgraph`` is False), built once per ``key``.

    Parameters
    ----------
    key
        Names everything about ``function`` that is not a tensor argument (structure,
        configuration, Newton updates), so two different day functions never share a kernel.
    function
        The day function; its tensor arguments may be nested in tuples.
    """
    compiled = _KERNELS.get(key)
    if compiled is None:
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        # static shapes: a training run has one batch shape; symbolic shapes measured 35 % slower
        # per step and three times longer to compile on the 2-core CPU
        compiled = torch.compile(function, dynamic=False, fullgraph=fullgraph)
        _KERNELS[key] = compiled
    return compiled


def fused_or_eager(key: Hashable, function: Callable, fused: bool) -> Callable:
    """The compiled kernel of ``function`` when ``fused``, else ``function`` itself (the reference)."""
    return kernel(key, function) if fused else function


# ---------------------------------------------------------------------------------------------
# Per-day constants as one table: a sequence's day inputs in one tensor, one row per day.

class DayTable(NamedTuple):
    """A named tuple of per-day constants split for fused day functions.

    ``table`` stacks the entries with a day axis, broadcast to the batch (``[T, k, *batch]``,
    ``None`` if there are none); ``statics`` stacks the tensor entries without one, broadcast to the
    batch (``[s, *batch]``, ``None`` if there are none: one argument instead of one per entry,
    since a compiled call checks each tensor argument before it runs); ``layout``
    says for each field where it comes from: ``"timed"``, ``"static"``, or ``("value", v)`` for
    a Python number or ``None`` (part of the kernel's identity).
    """

    table: torch.Tensor | None
    statics: torch.Tensor | None
    layout: tuple


def day_table(consts: NamedTuple, batch: Sequence[int]) -> DayTable:
    """Split ``consts`` (entries ``[T, *batch]``, ``[1, *batch]`` (static), numbers or ``None``)."""
    timed, statics, layout = [], [], []
    for v in consts:
        if not isinstance(v, torch.Tensor):
            layout.append(("value", v))
        elif v.shape[0] == 1:
            statics.append(torch.broadcast_to(v[0], tuple(batch)))
            layout.append("static")
        else:
            timed.append(torch.broadcast_to(v, v.shape[:1] + tuple(batch)))
            layout.append("timed")
    table = torch.stack(timed, dim=1) if timed else None
    return DayTable(table, torch.stack(statics) if statics else None, tuple(layout))


def unpack_day(kind: type, layout: tuple, row: torch.Tensor | None, statics: torch.Tensor | None) -> NamedTuple:
    """One day's ``kind`` (a named tuple class) from its row of :attr:`DayTable.table` and the statics."""
    rows = iter(row.unbind(0)) if row is not None else iter(())
    fixed = iter(statics.unbind(0)) if statics is not None else iter(())
    values = [next(rows) if where == "timed" else next(fixed) if where == "static" else where[1] for where in layout]
    return kind(*values)
