"""Training of a differentiable HBV variant (Song et al. 2024, Section 2.2.6; docs/training.md).

One call of :func:`train_model` trains one (model, seed) of the active profile:

* normalization statistics from the training period (saved as ``normalization.json``);
* Adadelta on the RMSE-combined loss (:mod:`benchmark.training.loss`) over seeded
  minibatches of basins x windows with a warm-up (:mod:`benchmark.training.sampler`);
* a checkpoint after every epoch (``checkpoint.pt``, :mod:`benchmark.training.checkpoint`:
  weights, optimizer, every RNG state, the sampler state, the epoch, the loss history, the
  MLflow run id, the setup and network structure), written atomically to the model folder
  and to the run's work folder; a rerun after a crash or kill continues from the work
  folder when the setup matches and says so (:mod:`benchmark.training.resume`; ``restart``
  starts over), and reaches exactly the result of an uninterrupted run (all randomness is
  restored; nothing depends on the total number of epochs);
* the model folder is locked for the run (:mod:`benchmark.locks`): a second process on it
  stops with an error naming the first;
* a non-finite HBV storage or flow stops training with :class:`~benchmark.errors.TrainingError`
  naming the basin and the date (the simulation's ``stats["non_finite"]``); a non-finite
  loss or gradient names the epoch and the basins of the batch;
* after every epoch, the same loss on the profile's held-out ``validation`` period (all
  basins, ``train.test_warmup_days`` of warm-up, network in eval mode) when one is set:
  a monitoring curve, nothing is selected on it;
* everything logged to one MLflow run per (model, seed) through :mod:`benchmark.tracking`.

Outputs in ``<train.models_dir>/<model>/``: ``checkpoint.pt``, ``normalization.json``,
``train_log.csv`` (epoch, train_loss, val_loss, iterations, wall time). In-progress state in
``<train.work_dir>/<model>/`` (removed when training finishes).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import xarray as xr
from tqdm.auto import tqdm

from benchmark import atomic, locks, tracking
from benchmark.artifacts import CHECKPOINT_NAME, NORMALIZATION_NAME, TRAIN_LOG_NAME, model_dir, work_dir
from benchmark.config import Params, resolve_path
from benchmark.data.dataset import load_dataset, select_profile_basins
from benchmark.errors import ConfigError, HbvbenchError, TrainingError
from benchmark.models.registry import get_model_spec
from benchmark.training import distributed
from benchmark.training.checkpoint import CHECKPOINT_FORMAT, code_fingerprint, network_structure
from benchmark.training.device import resolve_device, resolve_dtype
from benchmark.training.distributed import SINGLE, Ranks
from benchmark.training.evaluate import TrainedNetwork, simulate_period
from benchmark.training.loss import rmse_combined_loss, sharded_rmse_combined_loss
from benchmark.training.mlflow_model import log_trained_model
from benchmark.training.network import DifferentiableHBV, build_model, dynamic_parameters
from benchmark.training.normalization import NormalizationStats, fit_normalization
from benchmark.training.resume import StartMode, StartPlan, plan_start
from benchmark.training.sampler import Batch, WindowSampler, iterations_per_epoch
from benchmark.training.series import (
    SeriesTensors,
    check_forcing,
    day_index,
    first_non_finite,
    gather,
    non_finite_message,
    series_tensors,
    validation_bounds,
    window_bounds,
)
from benchmark.training.solver_stats import merge_solver_stats, public_stats, summarize_solver_stats
from benchmark.training.tracking_glue import open_run, run_params, run_tags


# ----------------------------------------------------------------------------- setup helpers


def show_progress() -> bool:
    """Progress bars only on an interactive terminal and never in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def validation_loss(model: DifferentiableHBV, data: SeriesTensors, bounds: tuple[int, int, int], *,
                    alpha: float, chunk_basins: int) -> float:
    """The training loss (eq. 36) of the whole validation period over all basins, eval mode.

    Eval mode draws no dropout mask, so the random streams of training are left untouched
    (a resumed run stays identical to an uninterrupted one). A non-finite simulation is a
    TrainingError naming the basin and date.
    """
    first, start, end = bounds
    run = simulate_period(model, data, first, start, end, chunk_basins)
    bad = first_non_finite({"non_finite": torch.as_tensor(run.non_finite)})
    if bad is not None:
        day, column, count = bad
        raise TrainingError(non_finite_message("validation period", data.basins[column], data.dates[first + day], count))
    qsim = torch.as_tensor(run.series["Q"], dtype=data.qobs.dtype, device=data.qobs.device)
    return float(rmse_combined_loss(qsim, data.qobs[start : end + 1], alpha=alpha))


