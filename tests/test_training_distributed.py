"""Data-parallel training under torchrun (DistributedDataParallel, gloo on CPU).

Specification: ``torchrun --nproc-per-node 2 ... train --distributed`` on the ci profile (4
real basins, 2 per rank) reaches the result of a single-process run with the same global
minibatches, for the sequential model and for the adjoint model (whose custom backward runs
per rank): per-epoch losses to 1e-5 relative and the final network weights to 1e-5 -- the
ranks' partial sums and the LSTM on 2 instead of 4 basins round differently in float32,
nothing else differs. Only rank 0 writes the checkpoint and logs one MLflow run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.errors import ConfigError
from benchmark.training.distributed import Ranks, shard
from benchmark.training.sampler import Batch
from benchmark.artifacts import CHECKPOINT_NAME
from benchmark.training.checkpoint import load_checkpoint
from benchmark.training.trainer import train_model
from tests.limits import HANG_GUARD_S
from tests.training_fixtures import ci_data_dir, ci_dataset, ci_params, write_params  # noqa: F401 - fixtures

LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def test_each_rank_keeps_its_share_of_the_global_minibatch():
    import numpy as np

    batch = Batch(basins=np.array([0, 2, 5, 7, 9]), sequence_start=np.array([10, 20, 30, 40, 50]))
    parts = [shard(batch, Ranks(rank, 2)) for rank in (0, 1)]
    assert [p.basins.tolist() for p in parts] == [[0, 5, 9], [2, 7]]
    assert [p.sequence_start.tolist() for p in parts] == [[10, 30, 50], [20, 40]]


def test_distributed_outside_torchrun_is_a_clear_error(tmp_path, ci_data_dir, ci_dataset, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="--distributed needs the environment torchrun sets"):
        train_model(ci_params(tmp_path, ci_data_dir), "dhbv", dataset=ci_dataset, track=False, distributed_run=True)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dhbv", "dhbv_adj"])
def test_torchrun_two_processes_match_one_process(model, tmp_path, ci_data_dir, ci_dataset, mlflow_tracking_uri):
    for folder in ("single", "ddp"):
        (tmp_path / folder).mkdir()
    single = train_model(ci_params(tmp_path / "single", ci_data_dir), model, dataset=ci_dataset, track=False)

    experiment = f"ddp-{model}"
    params_path = write_params(tmp_path / "ddp", ci_data_dir, experiment=experiment)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "benchmark.cli", "--params", str(params_path), "train", "--model", model, "--distributed"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_tracking_uri, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ckpt = load_checkpoint(tmp_path / "ddp" / "models" / model / CHECKPOINT_NAME)
    reference = load_checkpoint(single.model_dir / CHECKPOINT_NAME)
    for key in ("train_loss", "val_loss"):
        assert [h[key] for h in ckpt["history"]] == pytest.approx([h[key] for h in reference["history"]],
                                                                  rel=LOSS_RTOL), key
    for name, value in reference["model_state"].items():
        assert torch.allclose(ckpt["model_state"][name], value, rtol=0.0, atol=WEIGHT_ATOL), name

    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["distributed_world_size"] == "2" and run.data.tags["distributed_backend"] == "gloo"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
