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
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from benchmark import atomic, locks
from benchmark.config import Params, ProfileConfig, resolve_path
from benchmark.errors import ConfigError, DataError, HbvbenchError, TrainingError
from benchmark.training import distributed
from benchmark.training.checkpoint import (  # noqa: F401 - re-exported: the names callers use
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    code_fingerprint,
    load_checkpoint,
    network_structure,
)
from benchmark.training.distributed import SINGLE, Ranks
from benchmark.training.loss import rmse_combined_loss, sharded_rmse_combined_loss
from benchmark.training.network import DifferentiableHBV
from benchmark.training.normalization import FORCING_VARIABLES, NormalizationStats, fit_normalization, normalized_inputs
from benchmark.training.resume import StartMode, plan_start
from benchmark.training.sampler import Batch, WindowSampler, iterations_per_epoch

NORMALIZATION_NAME = "normalization.json"
TRAIN_LOG_NAME = "train_log.csv"


# ----------------------------------------------------------------------------- setup helpers


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    """``float32`` / ``float64`` -> the torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def show_progress() -> bool:
    """Progress bars only on an interactive terminal and never in CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


SEED_FOLDER_PREFIX = "seed_"
"""A seed other than the profile's first lives in ``<model folder>/seed_<S>/`` (models, evaluation, work)."""


def seed_folder_name(seed: int) -> str:
    """``seed_<S>``: the sub-folder of a seed other than the profile's first."""
    return f"{SEED_FOLDER_PREFIX}{seed}"


def _seed_folder(params: Params, seed: int | None) -> str | None:
    """None for the profile's first seed, else ``seed_<S>``."""
    return None if seed is None or seed == params.active.seeds[0] else seed_folder_name(seed)


def model_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.models_dir>/<model>`` (absolute); other seeds than the profile's first in ``seed_<S>/``."""
    folder = resolve_path(params.train.models_dir) / model
    sub = _seed_folder(params, seed)
    return folder / sub if sub else folder


def work_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.work_dir>/<model>`` (absolute): the in-progress state of a training run."""
    folder = resolve_path(params.train.work_dir) / model
    sub = _seed_folder(params, seed)
    return folder / sub if sub else folder


def eval_dir(params: Params, model: str, seed: int | None = None) -> Path:
    """``<train.eval_dir>/<model>`` (absolute); other seeds than the profile's first in ``seed_<S>/``."""
    folder = resolve_path(params.train.eval_dir) / model
    sub = _seed_folder(params, seed)
    return folder / sub if sub else folder


def select_basins(ds: xr.Dataset, profile: ProfileConfig) -> xr.Dataset:
    """Restrict the processed dataset to the profile's basins (all of them for ``basins: all``)."""
    if profile.basins == "all":
        return ds
    available = {str(b) for b in ds["basin"].values}
    missing = [b for b in profile.basins if b not in available]
    if missing:
        raise DataError(
            f"basins {missing} of the profile are not in the processed dataset; re-run `hbvbench prepare`"
        )
    return ds.sel(basin=sorted(profile.basins))


def solver_options(params: Params) -> dict[str, Any]:
    """Options passed to ``simulate`` for the implicit solver."""
    options: dict[str, Any] = {"max_iter": params.train.newton_max_iter, "compile": params.train.compile}
    if params.train.newton_tol is not None:
        options["tol"] = params.train.newton_tol
    return options


def build_model(spec: Any, params: Params, n_inputs: int) -> DifferentiableHBV:
    """The network + HBV variant sized by the active profile."""
    profile = params.active
    return DifferentiableHBV(
        spec,
        n_inputs=n_inputs,
        hidden_size=profile.hidden_size,
        nmul=profile.nmul,
        dropout=params.train.dropout,
        solver_options=solver_options(params),
        dynamic_parameters=dynamic_parameters(params, spec),
    )


def dynamic_parameters(params: Params, spec: Any) -> tuple[str, ...]:
    """``train.dynamic_parameters`` when set, else the model's own (registry)."""
    override = getattr(params.train, "dynamic_parameters", None)
    return tuple(spec.dynamic_parameters) if override is None else tuple(override)