# ----------------------------------------------------------------------------- state


@dataclass
class TrainState:
    """What a checkpoint holds besides tensors: progress and history."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    mlflow_run_id: str | None = None


def setup_fingerprint(
    params: Params, spec: Any, seed: int, basins: tuple[str, ...], n_iterations: int
) -> dict[str, Any]:
    """Everything a resumed run must share with the run it continues (epochs excluded), the
    sources of the model, solvers and training included (``code``)."""
    profile = params.active
    train = params.train
    return {
        "model": spec.name,
        "dynamic_parameters": list(dynamic_parameters(params, spec)),
        "seed": seed,
        "profile": params.profile,
        "basins": list(basins),
        "train_start": str(profile.train.start),
        "train_end": str(profile.train.end),
        "warmup_days": profile.warmup_days,
        "window_days": profile.window_days,
        "batch_basins": profile.batch_basins,
        "hidden_size": profile.hidden_size,
        "nmul": profile.nmul,
        "iterations_per_epoch": n_iterations,
        "alpha": train.alpha,
        "learning_rate": train.learning_rate,
        "dropout": train.dropout,
        "dtype": train.dtype,
        "newton_tol": train.newton_tol,
        "newton_max_iter": train.newton_max_iter,
        "code": code_fingerprint(),
    }


def _rng_states(device: torch.device) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def write_train_log(history: list[dict[str, float]], path: Path) -> None:
    """The per-epoch loss curve as CSV (a DVC plot)."""
    buffer = io.StringIO()
    fields = ["epoch", "train_loss", "val_loss", "iterations", "epoch_wall_s"]
    if not any("val_loss" in row for row in history):
        fields.remove("val_loss")  # no validation period: no empty column
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in history:
        writer.writerow({key: row.get(key, "") for key in fields})
    atomic.write_text(path, buffer.getvalue())


# ----------------------------------------------------------------------------- the loop


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model: str
    seed: int
    epochs: int
    history: list[dict[str, float]]
    model_dir: Path
    mlflow_run_id: str | None
    wall_s: float


EpochCallback = Callable[[int, dict[str, float]], None]


def run_epoch(
    model: DifferentiableHBV,
    optimizer: torch.optim.Optimizer,
    sampler: WindowSampler,
    data: SeriesTensors,
    *,
    epoch: int,
    n_iterations: int,
    warmup_days: int,
    window_days: int,
    alpha: float,
    progress: bool,
    ranks: Ranks = SINGLE,
) -> tuple[float, dict[str, float]]:
    """One epoch of minibatch updates; returns the mean batch loss and summed solver stats.

    Under ``torchrun`` (``ranks.enabled``) each rank simulates its share of every minibatch's
    basins and the loss is that of the whole minibatch (:mod:`benchmark.training.distributed`);
    the solver stats are this rank's.
    """
    model.train()
    losses: list[torch.Tensor] = []
    solver_totals: dict[str, float] = {}
    bar = tqdm(range(n_iterations), desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch")
    for iteration in bar:
        batch = distributed.shard(sampler.sample(), ranks)
        loss, stats = _train_step(model, optimizer, data, batch, (epoch, iteration + 1, n_iterations),
                                  warmup_days=warmup_days, window_days=window_days, alpha=alpha, ranks=ranks)
        losses.append(loss)
        merge_solver_stats(solver_totals, stats)
        if progress:
            bar.set_postfix(loss=f"{float(loss):.4f}")
    return float(torch.stack(losses).mean()), public_stats(solver_totals)


def _train_step(model: DifferentiableHBV, optimizer: torch.optim.Optimizer, data: SeriesTensors, batch: Batch,
                position: tuple[int, int, int], *, warmup_days: int, window_days: int, alpha: float,
                ranks: Ranks) -> tuple[torch.Tensor, dict[str, float]]:
    """One minibatch update; returns the (detached) batch loss and the simulation's solver stats.

    A failed or non-finite simulation, loss or gradient is a TrainingError naming the
    ``position`` (epoch, batch number, batches per epoch) and the batch's basins (a non-finite
    simulation: also the first non-finite basin and date).
    """
    epoch, number, n_iterations = position
    where = f"epoch {epoch}, batch {number}/{n_iterations}"
    length = warmup_days + window_days
    names = [data.basins[i] for i in batch.basins]
    optimizer.zero_grad(set_to_none=True)
    try:
        out = model(gather(data.inputs, batch, length), gather(data.forcing, batch, length))
    except HbvbenchError as exc:
        raise TrainingError(f"epoch {epoch}, batch {number}: simulation failed for basins {names}: {exc}") from exc
    bad = first_non_finite(out.get("stats"))
    if bad is not None:
        day, column, count = bad
        when = data.dates[int(batch.sequence_start[column]) + day]
        raise TrainingError(non_finite_message(where, names[column], when, count))
    qobs = gather(data.qobs, batch, length)[warmup_days:]
    if ranks.enabled:
        loss, objective = sharded_rmse_combined_loss(out["Q"][warmup_days:], qobs, distributed.all_reduce_sum,
                                                     ranks.world_size, alpha=alpha)
    else:
        loss = objective = rmse_combined_loss(out["Q"][warmup_days:], qobs, alpha=alpha)
    if not bool(torch.isfinite(loss)):
        raise TrainingError(f"non-finite loss ({float(loss.detach())}) in {where}; basins {names}")
    objective.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads and not bool(torch.isfinite(torch.stack([g.abs().max() for g in grads])).all()):
        raise TrainingError(f"non-finite gradient in {where}; basins {names}")
    optimizer.step()
    return loss.detach(), summarize_solver_stats(out.get("stats"))


def _resolve_seed_epochs(params: Params, seed: int | None, epochs: int | None) -> tuple[int, int]:
    profile = params.active
    seed = profile.seeds[0] if seed is None else seed
    epochs = epochs if epochs is not None else (params.train.epochs or profile.epochs)
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"the seed must be in 0..2**32-1, got {seed}")
    return seed, epochs


class WeightSource(Protocol):
    """Initial weights of a run (``hbvbench train --init-from``), resolved by the caller.

    The caller (the command line, :mod:`benchmark.tuning.init_from`) also applies the
    source's hyperparameters to ``params`` before training; training only copies the weights
    and records the lineage tags.
    """

    reference: str
    tags: dict[str, str]

    def load_into(self, model: DifferentiableHBV) -> Any:
        """Copy the source's weights into ``model.network``."""


