"""Data-parallel training under ``torchrun`` with PyTorch DistributedDataParallel.

``hbvbench train --model NAME --distributed``, started by ``torchrun`` (one process per rank;
``--nnodes``/``--nproc-per-node`` as usual), trains one model on several processes:

* every rank draws the same minibatch from the same seeded sampler and keeps its share of
  the basins (``basins[rank::world_size]``), so the global batch is the single-process one;
* the pooled loss of the whole minibatch is assembled from per-rank sums
  (:func:`benchmark.training.loss.sharded_rmse_combined_loss`) and DDP all-reduces the
  gradients of the parameterization network; the HBV solvers, the adjoint's custom backward
  included, run per rank on its basins and need nothing of DDP;
* rank 0 alone writes checkpoints, the training log and the one MLflow run of the job.

Backend: ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per local rank).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from benchmark.errors import ConfigError
from benchmark.training.sampler import Batch

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (``world_size == 1``: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether gradients are all-reduced across processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and logs to MLflow."""
        return self.rank == 0


SINGLE = Ranks()


@contextlib.contextmanager
def session(device: torch.device, *, enabled: bool) -> Iterator[tuple[Ranks, torch.device]]:
    """Join the ``torchrun`` job for the body (nothing to join when not ``enabled``).

    Yields the ranks and this rank's device (``cuda:<LOCAL_RANK>`` on GPUs). The process
    group is left on exit: after a barrier when the body succeeded (so rank 0's last files
    are written before any rank exits), at once when it raised.

    Raises
    ------
    ConfigError
        When ``enabled`` but the environment variables of ``torchrun`` are missing.
    """
    if not enabled:
        yield SINGLE, device
        return
    import torch.distributed as dist

    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing); start it as "
            "`torchrun --nproc-per-node N -m benchmark.cli train --model NAME --distributed`"
        )
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), local_rank)
    try:
        yield ranks, device
        dist.barrier()
    finally:
        if owner and dist.is_initialized():
            dist.destroy_process_group()


def wrap(network: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The network under DistributedDataParallel (unchanged on a single process)."""
    if not ranks.enabled:
        return network
    from torch.nn.parallel import DistributedDataParallel

    # the network has no buffers, so a forward pass involves no other rank (rank 0 alone runs
    # the validation forward); only backward all-reduces
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(network: Any) -> torch.nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        inner = getattr(network, "module", None) or getattr(network, "_orig_mod", None)
        if inner is None:
            return network
        network = inner


def shard(batch: Batch, ranks: Ranks) -> Batch:
    """This rank's basins of the global minibatch."""
    if not ranks.enabled:
        return batch
    return Batch(basins=batch.basins[ranks.rank :: ranks.world_size],
                 sequence_start=batch.sequence_start[ranks.rank :: ranks.world_size])


def check_batch(batch_basins: int, n_basins: int, ranks: Ranks) -> None:
    """ConfigError when a minibatch has fewer basins than there are ranks."""
    if ranks.enabled and min(batch_basins, n_basins) < ranks.world_size:
        raise ConfigError(
            f"--distributed with {ranks.world_size} processes needs at least {ranks.world_size} basins per minibatch "
            f"(the profile's batch_basins is {batch_basins}, {n_basins} basins)"
        )


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """Sum ``tensor`` over the ranks in place."""
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
