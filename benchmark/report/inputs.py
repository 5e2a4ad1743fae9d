"""Collect what the leaderboard shows: per-model metric files, predictions, training logs,
``hbvbench perf`` results, the published reference rows and provenance.

Two sources give the same :class:`ReportInputs`:

- ``files`` (default, what the DVC ``report`` stage uses): ``artifacts/eval/<model>/``,
  ``artifacts/baselines/<name>/`` (``metrics.json``, ``per_basin_metrics.csv``,
  ``predictions.nc``), ``artifacts/models/<model>/train_log.csv`` and ``reports/perf/*.json``;
- ``mlflow``: the latest finished run per model in the tracking store, its artifacts
  downloaded to a scratch folder (see :func:`collect_from_mlflow`).

Only model folders that exist are shown; nothing is required except at least one model.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark import repository
from benchmark.errors import DataError

#: Baseline folder names that are not δHBV variants (never given "dynamic parameters").
BASELINE_NAMES: frozenset[str] = frozenset({"lstm", "lstm_nh", "sacsma"})
#: Names the published tables use for models whose artifacts folder is named differently.
NAME_ALIASES: dict[str, str] = {"lstm_nh": "lstm"}
#: Per-epoch log file names, in order of preference (trainer; neuralhydrology baseline).
TRAIN_LOG_NAMES: tuple[str, ...] = ("train_log.csv", "epoch_losses.csv")


@dataclass
class ModelResult:
    """Everything the report knows about one model (or baseline).

    Attributes
    ----------
    name
        Registry or baseline name (``dhbv``, ``dhbv_adj``, ``lstm``, ``sacsma``...).
    per_basin
        One row per basin (index: 8-digit gauge id), the columns of ``per_basin_metrics.csv``.
    summary
        The flat ``metrics.json`` dict (medians, ``BFI_r``, ``n_basins``...).
    predictions
        Path of ``predictions.nc`` (test period), or None when the model folder has none.
    train_log
        Per-epoch training log (``train_log.csv``) or None.
    run_id
        MLflow run id when known.
    """

    name: str
    per_basin: pd.DataFrame
    summary: dict[str, Any]
    predictions: Path | None = None
    train_log: pd.DataFrame | None = None
    run_id: str | None = None
    source: Path | None = None
    run_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        """True for the LSTM and SAC-SMA baselines."""
        return self.name in BASELINE_NAMES


@dataclass
class ReportInputs:
    """The complete input of one report."""

    models: list[ModelResult]
    published: dict[str, pd.DataFrame]
    perf: list[dict[str, Any]]
    provenance: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def model(self, name: str) -> ModelResult | None:
        """The model called ``name`` (aliases resolved), or None."""
        name = NAME_ALIASES.get(name, name)
        return next((m for m in self.models if m.name == name), None)


# --------------------------------------------------------------------------- files


def read_per_basin(path: Path) -> pd.DataFrame:
    """Read a ``per_basin_metrics.csv`` with gauge ids kept as 8-digit strings.

    Raises
    ------
    DataError
        If the file cannot be parsed or has no basin column.
    """
    try:
        frame = pd.read_csv(path, dtype={"basin": str, "gauge_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read per-basin metrics {path}: {exc}") from None
    basin_col = next((c for c in ("basin", "gauge_id") if c in frame.columns), None)
    if basin_col is None:
        first = frame.columns[0]
        if str(first).startswith("Unnamed") or first == "":
            basin_col = first
        else:
            raise DataError(f"{path}: expected a 'basin' column of gauge ids, found columns {list(frame.columns)}")
    basins = frame[basin_col].astype(str).str.strip().str.zfill(8)
    frame = frame.drop(columns=[basin_col])
    frame.index = pd.Index(basins, name="basin")
    for column in frame.columns:
        if frame[column].dtype == object:
            converted = pd.to_numeric(frame[column].replace({"n/a": None, "": None}), errors="coerce")
            if converted.notna().sum() >= frame[column].replace({"n/a": None, "": None}).notna().sum():
                frame[column] = converted
    return frame


def read_summary(path: Path) -> dict[str, Any]:
    """Read a flat ``metrics.json``; ``"n/a"`` values become NaN.

    Raises
    ------
    DataError
        If the file is not a JSON object.
    """
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read metrics file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object of metrics, got {type(raw).__name__}")
    return {k: (math.nan if v in ("n/a", None) else v) for k, v in _flatten(raw).items()}


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_train_log(path: Path) -> pd.DataFrame | None:
    """Read a per-epoch ``train_log.csv`` (None when absent or empty)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read training log {path}: {exc}") from None
    return frame if len(frame) else None