@dataclass
class _Setup:
    """What the set-up phase fixes before the first epoch: data, periods, folders, how to start."""

    spec: Any
    seed: int
    epochs: int
    stats: NormalizationStats
    data: SeriesTensors
    first: int  # first and last allowed window start (day index)
    last: int
    val_bounds: tuple[int, int, int] | None
    n_iterations: int
    fingerprint: dict[str, Any]
    out_dir: Path
    wdir: Path
    plan: StartPlan


def train_model(
    params: Params,
    model_name: str,
    *,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    restart: bool = False,
    init: WeightSource | None = None,
    dataset: xr.Dataset | None = None,
    track: bool = True,
    on_epoch_end: EpochCallback | None = None,
    distributed_run: bool = False,
) -> TrainResult:
    """Train one (model, seed) of the active profile.

    The phases, one function each: set-up (:func:`_set_up`: data, periods, fingerprint, how
    to start), resume or initialization (:func:`_build`), the epoch loop
    (:func:`_epoch_loop`), checkpointing (:func:`_save_epoch`) and logging
    (:class:`_TrackedTraining`).

    Parameters
    ----------
    params
        The validated configuration; sizes from ``params.active``, the rest from ``params.train``.
    model_name
        A registry name (``dhbv``, ``dhbv_cr``, ``dhbv_adj``, ``dhbv_adj_cr``, ...).
    seed
        Default: the profile's first seed.
    epochs
        Total epochs; default ``train.epochs`` when set, else the profile's.
    resume
        Continue from the checkpoint of an earlier run with the same setup: the interrupted
        run's (work folder) or, when there is none, the finished one's (model folder), e.g.
        to add epochs. An error when there is none. Without ``resume`` or ``restart`` an
        interrupted run is continued when its setup matches and started over otherwise, as
        :mod:`benchmark.training.resume` explains; either way the decision is printed.
    restart
        Start over, discarding an interrupted run's state.
    init
        Weights that initialize this run (``--init-from``, resolved by
        :func:`benchmark.tuning.init_from.train_from`, which also applies the source's
        hyperparameters to ``params``).
    dataset
        The processed dataset (default: ``load_dataset(params=params)``).
    track
        Log to MLflow (``benchmark.tracking``).
    on_epoch_end
        Called with ``(epoch, record)`` after each epoch's checkpoint is written (on every
        rank under ``distributed_run``; rank 0 writes the checkpoint).
    distributed_run
        Join the ``torchrun`` job this process belongs to and train data-parallel
        (:mod:`benchmark.training.distributed`); only rank 0 writes files and tracks.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingError
        Non-finite simulation (naming basin and date), loss or gradient (naming epoch and
        basins); unreadable checkpoint.
    ConfigError, DataError
        Bad configuration or data.
    LockError
        Another process is writing the model folder.
    """
    spec = _model_spec(model_name)
    seed, epochs = _resolve_seed_epochs(params, seed, epochs)
    if track:  # a corrupt, locked or unreachable store fails now, not after the first epoch
        tracking.check_store()
    mode = start_mode(resume, restart, init_given=init is not None)
    ds = select_profile_basins(load_dataset(params=params) if dataset is None else dataset, params)
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    with distributed.session(device, enabled=distributed_run) as (ranks, device):
        track = track and ranks.is_main
        setup = _set_up(params, spec, seed, epochs, ds, mode, device, dtype, ranks)
        model, optimizer, sampler = _build(params, setup, device, dtype, init)
        structure = network_structure(model, spec, setup.stats.n_inputs)
        lock = locks.hold(setup.out_dir, f"hbvbench train --model {model_name} --seed {seed}") if ranks.is_main \
            else contextlib.nullcontext()
        with lock:
            if ranks.is_main:
                _announce(setup.plan, model_name)
                if setup.plan.discard_work:
                    shutil.rmtree(setup.wdir, ignore_errors=True)
                setup.stats.save(setup.out_dir / NORMALIZATION_NAME)
            state = _restore(setup.plan.checkpoint, model, optimizer, sampler, device) if setup.plan.checkpoint \
                else TrainState()
            model.network = distributed.wrap(model.network, ranks, device)  # type: ignore[assignment]
            context = _TrackedTraining(params, spec, model_name, seed, epochs, setup.n_iterations, setup.fingerprint,
                                       state, track)
            started = time.perf_counter()
            with context as tracker:
                tracker.log_start(init, ranks, device)
                _epoch_loop(params, setup, model_name, model, optimizer, sampler, state, structure, tracker, ranks,
                            device, on_epoch_end)
                wall = time.perf_counter() - started
                tracker.log_final(wall, tracking.peak_memory_mb(device), setup.out_dir)
                tracker.log_model(distributed.unwrap(model.network), setup.stats)
            if ranks.is_main:  # finished: nothing left to continue
                _remove_work(setup.wdir, resolve_path(params.train.work_dir))
        return TrainResult(model_name, seed, epochs, state.history, setup.out_dir, state.mlflow_run_id, wall)


