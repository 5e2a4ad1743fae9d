"""``hbvbench tune`` as a function: open the study and its MLflow parent run, run trials, summarize.

The parent run (experiment ``tune.experiment``, name = the study) is created once per study;
its id is stored in the study's user attribute ``mlflow_parent_run_id`` and the run is
reopened by every later ``hbvbench tune`` of the same study, so all trials of a study hang
under one parent however many times (or on however many machines) it was run. After the
trials, the study's summary (counts, best value/params, trials table, history and importance
plots) is logged on the parent and ``best_params.yaml`` is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import locks, tracking
from benchmark import threads as thread_budgets  # run_tuning has a parameter named threads
from benchmark.config import Params, resolve_path
from benchmark.errors import ConfigError, HbvbenchError
from benchmark.models.registry import get_model_spec
from benchmark.tuning.objective import metric_direction
from benchmark.tuning.space import validation_period
from benchmark.tuning.study import (
    WorkerTask,
    default_study_name,
    fail_dead_trials,
    make_storage,
    open_study,
    optimize,
    run_workers,
    split_trials,
    storage_url,
)
from benchmark.tuning.summary import BEST_PARAMS_NAME, best_summary, log_study_summary, trial_counts, write_best_params


@dataclass(frozen=True)
class TuneResult:
    """Outcome of :func:`run_tuning`."""

    study_name: str
    storage_url: str
    parent_run_id: str
    counts: dict[str, int]
    best: dict[str, Any] | None
    best_params_path: Path | None
    dead_trials_failed: list[int]


def _parent_run_id(study: Any) -> str | None:
    """The stored parent run id when that run exists in the current MLflow store."""
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if not run_id:
        return None
    try:
        tracking.client().get_run(run_id)
    except MlflowException:
        return None
    return str(run_id)


def _parent_params(params: Params, model: str, metric: str, storage: str) -> dict[str, Any]:
    tune = params.tune.model_dump(mode="json")
    tune.pop("trials", None)
    tune.pop("storage", None)
    return {"tune": tune, "model": model, "metric": metric, "profile": params.profile, "storage": storage.split("@")[-1]}


def run_tuning(
    params: Params,
    model: str | None = None,
    *,
    trials: int | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    timeout_s: float | None = None,
    workers: int = 1,
    metric: str | None = None,
    best_params_path: Path | None = None,
    dataset: Any = None,
    threads: int | None = None,
) -> TuneResult:
    """Run ``trials`` more trials of a study (creating it on first use) and summarize it.

    Parameters
    ----------
    params
        The validated configuration; ``tune:`` gives the defaults of everything below.
    model
        Registry name of the tuned model (default ``tune.model``).
    trials
        New trials in this call, split over the workers (default ``tune.trials``).
    study_name
        Default ``tune.study`` or ``<model>-<profile>``.
    storage
        Optuna RDB URL (default ``tune.storage`` or ``sqlite:///<repo>/optuna.db``).
    timeout_s
        Stop starting new trials after this many seconds (per worker).
    workers
        Worker processes (``spawn``) sharing the study; 1 runs in this process.
    metric
        Objective basin metric (default ``tune.metric``), aggregated by ``tune.aggregate``.
    best_params_path
        Where to write ``best_params.yaml`` (default ``<tune.out_dir>/<study>/best_params.yaml``).
    dataset
        The processed dataset for in-process trials (default: loaded from ``params``).
    threads
        ``--threads`` of the command line: torch threads of every worker. Default
        ``train.threads``, else the cores split among the workers (:mod:`benchmark.threads`).

    Returns
    -------
    TuneResult

    Raises
    ------
    ConfigError
        Bad model, metric, storage, worker count or a study that optimizes something else.
    KeyboardInterrupt
        After Ctrl-C, with the running trials marked FAIL and the MLflow runs KILLED.
    benchmark.locks.LockError
        Another ``hbvbench tune`` is running the same study folder on this machine (run
        several workers with ``--workers N`` instead).
    benchmark.stores.StoreError
        The MLflow store or the Optuna storage is corrupt, locked or unreachable.
    """
    model = model or params.tune.model
    spec, metric, trials, workers = _check_request(params, model, metric, trials, workers)
    name = study_name or default_study_name(params, model)
    url = storage_url(params, storage)
    tracking.check_store()
    storage_obj = make_storage(url, params.tune.heartbeat_s)
    study_dir = resolve_path(params.tune.out_dir) / name
    with locks.hold(study_dir, f"hbvbench tune --model {model} --study {name}"):  # one tuning command per study folder
        study = open_study(params, model, name, storage_obj, metric)
        dead = fail_dead_trials(study)

        tags = dict(tracking.standard_tags(params.profile, spec))
        tags.update({"model": model, "hbvbench.kind": "tuning_study", "optuna.study": name})
        parent_id = _parent_run_id(study)
        with tracking.run(
            params.tune.experiment,
            name,
            tags=tags,
            params=None if parent_id else _parent_params(params, model, metric, url),
            run_id=parent_id,
        ) as parent:
            parent_id = parent.info.run_id
            study.set_user_attr("mlflow_parent_run_id", parent_id)
            tasks = [
                WorkerTask(params, model, name, url, metric, n, timeout_s, parent_id, i,
                           _threads_per_worker(threads, params, workers))
                for i, n in enumerate(split_trials(trials, workers))
            ]
            _run_trials(tasks, dataset)
            summary = best_summary(study)
            path = best_params_path or resolve_path(params.tune.out_dir) / name / BEST_PARAMS_NAME
            if summary is not None:
                write_best_params(summary, path)
            log_study_summary(study, summary)
    return TuneResult(name, url, parent_id, trial_counts(study), summary, path if summary else None, dead)


def _check_request(params: Params, model: str, metric: str | None, trials: int | None,
                   workers: int) -> tuple[Any, str, int, int]:
    """The model's registry entry, the metric, the trial and worker counts of a tuning request (ConfigError when bad)."""
    try:
        spec = get_model_spec(model)
    except KeyError as exc:
        raise ConfigError(f"unknown model {model!r}: {exc}") from None
    metric = metric or params.tune.metric
    metric_direction(metric)
    validation_period(params)
    trials = trials if trials is not None else params.tune.trials
    if trials < 1 or workers < 1:
        raise ConfigError(f"--trials and --workers must be >= 1 (got {trials}, {workers})")
    return spec, metric, trials, min(workers, trials)


def _run_trials(tasks: list[WorkerTask], dataset: Any) -> None:
    """One task in this process, several in worker processes (HbvbenchError naming the workers that failed)."""
    if len(tasks) == 1:
        optimize(tasks[0], dataset)
        return
    codes = run_workers(tasks)
    bad = [f"worker {i}: exit {c}" for i, c in enumerate(codes) if c != 0]
    if bad:
        raise HbvbenchError(f"tuning workers failed ({', '.join(bad)}); see their messages above")


def _threads_per_worker(explicit: int | None, params: Params, workers: int) -> int | None:
    """Torch threads of each worker (None: the process's own setting, for a single in-process worker)."""
    if workers == 1:
        return None  # trials run in this process, under the command's own budget
    return thread_budgets.choose(explicit, params.train.threads, workers).threads
