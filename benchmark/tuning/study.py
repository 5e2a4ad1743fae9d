"""Optuna studies on RDB storage: create or continue, fail dead trials, run workers.

Storage: any URL Optuna's ``RDBStorage`` takes; by default ``sqlite:///<repo>/optuna.db``.
A study is created with ``load_if_exists``, so running the same ``hbvbench tune`` again adds
trials to it. Its user attributes pin what it optimizes (model, profile, metric, validation
period); a rerun that would change them is refused instead of mixing incomparable trials.

Robustness:

* Ctrl-C: Optuna marks the running trial FAIL before the KeyboardInterrupt propagates, the
  MLflow runs end KILLED, and nothing else is written; the next run continues the study.
* A worker killed outright (SIGKILL, power loss) leaves its trial RUNNING. At start-up,
  :func:`fail_dead_trials` fails RUNNING trials whose recorded worker process (same host)
  no longer exists; on other hosts Optuna's heartbeat (``tune.heartbeat_s``) fails them
  once they are stale.
* SQLite: every connection waits up to 60 s for the database lock, so several worker
  processes can share one file. For many machines use PostgreSQL (see the README section).

``--workers N`` starts N ``spawn`` processes that each call ``study.optimize`` with their
share of the trials; the same command started on several machines against one storage URL
shares the study the same way.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import repository, stores
from benchmark.config import Params
from benchmark.data.dataset import load_dataset
from benchmark.errors import ConfigError, HbvbenchError
from benchmark.locks import process_alive
from benchmark.tuning.objective import Objective, metric_direction
from benchmark.tuning.space import validation_period

DEFAULT_STORAGE_NAME = "optuna.db"
SQLITE_LOCK_TIMEOUT_S = 60
PARENT_RUN_ATTR = "mlflow_parent_run_id"
#: Study user attributes that must not change between runs of one study.
PINNED_ATTRS = ("model", "profile", "metric", "aggregate", "validation")


def default_storage_url() -> str:
    """``sqlite:///<absolute repo root>/optuna.db`` (:func:`benchmark.repository.store_root`)."""
    return f"sqlite:///{repository.store_root() / DEFAULT_STORAGE_NAME}"


def storage_url(params: Params, override: str | None = None) -> str:
    """``--storage``, else ``tune.storage``, else :func:`default_storage_url`; relative SQLite paths made absolute."""
    url = override or params.tune.storage or default_storage_url()
    prefix = "sqlite:///"
    if url.startswith(prefix) and not Path(url[len(prefix):]).is_absolute():
        url = prefix + str(Path(url[len(prefix):]).absolute())
    return url


def make_storage(url: str, heartbeat_s: int | None = None) -> Any:
    """An ``optuna.storages.RDBStorage`` for ``url`` (SQLite waits for locks; heartbeat optional).

    Raises
    ------
    benchmark.stores.StoreError
        When the URL cannot be opened (bad scheme, missing driver, unreachable server, a
        corrupt SQLite file, a SQLite file locked for longer than the bounded retries).
    """
    import optuna

    fix = "pass another --storage (or set tune.storage)"
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        if url.startswith("sqlite:///"):
            stores.check_sqlite(Path(url[len("sqlite:///"):].split("?", 1)[0]), url, "Optuna storage", fix)
    kwargs: dict[str, Any] = {}
    if heartbeat_s:
        kwargs.update(heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s)
    try:
        with warnings.catch_warnings():  # heartbeat_interval is flagged experimental; it is what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise stores.StoreError(f"Optuna storage {url} cannot be opened ({type(exc).__name__}: {first_line}); "
                                f"check the URL, the database server and its driver, or {fix}") from None


def default_study_name(params: Params, model: str) -> str:
    """``tune.study`` or ``<model>-<profile>``."""
    return params.tune.study or f"{model}-{params.profile}"


def study_attrs(params: Params, model: str, metric: str) -> dict[str, str]:
    """What a study optimizes (pinned in its user attributes)."""
    period = validation_period(params)
    return {
        "model": model,
        "profile": params.profile,
        "metric": metric,
        "aggregate": params.tune.aggregate,
        "validation": f"{period.start}..{period.end}",
    }