@dataclass
class SeriesTensors:
    """The data of a set of basins on the model's device, day axis first."""

    dates: pd.DatetimeIndex
    basins: tuple[str, ...]
    inputs: torch.Tensor  # [days, basins, n_inputs], normalized
    forcing: torch.Tensor  # [days, basins, 3]: P mm/day, T degC, PET mm/day
    qobs: torch.Tensor  # [days, basins] mm/day, NaN missing


def series_tensors(ds: xr.Dataset, stats: NormalizationStats, device: torch.device, dtype: torch.dtype) -> SeriesTensors:
    """Normalized inputs, physical forcing and observed flow of ``ds`` as tensors."""
    forcing = np.stack(
        [np.asarray(ds[name].transpose("date", "basin").values, dtype=np.float64) for name in FORCING_VARIABLES], axis=-1
    )
    qobs = np.asarray(ds["qobs"].transpose("date", "basin").values, dtype=np.float64)
    return SeriesTensors(
        dates=pd.DatetimeIndex(ds["date"].values),
        basins=tuple(str(b) for b in ds["basin"].values),
        inputs=torch.as_tensor(normalized_inputs(ds, stats), dtype=dtype, device=device),
        forcing=torch.as_tensor(forcing, dtype=dtype, device=device),
        qobs=torch.as_tensor(qobs, dtype=dtype, device=device),
    )


def check_forcing(data: SeriesTensors, first_day: int, last_day: int, where: str) -> None:
    """Raise DataError naming the basins whose forcing has gaps in ``[first_day, last_day]``."""
    window = data.forcing[first_day : last_day + 1]
    bad = (~torch.isfinite(window)).any(dim=-1).any(dim=0)
    if bool(bad.any()):
        names = [data.basins[i] for i in torch.nonzero(bad).flatten().tolist()]
        raise DataError(f"forcing (prcp/tmean/pet) has missing values in the {where} for basins {names}")


def day_index(dates: pd.DatetimeIndex, day: Any, what: str) -> int:
    """Index of ``day`` in ``dates`` (DataError when outside the data)."""
    stamp = pd.Timestamp(day)
    if stamp < dates[0] or stamp > dates[-1]:
        raise DataError(f"{what} {stamp.date()} is outside the processed data ({dates[0].date()}..{dates[-1].date()}); "
                        "re-run `hbvbench prepare` for this profile")
    return int(dates.get_indexer([stamp])[0])


def window_bounds(dates: pd.DatetimeIndex, profile: ProfileConfig) -> tuple[int, int]:
    """First and last allowed start index of a scored window inside the training period.

    A window's warm-up may reach before the training period (forcing only) but not before
    the start of the data.
    """
    first = max(day_index(dates, profile.train.start, "training start"), profile.warmup_days)
    last = day_index(dates, profile.train.end, "training end") - profile.window_days + 1
    return first, last


def validation_bounds(dates: pd.DatetimeIndex, params: Params) -> tuple[int, int, int] | None:
    """First warm-up day, first and last day of the profile's validation period (None if unset).

    The warm-up is ``train.test_warmup_days``, clipped at the start of the data, as for the test.
    """
    period = params.active.validation
    if period is None:
        return None
    start = day_index(dates, period.start, "validation start")
    end = day_index(dates, period.end, "validation end")
    return max(0, start - params.train.test_warmup_days), start, end


def validation_loss(model: DifferentiableHBV, data: SeriesTensors, bounds: tuple[int, int, int], *,
                    alpha: float, chunk_basins: int) -> float:
    """The training loss (eq. 36) of the whole validation period over all basins, eval mode.

    Eval mode draws no dropout mask, so the random streams of training are left untouched
    (a resumed run stays identical to an uninterrupted one). A non-finite simulation is a
    TrainingError naming the basin and date.
    """
    from benchmark.training.evaluate import simulate_period  # evaluate builds on this module

    first, start, end = bounds
    run = simulate_period(model, data, first, start, end, chunk_basins)
    bad = first_non_finite({"non_finite": torch.as_tensor(run.non_finite)})
    if bad is not None:
        day, column, count = bad
        raise TrainingError(non_finite_message("validation period", data.basins[column], data.dates[first + day], count))
    qsim = torch.as_tensor(run.series["Q"], dtype=data.qobs.dtype, device=data.qobs.device)
    return float(rmse_combined_loss(qsim, data.qobs[start : end + 1], alpha=alpha))