def _model_spec(model_name: str) -> Any:
    try:
        return get_model_spec(model_name)
    except KeyError as exc:
        raise ConfigError(f"unknown model {model_name!r}: {exc}") from None


def start_mode(resume: bool, restart: bool, *, init_given: bool = False) -> StartMode:
    """How a run starts from the flags ``--resume``, ``--restart`` and ``--init-from`` (ConfigError on a clash)."""
    if resume and init_given:
        raise ConfigError("--resume and --init-from exclude each other")
    if resume and restart:
        raise ConfigError("--resume and --restart exclude each other")
    return "resume" if resume else "restart" if restart else "auto"


def _set_up(params: Params, spec: Any, seed: int, epochs: int, ds: xr.Dataset, mode: StartMode,
            device: torch.device, dtype: torch.dtype, ranks: Ranks) -> _Setup:
    """Set-up phase: normalization, tensors, periods (forcing checked), iterations, fingerprint, start plan."""
    profile = params.active
    stats = fit_normalization(ds, str(profile.train.start), str(profile.train.end))
    data = series_tensors(ds, stats, device, dtype)
    first, last = window_bounds(data.dates, profile)
    check_forcing(data, first - profile.warmup_days, last + profile.window_days - 1, "training period and its warm-up")
    val_bounds = validation_bounds(data.dates, params)
    if val_bounds is not None:
        check_forcing(data, val_bounds[0], val_bounds[2], "validation period and its warm-up")
    n_days = (day_index(data.dates, profile.train.end, "training end")
              - day_index(data.dates, profile.train.start, "training start") + 1)
    n_iterations = profile.iterations_per_epoch or iterations_per_epoch(
        profile.batch_basins, profile.window_days, len(data.basins), n_days
    )
    fingerprint = setup_fingerprint(params, spec, seed, data.basins, n_iterations)
    distributed.check_batch(profile.batch_basins, len(data.basins), ranks)
    out_dir, wdir = model_dir(params, spec.name, seed), work_dir(params, spec.name, seed)
    plan = plan_start(mode, wdir, out_dir, fingerprint, epochs)
    return _Setup(spec, seed, epochs, stats, data, first, last, val_bounds, n_iterations, fingerprint, out_dir, wdir,
                  plan)


