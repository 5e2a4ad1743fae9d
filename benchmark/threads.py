"""How many CPU threads torch may use in this process: a budget shared by parallel workers.

Several hbvbench processes on one machine (``hbvbench tune --workers N``, ``torchrun
--nproc-per-node N``, ``dvc queue start -j N``) each start with torch's default of one
intra-op thread per core. Together they oversubscribe the cores, and the small per-day
operations of the HBV solvers then spend their time waiting for each other's threads: on a
2-core machine a training step of two such processes ran several times slower than with one
thread each. The budget gives each process its share.

Precedence (first match wins):

1. ``hbvbench --threads N`` (or ``hbvbench <command> --threads N``);
2. ``train.threads`` in ``params.yaml`` (``dvc exp run -S train.threads=1``; the way to budget
   ``dvc queue start -j N``, which a stage cannot detect);
3. automatic, ``cores // workers`` (at least 1), when the process knows it is one of
   ``workers`` processes: a tuning worker of ``hbvbench tune --workers N``, or a rank of
   ``torchrun`` (its ``LOCAL_WORLD_SIZE``; this replaces the ``OMP_NUM_THREADS=1`` torchrun
   sets by default, which leaves all but one core per rank idle on a larger machine);
4. torch's default (``OMP_NUM_THREADS`` when set, else one thread per core).

``cores`` is the number of CPUs this process may run on (its affinity mask). The same number
is given to torch's inter-op pool when it can still be set (before any parallel work).
Thread counts change speed; results only at the level of floating-point rounding (the
order of parallel sums). Training runs record theirs as the MLflow param ``torch_threads``.

Measured with ``.ci/thread_budget`` (README, "Threads of parallel workers").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from benchmark.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL_WORLD_SIZE_ENV = "LOCAL_WORLD_SIZE"
"""Set by ``torchrun``: the number of processes of the job on this machine."""


@dataclass(frozen=True)
class ThreadBudget:
    """The thread count chosen for a process and why.

    Attributes
    ----------
    threads
        Intra-op threads for torch; None leaves torch's default.
    source
        ``"--threads"``, ``"train.threads"``, ``"automatic"`` or ``"torch default"``.
    """

    threads: int | None
    source: str

    def describe(self) -> str:
        """E.g. ``"2 threads (train.threads)"``."""
        return f"{self.threads} threads ({self.source})" if self.threads else "torch's default threads"


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def local_workers() -> int | None:
    """Processes of this ``torchrun`` job on this machine (None outside torchrun)."""
    value = os.environ.get(LOCAL_WORLD_SIZE_ENV, "").strip()
    try:
        return int(value) if value else None
    except ValueError:
        raise ConfigError(f"{LOCAL_WORLD_SIZE_ENV}={value!r} is not a whole number") from None


def _check(value: int | None, where: str) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{where} must be >= 1, got {value}")
    return value


def choose(
    explicit: int | None = None,
    configured: int | None = None,
    workers: int | None = None,
    cores: int | None = None,
) -> ThreadBudget:
    """The thread budget of one process (see the module docstring for the precedence).

    Parameters
    ----------
    explicit
        ``--threads`` of the command line.
    configured
        ``train.threads`` of ``params.yaml``.
    workers
        Processes sharing this machine's cores that this process knows of (itself included);
        None or 1: it knows of no other.
    cores
        Default: :func:`available_cores`.

    Returns
    -------
    ThreadBudget

    Raises
    ------
    ConfigError
        A thread or worker count below 1.
    """
    if _check(explicit, "--threads") is not None:
        return ThreadBudget(explicit, "--threads")
    if _check(configured, "train.threads") is not None:
        return ThreadBudget(configured, "train.threads")
    if _check(workers, "the number of workers") is not None and workers > 1:
        cores = cores if cores is not None else available_cores()
        return ThreadBudget(max(1, cores // workers), f"automatic: {cores} cores / {workers} workers")
    return ThreadBudget(None, "torch default")


def apply(budget: ThreadBudget) -> None:
    """Give torch the budget's intra-op (and, while still possible, inter-op) thread count."""
    if budget.threads is None:
        return
    import torch

    torch.set_num_threads(budget.threads)
    try:
        torch.set_num_interop_threads(budget.threads)
    except RuntimeError:  # only settable before the first parallel work of the process
        log.debug("torch inter-op threads already fixed at %d", torch.get_num_interop_threads())


@contextmanager
def applied(budget: ThreadBudget) -> Iterator[ThreadBudget]:
    """:func:`apply` the budget for the body, then restore torch's intra-op thread count."""
    if budget.threads is None:
        yield budget
        return
    import torch

    previous = torch.get_num_threads()
    apply(budget)
    try:
        yield budget
    finally:
        torch.set_num_threads(previous)