def first_non_finite(stats: Any) -> tuple[int, int, int] | None:
    """``(day, basin column, count)`` of the first basin-day ``simulate`` flagged non-finite
    (``stats["non_finite"]``, bool ``[days, basins]``); None when every day is finite."""
    flags = stats.get("non_finite") if isinstance(stats, dict) else None
    if flags is None or not bool(flags.any()):
        return None
    bad = flags.detach().cpu().numpy()
    day, column = (int(i) for i in np.argwhere(bad)[0])  # row-major: the earliest day first
    return day, column, int(bad.sum())


def non_finite_message(where: str, basin: str, day: pd.Timestamp, count: int) -> str:
    """The error of a simulation that produced NaN/inf, naming basin and date."""
    return (f"{where}: the simulation became non-finite (NaN or infinite storage or flow) for basin {basin} on "
            f"{day.date()} (first of {count} such basin-days); lower train.learning_rate, or check this basin's "
            "forcing and attributes")


def gather(series: torch.Tensor, batch: Batch, length: int) -> torch.Tensor:
    """Windows ``[length, batch, ...]`` of ``series [days, basins, ...]`` at the batch's starts."""
    starts = torch.as_tensor(batch.sequence_start, device=series.device)
    days = starts[None, :] + torch.arange(length, device=series.device)[:, None]
    basins = torch.as_tensor(batch.basins, device=series.device)[None, :]
    return series[days, basins]


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


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (MB), or peak CUDA memory on a GPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summarize_solver_stats(stats: Any) -> dict[str, float]:
    """Numeric scalars of ``simulate``'s ``stats`` as floats (other entries are skipped)."""
    out: dict[str, float] = {}
    if not isinstance(stats, dict):
        return out
    for key, value in stats.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
            out[key] = float(value.detach().cpu())
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


_SETTING_KEYS = ("tol", "rtol", "max_iter", "check_every")


def merge_solver_stats(total: dict[str, float], new: dict[str, float]) -> None:
    """Accumulate solver stats across batches in place.

    ``max*`` keys by maximum, ``mean*`` keys as a mean weighted by ``n_system_days`` (equal
    weights when absent), solver settings (``tol``, ``max_iter`` ...) kept as they are, and
    every other (count) key summed.
    """
    weight = new.get("n_system_days", 1.0)
    for key, value in new.items():
        if key in _SETTING_KEYS:
            total[key] = value
        elif key.startswith("max"):
            total[key] = max(total.get(key, value), value)
        elif key.startswith("mean"):
            seen = total.get(f"_weight_{key}", 0.0)
            total[key] = (total.get(key, 0.0) * seen + value * weight) / (seen + weight) if seen + weight else value
            total[f"_weight_{key}"] = seen + weight
        else:
            total[key] = total.get(key, 0.0) + value