def _build(params: Params, setup: _Setup, device: torch.device, dtype: torch.dtype,
           init: WeightSource | None) -> tuple[DifferentiableHBV, torch.optim.Optimizer, WindowSampler]:
    """Initialization phase: seeded network (optionally from ``init``'s weights), optimizer and sampler."""
    profile = params.active
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(setup.seed)
    model = build_model(setup.spec, params, setup.stats.n_inputs).to(device=device, dtype=dtype)
    if init is not None:
        init.load_into(model)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=params.train.learning_rate)
    sampler = WindowSampler(len(setup.data.basins), setup.first, setup.last, profile.batch_basins,
                            profile.warmup_days, setup.seed)
    return model, optimizer, sampler


def _epoch_loop(params: Params, setup: _Setup, model_name: str, model: DifferentiableHBV,
                optimizer: torch.optim.Optimizer, sampler: WindowSampler, state: TrainState,
                structure: dict[str, Any], tracker: "_TrackedTraining", ranks: Ranks, device: torch.device,
                on_epoch_end: EpochCallback | None) -> None:
    """Epoch loop: train, validate, checkpoint and log every epoch from ``state.epoch + 1`` to ``setup.epochs``."""
    profile = params.active
    progress = show_progress()
    epoch_bar = tqdm(range(state.epoch + 1, setup.epochs + 1), desc=f"train {model_name}", disable=not progress,
                     unit="epoch")
    for epoch in epoch_bar:
        tic = time.perf_counter()
        loss, solver_stats = run_epoch(
            model, optimizer, sampler, setup.data,
            epoch=epoch, n_iterations=setup.n_iterations, warmup_days=profile.warmup_days,
            window_days=profile.window_days, alpha=params.train.alpha, progress=progress, ranks=ranks,
        )
        record = {"epoch": epoch, "train_loss": loss, "iterations": setup.n_iterations}
        if setup.val_bounds is not None and ranks.is_main:
            record["val_loss"] = validation_loss(model, setup.data, setup.val_bounds, alpha=params.train.alpha,
                                                 chunk_basins=max(1, profile.batch_basins))
        record["epoch_wall_s"] = time.perf_counter() - tic
        state.epoch = epoch
        state.history.append(record)
        if ranks.is_main:  # one writer of the job's files and run
            payload = _checkpoint_payload(setup, model_name, epoch, structure, state, model, optimizer, sampler,
                                          device)
            _save_epoch(payload, setup.out_dir, setup.wdir)
            tracker.log_epoch(epoch, record, solver_stats)
        epoch_bar.set_postfix(loss=f"{loss:.4f}")
        if on_epoch_end is not None:  # the epoch's checkpoint is on disk
            on_epoch_end(epoch, record)