def load_model_dir(directory: Path, *, train_log: Path | None = None) -> ModelResult | None:
    """Load one ``artifacts/eval/<model>`` or ``artifacts/baselines/<name>`` folder.

    Returns None for a folder without ``metrics.json`` and ``per_basin_metrics.csv`` (not
    evaluated yet). A folder with only one of the two is a half-written evaluation and
    raises :class:`DataError` naming the missing file.
    """
    metrics_path = directory / "metrics.json"
    per_basin_path = directory / "per_basin_metrics.csv"
    if not metrics_path.is_file() and not per_basin_path.is_file():
        return None
    for required in (metrics_path, per_basin_path):
        if not required.is_file():
            raise DataError(f"model folder {directory} is incomplete: {required.name} is missing")
    summary = read_summary(metrics_path)
    name = NAME_ALIASES.get(directory.name, directory.name)
    predictions = directory / "predictions.nc"
    run_id = next((str(summary[k]) for k in ("run_id", "mlflow_run_id") if isinstance(summary.get(k), str)), None)
    return ModelResult(
        name=name,
        per_basin=read_per_basin(per_basin_path),
        summary=summary,
        predictions=predictions if predictions.is_file() else None,
        train_log=read_train_log(train_log) if train_log is not None else None,
        run_id=run_id,
        source=directory,
    )


def read_published() -> dict[str, pd.DataFrame]:
    """The paper's Table 1, Table 2 and Table A2 rows (Song et al. 2024), as data.

    Read with :func:`baselines.published.load_published`; model names mapped to our artifact
    names (``lstm_nh`` -> ``lstm``). Returns ``{"table1": ..., "table2": ..., "tableA2": ...}``.
    """
    from baselines.published import load_published

    tables: dict[str, pd.DataFrame] = {}
    for key in ("table1", "table2", "tableA2"):
        frame = load_published(key)  # type: ignore[arg-type]
        frame["model"] = frame["model"].map(lambda n: NAME_ALIASES.get(str(n), str(n)))
        tables[key] = frame
    return tables