def open_study(params: Params, model: str, name: str, storage: Any, metric: str, *, worker_index: int = 0) -> Any:
    """Create study ``name`` or load it; refuse to continue one that optimizes something else.

    The sampler is seeded from ``tune.seed`` (or the profile's first seed), the worker
    index and the number of trials so far: reproducible for one worker, different across
    workers.
    """
    import optuna

    tune = params.tune
    direction = metric_direction(metric)
    pruner: Any = (
        optuna.pruners.MedianPruner(
            n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=tune.pruner_warmup_epochs + 1
        )
        if tune.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
        n_before = len(existing.trials)
    except KeyError:
        n_before = 0
    seed = (tune.seed if tune.seed is not None else params.active.seeds[0]) + 7919 * worker_index + n_before
    sampler: Any = (
        optuna.samplers.TPESampler(seed=seed) if tune.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.create_study(
        study_name=name, storage=storage, direction=direction, sampler=sampler, pruner=pruner, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study {name!r} was created to {study.direction.name.lower()}, but {metric} needs {direction}")
    wanted = study_attrs(params, model, metric)
    have = study.user_attrs
    changed = [f"{k}: {have[k]!r} -> {wanted[k]!r}" for k in PINNED_ATTRS if k in have and have[k] != wanted[k]]
    if changed:
        raise ConfigError(
            f"study {name!r} already optimizes a different setup ({'; '.join(changed)}); pass another --study name"
        )
    for key, value in wanted.items():
        if key not in have:
            study.set_user_attr(key, value)
    return study


def fail_dead_trials(study: Any) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this host is gone; return their numbers.

    Uses Optuna's storage API on the study's storage with the trials' storage ids (Optuna has
    no public call to fail another process's trial; its heartbeat does the same once stale).
    """
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("worker_pid")
        if trial.user_attrs.get("worker_host") != host or not isinstance(pid, int) or process_alive(pid):
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", f"worker process {pid} on {host} died")
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another process finished it first
            continue
        failed.append(trial.number)
    return failed


def split_trials(n_trials: int, workers: int) -> list[int]:
    """``n_trials`` split as evenly as possible over ``workers`` (earlier workers get the rest)."""
    return [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]


@dataclass(frozen=True)
class WorkerTask:
    """Everything a worker process needs (picklable for ``spawn``)."""

    params: Params
    model: str
    study_name: str
    storage_url: str
    metric: str
    n_trials: int
    timeout_s: float | None
    parent_run_id: str | None
    worker_index: int
    threads: int | None = None


def optimize(task: WorkerTask, dataset: Any = None) -> None:
    """Run ``task.n_trials`` trials of the study in this process (failed trials do not stop it)."""
    import torch

    if task.threads:
        torch.set_num_threads(task.threads)
    if dataset is None:
        dataset = load_dataset(params=task.params)
    storage = make_storage(task.storage_url, task.params.tune.heartbeat_s)
    study = open_study(task.params, task.model, task.study_name, storage, task.metric, worker_index=task.worker_index)
    objective = Objective(task.params, task.model, task.study_name, task.parent_run_id, dataset, task.worker_index)
    study.optimize(objective, n_trials=task.n_trials, timeout=task.timeout_s, catch=(Exception,), gc_after_trial=True)


def _worker_main(task: WorkerTask) -> None:
    """Entry point of a spawned worker: errors are printed, never raised as tracebacks."""
    import sys

    try:
        optimize(task)
    except HbvbenchError as exc:
        print(f"hbvbench tune worker {task.worker_index}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(tasks: list[WorkerTask]) -> list[int]:
    """Start one ``spawn`` process per task, wait for all; return their exit codes.

    Ctrl-C in the parent is forwarded to the workers as SIGINT (each fails its running trial
    cleanly) and re-raised once they have exited.
    """
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, args=(task,), name=f"tune-worker-{task.worker_index}") for task in tasks]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
        raise
    return [int(process.exitcode or 0) for process in processes]