def _checkpoint_payload(setup: _Setup, model_name: str, epoch: int, structure: dict[str, Any], state: TrainState,
                        model: DifferentiableHBV, optimizer: torch.optim.Optimizer, sampler: WindowSampler,
                        device: torch.device) -> dict[str, Any]:
    """The checkpoint of ``epoch`` (format: :mod:`benchmark.training.checkpoint`)."""
    return {
        "format": CHECKPOINT_FORMAT, "model": model_name, "seed": setup.seed, "epoch": epoch,
        "epochs": setup.epochs, "setup": setup.fingerprint, "structure": structure, "n_inputs": setup.stats.n_inputs,
        **_training_state(model, optimizer, sampler, device),
        "history": state.history, "mlflow_run_id": state.mlflow_run_id,
    }


def _training_state(model: DifferentiableHBV, optimizer: torch.optim.Optimizer, sampler: WindowSampler,
                    device: torch.device) -> dict[str, Any]:
    """Weights, optimizer, sampler and random streams: what continuing a run needs."""
    return {
        "model_state": distributed.unwrap(model.network).state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "sampler_state": sampler.state_dict(),
        "rng_states": _rng_states(device),
    }


def _save_epoch(payload: dict[str, Any], out_dir: Path, wdir: Path) -> None:
    """The epoch's checkpoint into the work folder (what a rerun continues from) and the model
    folder (the output), then the loss curve."""
    atomic.torch_save(wdir / CHECKPOINT_NAME, payload)
    atomic.torch_save(out_dir / CHECKPOINT_NAME, payload)
    write_train_log(payload["history"], out_dir / TRAIN_LOG_NAME)


def _remove_work(wdir: Path, root: Path) -> None:
    """Delete a finished run's work folder, and the folders above it up to ``root`` once empty."""
    shutil.rmtree(wdir, ignore_errors=True)
    for folder in (wdir, *wdir.parents):
        if folder == root.parent:
            break
        try:
            folder.rmdir()
        except OSError:  # not empty (another model's run) or already gone
            if folder.exists():
                break


def _announce(plan: Any, model_name: str) -> None:
    """Say on stdout how the run starts when it is not a plain fresh start."""
    if plan.message:
        print(f"hbvbench train --model {model_name}: {plan.message}", flush=True)