def read_perf(perf_dir: Path) -> list[dict[str, Any]]:
    """Every ``hbvbench perf`` result under ``perf_dir`` (``*.json``), newest file last."""
    if not perf_dir.is_dir():
        return []
    results = []
    for path in sorted(perf_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read perf result {path}: {exc}") from None
        if isinstance(data, dict):
            data = {**data, "_file": str(path)}
            results.append(data)
    return results


# --------------------------------------------------------------------------- provenance


def collect_provenance(root: Path, profile: str | None, run_ids: dict[str, str]) -> dict[str, str]:
    """Git commit, DVC data hash (``dvc.lock``, stage ``prepare``), profile, MLflow run ids, date."""
    from benchmark import tracking

    git = tracking.git_state(root)
    commit = git.get("git_commit", "unknown (not a git checkout)")
    if git.get("git_dirty") == "true":
        commit += " (with uncommitted changes)"
    data_hash = tracking.dvc_data_hash(root)
    return {
        "git commit": commit,
        "DVC data hash": data_hash or "n/a (no prepare stage in dvc.lock)",
        "profile": profile or "unknown",
        "MLflow run ids": ", ".join(f"{m}: {r}" for m, r in sorted(run_ids.items())) or "n/a (none recorded)",
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }


def mlflow_runs(experiment: str, names: list[str], profile: str | None = None) -> dict[str, tuple[str, dict[str, float]]]:
    """Newest FINISHED MLflow run per model name (tag ``model``) of ``profile`` (tag
    ``profile``, when given): ``{name: (run_id, metrics)}``.

    Read from an existing store only: a missing default SQLite store is not created (the
    report never writes to MLflow). ``metrics`` holds the run's final values (e.g.
    ``train_wall_s``, ``train_peak_memory_mb``).
    """
    from benchmark import tracking

    db = tracking._sqlite_path(tracking.tracking_uri())
    if db is not None and not db.is_file():
        return {}
    try:
        query = "attributes.status = 'FINISHED'" + (f" and tags.profile = '{profile}'" if profile else "")
        runs = tracking.query_runs(experiment, query, missing_ok=True)
    except Exception:  # noqa: BLE001 - provenance only: an unreachable store leaves the ids n/a
        return {}
    if "tags.model" not in runs.columns:
        return {}
    found: dict[str, tuple[str, dict[str, float]]] = {}
    for _, row in runs.iterrows():  # newest first
        name = NAME_ALIASES.get(str(row["tags.model"]), str(row["tags.model"]))
        if name in names and name not in found:
            found[name] = (str(row["run_id"]), _run_metrics(row))
    return found


def _run_metrics(row: pd.Series) -> dict[str, float]:
    return {str(k)[len("metrics."):]: float(v) for k, v in row.items()
            if str(k).startswith("metrics.") and isinstance(v, (int, float)) and not pd.isna(v)}


def load_config(params_path: Path | None) -> Any:
    """The validated ``params.yaml`` (None when it cannot be read: defaults are used)."""
    from benchmark.config import load_params

    try:
        return load_params(params_path)
    except Exception:  # noqa: BLE001 - the report still renders from the default folders
        return None


# --------------------------------------------------------------------------- collectors


def default_dirs(root: Path, params: Any) -> dict[str, Path]:
    """Where the pipeline writes: eval, baselines, models (from ``params.yaml``) and perf."""
    train = getattr(params, "train", None)
    baselines = getattr(params, "baselines", None)
    dirs = {
        "eval": Path(getattr(train, "eval_dir", "artifacts/eval")),
        "baselines": Path(getattr(baselines, "out_dir", "artifacts/baselines")),
        "models": Path(getattr(train, "models_dir", "artifacts/models")),
        "perf": Path("reports/perf"),
    }
    return {k: (v if v.is_absolute() else root / v) for k, v in dirs.items()}


def find_train_log(*folders: Path) -> Path | None:
    """The first per-epoch log (:data:`TRAIN_LOG_NAMES`) found in ``folders``."""
    for folder in folders:
        for name in TRAIN_LOG_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def collect_from_files(
    *,
    root: Path | None = None,
    eval_dir: Path | None = None,
    baselines_dir: Path | None = None,
    models_dir: Path | None = None,
    perf_dir: Path | None = None,
    params_path: Path | None = None,
    lookup_run_ids: bool = True,
) -> ReportInputs:
    """Gather the report's inputs from the pipeline's files.

    Parameters
    ----------
    root
        Repository root (for ``dvc.lock`` and git); relative folders resolve against it
        (default: :func:`benchmark.repository.root`).
    eval_dir, baselines_dir, models_dir, perf_dir
        Default: ``train.eval_dir``, ``baselines.out_dir``, ``train.models_dir`` of
        ``params.yaml`` and ``reports/perf``.
    params_path
        ``params.yaml`` to read the profile and folders from (default: the repository's).
    lookup_run_ids
        Read the MLflow run id of each model from an existing tracking store.

    Raises
    ------
    DataError
        If no model folder holds metrics, or a metric file is unreadable.
    """
    root = root if root is not None else repository.root()
    params = load_config(params_path)
    dirs = default_dirs(root, params)
    for key, given in (("eval", eval_dir), ("baselines", baselines_dir), ("models", models_dir), ("perf", perf_dir)):
        if given is not None:
            dirs[key] = given if Path(given).is_absolute() else root / given
    profile = getattr(params, "profile", None)
    models: list[ModelResult] = []
    notes: list[str] = []
    for parent in (dirs["eval"], dirs["baselines"]):
        if not parent.is_dir():
            continue
        for directory in sorted(p for p in parent.iterdir() if p.is_dir()):
            log = find_train_log(dirs["models"] / directory.name, directory)
            result = load_model_dir(directory, train_log=log)
            if result is None:
                continue
            other = predictions_profile(result.predictions)
            if profile is not None and other is not None and other != profile:
                notes.append(f"{directory} left out: evaluated on profile {other!r}, the active profile is {profile!r}.")
                continue
            models.append(result)
    if not models:
        raise DataError(
            f"no evaluated model found: expected <model>/metrics.json and per_basin_metrics.csv under "
            f"{dirs['eval']} or {dirs['baselines']} (run `dvc repro` or `hbvbench evaluate` first)"
        )
    run_ids = {m.name: m.run_id for m in models if m.run_id}
    if lookup_run_ids and params is not None:
        found = mlflow_runs(params.train.experiment, [m.name for m in models], profile)
        for model in models:
            if model.name in found:
                model.run_id, model.run_metrics = model.run_id or found[model.name][0], found[model.name][1]
        run_ids = {m.name: m.run_id for m in models if m.run_id}
    return ReportInputs(
        models=models,
        published=read_published(),
        perf=read_perf(dirs["perf"]),
        provenance=collect_provenance(root, profile, run_ids),
        notes=notes,
    )


def predictions_profile(path: Path | None) -> str | None:
    """The ``profile`` attribute of a ``predictions.nc`` (None when absent or unreadable)."""
    if path is None:
        return None
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            value = ds.attrs.get("profile")
    except (OSError, ValueError):
        return None  # the figures step reports an unreadable file with its name
    return str(value) if value is not None else None


# --------------------------------------------------------------------------- MLflow

MLFLOW_ARTIFACTS: tuple[tuple[str, str], ...] = (
    ("per_basin_metrics.csv", "per_basin_metrics.csv"),
    ("evaluation/metrics.json", "metrics.json"),
    ("metrics.json", "metrics.json"),
    ("predictions.nc", "predictions.nc"),
)
LOSS_METRIC_KEYS: tuple[str, ...] = ("train_loss", "valid_loss", "val_loss")


def _download(client: Any, run_id: str, artifact: str, dest: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, artifact, str(dest)))
    except Exception:  # noqa: BLE001 - MLflow raises several types for an absent artifact
        return None


