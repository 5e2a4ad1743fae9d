"""What a study leaves behind: ``best_params.yaml`` and the plots on the MLflow parent run.

``best_params.yaml`` (written atomically) holds the best trial's number, objective value,
MLflow run id and ``hyperparams``: the sampled values plus the network's shape
(``hidden_size``, ``nmul``). ``hbvbench train --hyperparams best_params.yaml`` trains with
them; ``hbvbench train --init-from <study>`` also starts from that trial's network.

Plots are plain matplotlib (PNG): the optimization history (every finished trial's value and
the running best) and the hyperparameter importances (Optuna's default evaluator, PED-ANOVA
in Optuna 5; skipped, with the reason logged, when they cannot be computed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmark import atomic, tracking
from benchmark.training.checkpoint import load_torch_file
from benchmark.tuning.space import STRUCTURAL_HYPERPARAMETERS

BEST_PARAMS_NAME = "best_params.yaml"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"


def trial_counts(study: Any) -> dict[str, int]:
    """Number of trials per state (``COMPLETE``, ``FAIL``, ``PRUNED``, ``RUNNING``, ...)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def best_summary(study: Any) -> dict[str, Any] | None:
    """The best completed trial as the ``best_params.yaml`` mapping; None before any completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    network = best.user_attrs.get("network_path")
    hyperparams = dict(best.params)
    full = _network_hyperparams(network)
    for name in STRUCTURAL_HYPERPARAMETERS:
        if name in full:
            hyperparams.setdefault(name, full[name])
    return {
        "study": study.study_name,
        "model": study.user_attrs.get("model"),
        "profile": study.user_attrs.get("profile"),
        "objective": f"{study.user_attrs.get('aggregate')} {study.user_attrs.get('metric')} "
        f"on {study.user_attrs.get('validation')} ({study.direction.name.lower()})",
        "best_trial": best.number,
        "best_value": float(best.value),
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "network_path": network,
        "hyperparams": hyperparams,
    }


def _network_hyperparams(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).is_file():
        return {}

    payload = load_torch_file(Path(path), "trial network")
    return dict(payload.get("hyperparams", {})) if isinstance(payload, dict) else {}


def write_best_params(summary: dict[str, Any], path: Path) -> None:
    """Write ``summary`` as YAML through a temporary file and a rename."""
    atomic.write_yaml(path, summary)


def history_figure(study: Any) -> Any:
    """Objective of each finished trial against its number, and the running best (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    complete.sort(key=lambda t: t.number)
    fig, ax = plt.subplots(figsize=(7, 4))
    numbers = [t.number for t in complete]
    values = [float(t.value) for t in complete]
    ax.plot(numbers, values, "o", label="trial")
    better = max if study.direction.name == "MAXIMIZE" else min
    running: list[float] = []
    for value in values:
        running.append(value if not running else better(running[-1], value))
    ax.step(numbers, running, where="post", color="C3", label="best so far")
    failed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED))]
    if failed and values:
        ax.plot(failed, [min(values)] * len(failed), "x", color="grey", label="failed / pruned")
    ax.set_xlabel("trial number")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(str(study.user_attrs.get("metric", "objective")) + " (validation)")
    ax.set_title(f"optimization history: {study.study_name}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def importance_figure(study: Any) -> tuple[Any | None, dict[str, float], str | None]:
    """Horizontal bar chart of hyperparameter importances, the importances, or the reason there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        return None, {}, str(exc)
    if not importances:
        return None, {}, "no hyperparameter varied across the completed trials"
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel("importance (Optuna default evaluator: PED-ANOVA)")
    ax.set_title(f"hyperparameter importance: {study.study_name}")
    fig.tight_layout()
    return fig, {k: float(v) for k, v in importances.items()}, None


def log_study_summary(study: Any, summary: dict[str, Any] | None) -> None:
    """Log counts, best value and params, the trials table and both plots to the active (parent) run."""
    import matplotlib.pyplot as plt
    import mlflow

    counts = trial_counts(study)
    mlflow.log_metrics({f"n_trials_{state.lower()}": float(n) for state, n in counts.items()})
    if summary is not None:
        mlflow.log_metric("best_value", summary["best_value"])
        mlflow.set_tags({"best_trial": str(summary["best_trial"]), "best_run_id": str(summary["mlflow_run_id"])})
        mlflow.log_dict(summary, "best_params.yaml")
    frame = study.trials_dataframe()
    if not frame.empty:
        tracking.log_dataframe(frame, "trials.csv", index=False)
    fig = history_figure(study)
    tracking.log_figure(fig, HISTORY_PLOT)
    plt.close(fig)
    fig, importances, reason = importance_figure(study)
    if fig is not None:
        tracking.log_figure(fig, IMPORTANCE_PLOT)
        mlflow.log_metrics({f"importance_{k}": v for k, v in importances.items() if math.isfinite(v)})
        plt.close(fig)
    else:
        mlflow.set_tag("importance_skipped", str(reason)[:500])