def public_stats(total: dict[str, float]) -> dict[str, float]:
    """The stats of :func:`merge_solver_stats` without its bookkeeping entries."""
    return {key: value for key, value in total.items() if not key.startswith("_")}


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
    length = warmup_days + window_days
    losses: list[torch.Tensor] = []
    solver_totals: dict[str, float] = {}
    bar = tqdm(range(n_iterations), desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch")
    for iteration in bar:
        batch = distributed.shard(sampler.sample(), ranks)
        names = [data.basins[i] for i in batch.basins]
        optimizer.zero_grad(set_to_none=True)
        try:
            out = model(gather(data.inputs, batch, length), gather(data.forcing, batch, length))
        except HbvbenchError as exc:
            raise TrainingError(f"epoch {epoch}, batch {iteration + 1}: simulation failed for basins {names}: {exc}") from exc
        bad = first_non_finite(out.get("stats"))
        if bad is not None:
            day, column, count = bad
            when = data.dates[int(batch.sequence_start[column]) + day]
            raise TrainingError(non_finite_message(f"epoch {epoch}, batch {iteration + 1}/{n_iterations}",
                                                   names[column], when, count))
        qobs = gather(data.qobs, batch, length)[warmup_days:]
        if ranks.enabled:
            loss, objective = sharded_rmse_combined_loss(out["Q"][warmup_days:], qobs, distributed.all_reduce_sum,
                                                         ranks.world_size, alpha=alpha)
        else:
            loss = objective = rmse_combined_loss(out["Q"][warmup_days:], qobs, alpha=alpha)
        if not bool(torch.isfinite(loss)):
            raise TrainingError(
                f"non-finite loss ({float(loss.detach())}) in epoch {epoch}, batch {iteration + 1}/{n_iterations}; basins {names}"
            )
        objective.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.stack([g.abs().max() for g in grads])).all()):
            raise TrainingError(
                f"non-finite gradient in epoch {epoch}, batch {iteration + 1}/{n_iterations}; basins {names}"
            )
        optimizer.step()
        losses.append(loss.detach())
        merge_solver_stats(solver_totals, summarize_solver_stats(out.get("stats")))
        if progress:
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    return float(torch.stack(losses).mean()), public_stats(solver_totals)


def _resolve_seed_epochs(params: Params, seed: int | None, epochs: int | None) -> tuple[int, int]:
    profile = params.active
    seed = profile.seeds[0] if seed is None else seed
    epochs = epochs if epochs is not None else (params.train.epochs or profile.epochs)
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"the seed must be in 0..2**32-1, got {seed}")
    return seed, epochs