def _history_frame(client: Any, run_id: str) -> pd.DataFrame | None:
    columns: dict[str, pd.Series] = {}
    for key in LOSS_METRIC_KEYS:
        try:
            history = client.get_metric_history(run_id, key)
        except Exception:  # noqa: BLE001 - metric never logged
            continue
        if history:
            columns[key] = pd.Series({int(m.step): float(m.value) for m in history})
    if not columns:
        return None
    frame = pd.DataFrame(columns).sort_index()
    frame.insert(0, "epoch", frame.index.to_numpy())
    return frame.reset_index(drop=True)


def collect_from_mlflow(
    scratch: Path,
    *,
    root: Path | None = None,
    experiment: str | None = None,
    profile: str | None = None,
    perf_dir: Path | None = None,
    params_path: Path | None = None,
) -> ReportInputs:
    """Gather the report's inputs from MLflow: the newest FINISHED run per model (tag ``model``)
    of the profile, with its ``per_basin_metrics.csv``, ``metrics.json`` and ``predictions.nc``
    artifacts downloaded under ``scratch`` and its loss history as the training curve.

    Raises
    ------
    DataError
        If no run of the experiment carries a per-basin metrics artifact.
    """
    from benchmark import tracking

    root = root if root is not None else repository.root()
    params = load_config(params_path)
    experiment = experiment or (params.train.experiment if params is not None else "hbvbench")
    profile = profile or getattr(params, "profile", None)
    filter_string = "attributes.status = 'FINISHED'" + (f" and tags.profile = '{profile}'" if profile else "")
    try:
        runs = tracking.query_runs(experiment, filter_string)
    except Exception as exc:  # noqa: BLE001 - report the store's answer to the user
        raise DataError(f"cannot read MLflow experiment {experiment!r} at {tracking.tracking_uri()}: {exc}") from None
    client = tracking.client()
    models: list[ModelResult] = []
    seen: set[str] = set()
    for _, row in runs.iterrows():  # newest first
        tag = row.get("tags.model")
        if not isinstance(tag, str) or NAME_ALIASES.get(tag, tag) in seen:
            continue
        name = NAME_ALIASES.get(tag, tag)
        folder = scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        got = {}
        for artifact, local in MLFLOW_ARTIFACTS:
            if local in got:
                continue
            path = _download(client, str(row["run_id"]), artifact, folder)
            if path is not None and path.is_file():
                target = folder / local
                if path != target:
                    path.replace(target)
                got[local] = target
        if "per_basin_metrics.csv" not in got:
            continue  # a training-only run: not evaluated yet
        summary = read_summary(got["metrics.json"]) if "metrics.json" in got else {
            str(k)[len("metrics.test."):] if str(k).startswith("metrics.test.") else str(k): v
            for k, v in row.items() if str(k).startswith("metrics.")
        }
        models.append(ModelResult(
            name=name, per_basin=read_per_basin(got["per_basin_metrics.csv"]), summary=summary,
            predictions=got.get("predictions.nc"), train_log=_history_frame(client, str(row["run_id"])),
            run_id=str(row["run_id"]), source=folder, run_metrics=_run_metrics(row),
        ))
        seen.add(name)
    if not models:
        raise DataError(f"no evaluated run (FINISHED, with per_basin_metrics.csv) in MLflow experiment {experiment!r}"
                        + (f" for profile {profile!r}" if profile else "") + f" at {tracking.tracking_uri()}")
    dirs = default_dirs(root, params)
    perf = perf_dir if perf_dir is not None else dirs["perf"]
    return ReportInputs(
        models=models,
        published=read_published(),
        perf=read_perf(perf if Path(perf).is_absolute() else root / perf),
        provenance=collect_provenance(root, profile, {m.name: m.run_id for m in models if m.run_id}),
    )
