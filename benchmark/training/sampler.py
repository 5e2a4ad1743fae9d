"""Seeded minibatches of basins x time windows (docs/training.md#minibatches-and-warm-up).

A minibatch is ``batch_basins`` distinct basins (drawn without replacement; all of them when
there are fewer), each with its own scored window of ``window_days`` days inside the training
period. ``warmup_days`` days of forcing before each window are prepended so the storages
spin up; their output is not scored. The warm-up may reach before the training period (it
uses forcings only, no observations) but not before the start of the data.

The number of iterations per epoch follows the authors' rule: enough that every basin-day
of the training period is drawn with 99 % probability,
``ceil(ln 0.01 / ln(1 - B * rho / (N_basins * N_days)))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.errors import ConfigError


def iterations_per_epoch(batch_basins: int, window_days: int, n_basins: int, n_days: int) -> int:
    """``ceil(ln 0.01 / ln(1 - B rho / (N_basins N_days)))``; 1 when a batch covers everything.

    Parameters
    ----------
    batch_basins
        B, basins per minibatch (capped at ``n_basins``).
    window_days
        rho, scored days per window.
    n_basins, n_days
        Size of the training set (basins, days of the training period).
    """
    coverage = min(batch_basins, n_basins) * window_days / (n_basins * n_days)
    if coverage >= 1.0:
        return 1
    return max(1, math.ceil(math.log(0.01) / math.log(1.0 - coverage)))


@dataclass
class Batch:
    """One minibatch: basin indices and, per basin, the index of the first day of its sequence.

    ``sequence_start[i]`` is the first warm-up day; the scored window starts
    ``warmup_days`` later.
    """

    basins: np.ndarray
    sequence_start: np.ndarray


class WindowSampler:
    """Draws :class:`Batch` es from a numpy ``PCG64`` stream whose state can be saved.

    Parameters
    ----------
    n_basins
        Basins in the training set.
    first_window_start, last_window_start
        Smallest and largest allowed index (into the data's day axis) of the first scored day.
    batch_basins
        Basins per batch (capped at ``n_basins``).
    warmup_days
        Days prepended to each window.
    seed
        Seed of the stream.
    """

    def __init__(
        self,
        n_basins: int,
        first_window_start: int,
        last_window_start: int,
        batch_basins: int,
        warmup_days: int,
        seed: int,
    ) -> None:
        if last_window_start < first_window_start:
            raise ConfigError(
                "the training period is too short for the window: no scored window fits "
                f"(first start index {first_window_start}, last {last_window_start}); "
                "shorten window_days/warmup_days or lengthen the training period"
            )
        if first_window_start < warmup_days:
            raise ConfigError(f"warm-up of {warmup_days} days would start before the data")
        self.n_basins = n_basins
        self.first_window_start = first_window_start
        self.last_window_start = last_window_start
        self.batch_basins = min(batch_basins, n_basins)
        self.warmup_days = warmup_days
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def sample(self) -> Batch:
        """The next minibatch."""
        basins = np.sort(self.rng.choice(self.n_basins, size=self.batch_basins, replace=False))
        starts = self.rng.integers(self.first_window_start, self.last_window_start + 1, size=self.batch_basins)
        return Batch(basins=basins, sequence_start=starts - self.warmup_days)

    def state_dict(self) -> dict[str, Any]:
        """The stream's state (JSON/pickle-able)."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.rng.bit_generator.state = state["bit_generator"]