def train_model(
    params: Params,
    model_name: str,
    *,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    restart: bool = False,
    init_from: str | None = None,
    dataset: xr.Dataset | None = None,
    track: bool = True,
    on_epoch_end: EpochCallback | None = None,
    distributed_run: bool = False,
) -> TrainResult:
    """Train one (model, seed) of the active profile.

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
    init_from
        A model folder or checkpoint whose network weights initialize this run.
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
    from benchmark.models.registry import get_model_spec

    try:
        spec = get_model_spec(model_name)
    except KeyError as exc:
        raise ConfigError(f"unknown model {model_name!r}: {exc}") from None
    seed, epochs = _resolve_seed_epochs(params, seed, epochs)
    if track:  # a corrupt, locked or unreachable store fails now, not after the first epoch
        from benchmark import tracking

        tracking.check_store()
    if resume and init_from:
        raise ConfigError("--resume and --init-from exclude each other")
    if resume and restart:
        raise ConfigError("--resume and --restart exclude each other")
    mode: StartMode = "resume" if resume else "restart" if restart else "auto"
    if dataset is None:
        from benchmark.data.dataset import load_dataset

        dataset = load_dataset(params=params)
    ds = select_basins(dataset, params.active)
    out_dir = model_dir(params, model_name, seed)
    wdir = work_dir(params, model_name, seed)
    init_source = None
    if init_from:  # a path, MLflow run id or Optuna study; brings its hyperparameters (benchmark.tuning.init_from)
        from benchmark.tuning.init_from import resolve_init_source

        init_source = resolve_init_source(init_from, params)
        params = init_source.apply(params)

    profile = params.active
    stats = fit_normalization(ds, str(profile.train.start), str(profile.train.end))
    device, dtype = resolve_device(params.train.device), resolve_dtype(params.train.dtype)
    with distributed.session(device, enabled=distributed_run) as (ranks, device):
        track = track and ranks.is_main
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
        plan = plan_start(mode, wdir, out_dir, fingerprint, epochs)

        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(seed)
        model = build_model(spec, params, stats.n_inputs).to(device=device, dtype=dtype)
        if init_source is not None:
            init_source.load_into(model)
        structure = network_structure(model, spec, stats.n_inputs)
        optimizer = torch.optim.Adadelta(model.parameters(), lr=params.train.learning_rate)
        sampler = WindowSampler(len(data.basins), first, last, profile.batch_basins, profile.warmup_days, seed)
        command = f"hbvbench train --model {model_name} --seed {seed}"
        lock = locks.hold(out_dir, command) if ranks.is_main else contextlib.nullcontext()
        with lock:
            if ranks.is_main:
                _announce(plan, model_name)
                if plan.discard_work:
                    shutil.rmtree(wdir, ignore_errors=True)
                stats.save(out_dir / NORMALIZATION_NAME)
            state = _restore(plan.checkpoint, model, optimizer, sampler, device) if plan.checkpoint else TrainState()
            model.network = distributed.wrap(model.network, ranks, device)  # type: ignore[assignment]
            if params.train.compile:
                model.network = torch.compile(model.network)  # type: ignore[assignment]

            context = _TrackedTraining(params, spec, model_name, seed, epochs, n_iterations, fingerprint, state, track)
            started = time.perf_counter()
            with context as tracker:
                tracker.log_data()
                if init_source is not None and track:  # lineage of an explorer -> fine-tune run
                    import mlflow

                    mlflow.set_tags(init_source.tags)
                if track and ranks.enabled:
                    import mlflow

                    mlflow.set_tags({"distributed_world_size": str(ranks.world_size), "distributed_backend": "gloo"
                                     if device.type == "cpu" else "nccl"})
                progress = show_progress()
                epoch_bar = tqdm(range(state.epoch + 1, epochs + 1), desc=f"train {model_name}", disable=not progress,
                                 unit="epoch")
                for epoch in epoch_bar:
                    tic = time.perf_counter()
                    loss, solver_stats = run_epoch(
                        model, optimizer, sampler, data,
                        epoch=epoch, n_iterations=n_iterations, warmup_days=profile.warmup_days,
                        window_days=profile.window_days, alpha=params.train.alpha, progress=progress, ranks=ranks,
                    )
                    record = {"epoch": epoch, "train_loss": loss, "iterations": n_iterations}
                    if val_bounds is not None and ranks.is_main:
                        record["val_loss"] = validation_loss(model, data, val_bounds, alpha=params.train.alpha,
                                                             chunk_basins=max(1, profile.batch_basins))
                    record["epoch_wall_s"] = time.perf_counter() - tic
                    state.epoch = epoch
                    state.history.append(record)
                    if ranks.is_main:  # one writer of the job's files and run
                        payload = {
                            "format": CHECKPOINT_FORMAT, "model": model_name, "seed": seed, "epoch": epoch,
                            "epochs": epochs, "setup": fingerprint, "structure": structure, "n_inputs": stats.n_inputs,
                            **_training_state(model, optimizer, sampler, device),
                            "history": state.history, "mlflow_run_id": state.mlflow_run_id,
                        }
                        _save_epoch(payload, out_dir, wdir)
                        tracker.log_epoch(epoch, record, solver_stats)
                    epoch_bar.set_postfix(loss=f"{loss:.4f}")
                    if on_epoch_end is not None:  # the epoch's checkpoint is on disk
                        on_epoch_end(epoch, record)
                wall = time.perf_counter() - started
                tracker.log_final(wall, peak_memory_mb(device), out_dir)
                tracker.log_model(distributed.unwrap(model.network), stats)
            if ranks.is_main:  # finished: nothing left to continue
                _remove_work(wdir, resolve_path(params.train.work_dir))
        return TrainResult(model_name, seed, epochs, state.history, out_dir, state.mlflow_run_id, wall)


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
    """Opens (or re-opens, on resume) the MLflow run of a (model, seed) and logs to it."""

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
        from benchmark.training.tracking_glue import open_run, run_params, run_tags

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

    def log_data(self) -> None:
        """The prepared dataset as the run's training input (name, source folder, DVC hash)."""
        if not self.enabled:
            return
        from benchmark import tracking

        tracking.log_prepared_data(self.params.data.processed_dir, self.params.profile, context="training")

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
        from benchmark.training.evaluate import TrainedNetwork
        from benchmark.training.mlflow_model import log_trained_model

        trained = TrainedNetwork(self.spec, network.state_dict(), stats, self.fingerprint, self.seed,
                                 self.state.epoch, self.state.mlflow_run_id)
        log_trained_model(trained, self.params)