def _restore(ckpt: dict[str, Any], model: DifferentiableHBV, optimizer: torch.optim.Optimizer,
             sampler: WindowSampler, device: torch.device) -> TrainState:
    """Load a checkpoint's weights, optimizer, sampler and random streams; return its progress."""
    model.network.load_state_dict(ckpt["model_state"])
    optimizer.load_state_dict(ckpt["optimizer_state"])
    sampler.load_state_dict(ckpt["sampler_state"])
    _restore_rng_states(ckpt["rng_states"], device)
    return TrainState(ckpt["epoch"], list(ckpt["history"]), ckpt.get("mlflow_run_id"))


# ----------------------------------------------------------------------------- tracking glue


class _TrackedTraining:
    """Opens (or re-opens, on resume) the MLflow run of a (model, seed) and logs to it.

    ``mlflow`` is imported where it is used: it is slow to import, and a run without
    tracking (``track=False``) never needs it.
    """

    def __init__(
        self,
        params: Params,
        spec: Any,
        model_name: str,
        seed: int,
        epochs: int,
        n_iterations: int,
        fingerprint: dict[str, Any],
        state: TrainState,
        enabled: bool,
    ) -> None:
        self.params, self.spec, self.model_name, self.seed = params, spec, model_name, seed
        self.epochs, self.n_iterations, self.fingerprint, self.state = epochs, n_iterations, fingerprint, state
        self.enabled = enabled
        self._cm: Any = None

    def __enter__(self) -> "_TrackedTraining":
        if not self.enabled:
            return self
        self._cm = open_run(
            self.params,
            run_name=f"{self.model_name}-seed{self.seed}",
            tags=run_tags(self.params, self.spec, self.seed),
            params_to_log=run_params(self.params, self.fingerprint, epochs=self.epochs),
            run_id=self.state.mlflow_run_id,
        )
        active = self._cm.__enter__()
        self.state.mlflow_run_id = active.info.run_id
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        if self._cm is None:
            return False
        return bool(self._cm.__exit__(*exc_info))

    def log_start(self, init: WeightSource | None, ranks: Ranks, device: torch.device) -> None:
        """The prepared dataset as the run's training input (name, source folder, DVC hash), the
        lineage of an ``--init-from`` run and the shape of a distributed job."""
        if not self.enabled:
            return
        tracking.log_prepared_data(self.params.data.processed_dir, self.params.profile, context="training")
        import mlflow

        if init is not None:  # lineage of an explorer -> fine-tune run
            mlflow.set_tags(init.tags)
        if ranks.enabled:
            mlflow.set_tags({"distributed_world_size": str(ranks.world_size),
                             "distributed_backend": "gloo" if device.type == "cpu" else "nccl"})

    def log_epoch(self, epoch: int, record: dict[str, float], solver_stats: dict[str, float]) -> None:
        if not self.enabled:
            return
        import mlflow

        metrics = {k: record[k] for k in ("train_loss", "val_loss", "epoch_wall_s") if k in record}
        metrics.update({f"train_solver_{k}": v for k, v in solver_stats.items()})
        mlflow.log_metrics(metrics, step=epoch)

    def log_final(self, wall_s: float, peak_mb: float, out_dir: Path) -> None:
        if not self.enabled:
            return
        import mlflow

        mlflow.log_metrics({"train_wall_s": wall_s, "train_peak_memory_mb": peak_mb})
        mlflow.log_artifact(str(out_dir / TRAIN_LOG_NAME), artifact_path="training")
        mlflow.log_artifact(str(out_dir / NORMALIZATION_NAME), artifact_path="training")

    def log_model(self, network: torch.nn.Module, stats: NormalizationStats) -> None:
        """The trained network as the run's MLflow model (benchmark.training.mlflow_model)."""
        if not self.enabled:
            return
        trained = TrainedNetwork(self.spec, network.state_dict(), stats, self.fingerprint, self.seed,
                                 self.state.epoch, self.state.mlflow_run_id)
        log_trained_model(trained, self.params)
