"""Collect what the leaderboard shows: per-model metric files, predictions, training logs,
``hbvbench perf`` results, the published reference rows and provenance.

Two sources give the same :class:`ReportInputs`:

- ``files`` (default, what the DVC ``report`` stage uses): ``artifacts/eval/<model>/``
  (the profile's first seed) and its ``seed_<S>/`` subfolders (the other seeds),
  ``artifacts/baselines/<name>/`` (``metrics.json``, ``per_basin_metrics.csv``,
  ``predictions.nc``), ``artifacts/models/<model>[/seed_<S>]/train_log.csv`` and
  ``reports/perf/*.json``;
- ``mlflow``: the latest finished run per model and seed in the tracking store, its
  artifacts downloaded to a scratch folder (see :func:`collect_from_mlflow`).

A model with several seeds also gets its seed ensemble scored (the mean over the seeds of
the daily flows, :mod:`benchmark.ensemble`), which needs the processed dataset. Only model
folders that exist are shown; nothing is required except at least one model.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmark import repository
from benchmark.artifacts import CHECKPOINT_NAME, SEED_FOLDER_PREFIX, seed_folder_name
from benchmark.errors import DataError

#: Baseline folder names that are not δHBV variants (never given "dynamic parameters").
BASELINE_NAMES: frozenset[str] = frozenset({"lstm", "lstm_nh", "sacsma"})
#: Names the published tables use for models whose artifacts folder is named differently.
NAME_ALIASES: dict[str, str] = {"lstm_nh": "lstm"}
#: Per-epoch log file names, in order of preference (trainer; neuralhydrology baseline).
TRAIN_LOG_NAMES: tuple[str, ...] = ("train_log.csv", "epoch_losses.csv")


@dataclass
class SeedRun:
    """One trained and evaluated (model, seed).

    Attributes
    ----------
    seed
        The training seed (None when no file names it).
    per_basin
        One row per basin (index: 8-digit gauge id), the columns of ``per_basin_metrics.csv``.
    summary
        The flat ``metrics.json`` dict (medians, ``BFI_r``, ``n_basins``...).
    predictions
        Path of ``predictions.nc`` (test period), or None when the folder has none.
    train_log
        Per-epoch training log (``train_log.csv``) or None.
    run_id
        MLflow run id when known.
    source
        The folder the files were read from.
    run_metrics
        Final metrics of the MLflow run (``train_wall_s``...) when a tracking store has it.
    run_params
        Parameters of that MLflow run (the training setup: ``batch_basins``, ``window_days``...).
    setup
        The training setup recorded in the run's ``checkpoint.pt`` (profile, basins, sizes,
        ``iterations_per_epoch``...; :func:`benchmark.training.trainer.setup_fingerprint`),
        empty when no checkpoint was found.
    """

    seed: int | None
    per_basin: pd.DataFrame
    summary: dict[str, Any]
    predictions: Path | None = None
    train_log: pd.DataFrame | None = None
    run_id: str | None = None
    source: Path | None = None
    run_metrics: dict[str, float] = field(default_factory=dict)
    run_params: dict[str, str] = field(default_factory=dict)
    setup: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnsembleScore:
    """The scores of a model's ensemble-mean prediction (mean over its seeds of the daily flows)."""

    seeds: tuple[int | None, ...]
    per_basin: pd.DataFrame
    summary: dict[str, Any]


@dataclass
class ModelResult:
    """Everything the report knows about one model (or baseline): one :class:`SeedRun` per
    training seed, the profile's first seed first, and the seed ensemble when scored.

    The per-basin table of a model (:attr:`per_basin`) is, per basin and metric, the mean
    over its seeds of the per-seed values (a single seed's own values when it has one);
    a basin missing or NaN in any seed is NaN. Everything else that belongs to one run
    (predictions, training log, run id) is the first seed's (:attr:`primary`).
    """

    name: str
    runs: list[SeedRun]
    ensemble: EnsembleScore | None = None
    _seed_mean: pd.DataFrame | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.runs:
            raise DataError(f"model {self.name!r} has no evaluated seed")

    @classmethod
    def single(cls, name: str, per_basin: pd.DataFrame, summary: dict[str, Any] | None = None, **run: Any) -> ModelResult:
        """A model with one run (``run``: the other :class:`SeedRun` fields)."""
        return cls(name, [SeedRun(run.pop("seed", None), per_basin, summary or {}, **run)])

    @property
    def primary(self) -> SeedRun:
        """The profile's first seed (the one a single-seed pipeline trains)."""
        return self.runs[0]

    @property
    def seeds(self) -> tuple[int | None, ...]:
        """The training seeds, the primary first."""
        return tuple(run.seed for run in self.runs)

    @property
    def per_basin(self) -> pd.DataFrame:
        """Per-basin metrics, averaged over the seeds (see the class docstring)."""
        if self._seed_mean is None:
            self._seed_mean = seed_mean(self.runs)
        return self._seed_mean

    @property
    def summary(self) -> dict[str, Any]:
        """The primary run's ``metrics.json``."""
        return self.primary.summary

    @property
    def predictions(self) -> Path | None:
        """The primary run's ``predictions.nc``."""
        return self.primary.predictions

    @property
    def train_log(self) -> pd.DataFrame | None:
        """The primary run's training log."""
        return self.primary.train_log

    @property
    def run_id(self) -> str | None:
        """The primary run's MLflow run id."""
        return self.primary.run_id

    @property
    def source(self) -> Path | None:
        """The primary run's folder."""
        return self.primary.source

    @property
    def run_metrics(self) -> dict[str, float]:
        """The primary run's MLflow metrics."""
        return self.primary.run_metrics

    @property
    def is_baseline(self) -> bool:
        """True for the LSTM and SAC-SMA baselines."""
        return self.name in BASELINE_NAMES


def seed_mean(runs: list[SeedRun]) -> pd.DataFrame:
    """Per basin and column, the mean over the runs (NaN where any run lacks a finite value).

    One run: its own table, unchanged. Columns and basins: those of the first run.
    """
    if len(runs) == 1:
        return runs[0].per_basin
    first = runs[0].per_basin
    numeric = [c for c in first.columns if all(c in r.per_basin.columns for r in runs)
               and all(pd.api.types.is_numeric_dtype(r.per_basin[c]) for r in runs)]
    stacked = np.stack([r.per_basin.reindex(index=first.index, columns=numeric).to_numpy(dtype=float) for r in runs])
    with np.errstate(invalid="ignore"):
        mean = np.where(np.all(np.isfinite(stacked), axis=0), stacked.mean(axis=0), np.nan)
    return pd.DataFrame(mean, index=first.index, columns=numeric)


@dataclass
class ReportInputs:
    """The complete input of one report (``params``: the validated params.yaml, None when
    it could not be read)."""

    models: list[ModelResult]
    published: dict[str, pd.DataFrame]
    perf: list[dict[str, Any]]
    provenance: dict[str, str]
    notes: list[str] = field(default_factory=list)
    params: Any = None

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
    raw = read_mapping(path, "metrics file")
    return {k: (math.nan if v in ("n/a", None) else v) for k, v in _flatten(raw).items()}


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping in a JSON file (YAML for ``.yml``/``.yaml``), described as ``what`` in errors.

    Raises
    ------
    DataError
        The file cannot be read or parsed, or does not hold a mapping.
    """
    try:
        text = path.read_text()
        raw = yaml.safe_load(text) if path.suffix in (".yml", ".yaml") else json.loads(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping ({what}), got {type(raw).__name__}")
    return raw


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


def load_run_dir(directory: Path, *, train_log: Path | None = None, seed: int | None = None,
                 model_folder: Path | None = None) -> SeedRun | None:
    """Load one evaluated run folder (``artifacts/eval/<model>``, its ``seed_<S>`` subfolders,
    or ``artifacts/baselines/<name>``).

    Returns None for a folder without ``metrics.json`` and ``per_basin_metrics.csv`` (not
    evaluated yet). A folder with only one of the two is a half-written evaluation and
    raises :class:`DataError` naming the missing file. The seed is ``seed`` when given (the
    folder name says it) and otherwise the ``seed`` attribute of ``predictions.nc``. The
    training setup is read from ``model_folder/checkpoint.pt`` when there is one.
    """
    metrics_path = directory / "metrics.json"
    per_basin_path = directory / "per_basin_metrics.csv"
    if not metrics_path.is_file() and not per_basin_path.is_file():
        return None
    for required in (metrics_path, per_basin_path):
        if not required.is_file():
            raise DataError(f"model folder {directory} is incomplete: {required.name} is missing")
    summary = read_summary(metrics_path)
    predictions = directory / "predictions.nc"
    predictions = predictions if predictions.is_file() else None
    recorded = _int_or_none(predictions_attrs(predictions).get("seed"))
    if seed is not None and recorded is not None and recorded != seed:
        raise DataError(f"{predictions} was written by seed {recorded}, but its folder {directory.name} says seed {seed}")
    run_id = next((str(summary[k]) for k in ("run_id", "mlflow_run_id") if isinstance(summary.get(k), str)), None)
    return SeedRun(
        seed=seed if seed is not None else recorded,
        per_basin=read_per_basin(per_basin_path),
        summary=summary,
        predictions=predictions,
        train_log=read_train_log(train_log) if train_log is not None else None,
        run_id=run_id,
        source=directory,
        setup=read_training_setup(model_folder),
    )


def read_training_setup(model_folder: Path | None) -> dict[str, Any]:
    """The ``setup`` of the finished training in ``model_folder/checkpoint.pt`` ({} without one).

    Read with the checkpoint module's safe loader (tensors and plain values only).

    Raises
    ------
    TrainingError
        The checkpoint exists but cannot be read safely.
    """
    if model_folder is None:
        return {}
    from benchmark.training.checkpoint import load_checkpoint  # torch loads only when a checkpoint is read

    path = model_folder / CHECKPOINT_NAME
    if not path.is_file():
        return {}
    setup = load_checkpoint(path).get("setup")
    return dict(setup) if isinstance(setup, dict) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def seed_folders(directory: Path) -> list[tuple[int, Path]]:
    """The ``seed_<S>`` subfolders of a model folder, by seed.

    Raises
    ------
    DataError
        A ``seed_`` folder whose suffix is not an integer.
    """
    found = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith(SEED_FOLDER_PREFIX)):
        suffix = folder.name[len(SEED_FOLDER_PREFIX):]
        if not suffix.isdigit():
            raise DataError(f"{folder}: a seed folder must be named {SEED_FOLDER_PREFIX}<integer seed>")
        found.append((int(suffix), folder))
    return sorted(found)


def load_model_runs(directory: Path, models_dir: Path | None = None) -> list[SeedRun]:
    """Every evaluated seed of one model folder: the folder itself (the profile's first seed)
    and its ``seed_<S>`` subfolders, each with its training log from ``models_dir/<model>[/seed_<S>]``.

    Raises
    ------
    DataError
        Half-written folders, bad seed folder names, or one seed found twice.
    """
    log_root = models_dir / directory.name if models_dir is not None else None
    runs: list[SeedRun] = []
    primary = load_run_dir(directory, train_log=find_train_log(*(p for p in (log_root, directory) if p is not None)),
                           model_folder=log_root)
    if primary is not None:
        runs.append(primary)
    for seed, folder in seed_folders(directory):
        model_folder = log_root / folder.name if log_root is not None else None
        logs = [p for p in (model_folder, folder) if p is not None]
        run = load_run_dir(folder, train_log=find_train_log(*logs), seed=seed, model_folder=model_folder)
        if run is not None:
            runs.append(run)
    seeds = [r.seed for r in runs if r.seed is not None]
    duplicated = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicated:
        raise DataError(f"{directory}: seed(s) {duplicated} evaluated twice (the folder itself and a seed_<S> subfolder)")
    return runs


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


def display_path(path: Path, root: Path | None = None) -> str:
    """``path`` as the report prints it: relative to the repository ``root`` (default:
    :func:`benchmark.repository.root`) when inside it,
    else its parent folder's name and its own name. Never an absolute path of the machine
    that built the report (the committed report is read on other machines)."""
    path = Path(path)
    root = repository.root_or_none() if root is None else root
    try:
        if root is None:
            raise ValueError("outside any repository")
        return path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return f"{path.parent.name}/{path.name}"


def read_perf(perf_dir: Path, root: Path | None = None) -> list[dict[str, Any]]:
    """Every ``hbvbench perf`` result under ``perf_dir`` (``*.json``), newest file last.

    Each result carries ``_file``, its path as :func:`display_path` prints it (relative to
    ``root``, the repository).
    """
    if not perf_dir.is_dir():
        return []
    results = []
    for path in sorted(perf_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read perf result {path}: {exc}") from None
        if isinstance(data, dict):
            data = {**data, "_file": display_path(path, root)}
            results.append(data)
    return results


# --------------------------------------------------------------------------- provenance


def collect_provenance(root: Path, profile: str | None, models: list[ModelResult]) -> dict[str, str]:
    """Git commit, DVC data hash (``dvc.lock``, stage ``prepare``), profile, MLflow run ids
    (per model; with several seeds, each id followed by its seed), date."""
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
        "MLflow run ids": run_id_text(models) or "n/a (none recorded)",
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }


def run_id_text(models: list[ModelResult]) -> str:
    """``name: id`` per model with a recorded run (``name: id (seed S), id (seed S)`` with several seeds)."""
    parts = []
    for model in sorted(models, key=lambda m: m.name):
        runs = [r for r in model.runs if r.run_id]
        if not runs:
            continue
        several = len(model.runs) > 1
        parts.append(f"{model.name}: " + ", ".join(r.run_id + (f" (seed {r.seed})" if several else "") for r in runs))
    return "; ".join(parts)


RunRecord = tuple[str, dict[str, float], dict[str, str]]
"""An MLflow run as the report uses it: run id, final metrics, parameters."""


def mlflow_runs(experiment: str, names: list[str], profile: str | None = None) -> dict[tuple[str, int | None], RunRecord]:
    """Newest FINISHED MLflow run per model name (tag ``model``) and seed (tag ``seed``) of
    ``profile`` (tag ``profile``, when given): ``{(name, seed): (run_id, metrics, params)}``.

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
    found: dict[tuple[str, int | None], RunRecord] = {}
    for _, row in runs.iterrows():  # newest first
        name = NAME_ALIASES.get(str(row["tags.model"]), str(row["tags.model"]))
        key = (name, _int_or_none(row.get("tags.seed")))
        if name in names and key not in found:
            found[key] = (str(row["run_id"]), _run_metrics(row), _run_params(row))
    return found


def _run_metrics(row: pd.Series) -> dict[str, float]:
    return {str(k)[len("metrics."):]: float(v) for k, v in row.items()
            if str(k).startswith("metrics.") and isinstance(v, (int, float)) and not pd.isna(v)}


def _run_params(row: pd.Series) -> dict[str, str]:
    return {str(k)[len("params."):]: str(v) for k, v in row.items()
            if str(k).startswith("params.") and isinstance(v, str)}


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
    dataset: Any = None,
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
        ``params.yaml`` to read the profile, its seeds and the folders from (default: the
        repository's).
    lookup_run_ids
        Read the MLflow run id of each (model, seed) from an existing tracking store.
    dataset
        The processed CAMELS dataset used to score seed ensembles (default: loaded from
        ``data.processed_dir`` when some model has several seeds).

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
            runs = [run for run in load_model_runs(directory, dirs["models"]) if _belongs(run, params, notes, root)]
            if runs:
                models.append(ModelResult(NAME_ALIASES.get(directory.name, directory.name), runs))
    if not models:
        raise DataError(
            f"no evaluated model found: expected <model>/metrics.json and per_basin_metrics.csv under "
            f"{dirs['eval']} or {dirs['baselines']} (run `dvc repro` or `hbvbench evaluate` first)"
        )
    if lookup_run_ids and params is not None:
        attach_mlflow_runs(models, mlflow_runs(params.train.experiment, [m.name for m in models], profile))
    notes += missing_seed_notes(models, profile_seeds(params))
    notes += attach_ensembles(models, params, dataset)
    return ReportInputs(
        models=models,
        published=read_published(),
        perf=read_perf(dirs["perf"], root),
        provenance=collect_provenance(root, profile, models),
        notes=notes,
        params=params,
    )


def _belongs(run: SeedRun, params: Any, notes: list[str], root: Path | None = None) -> bool:
    """Whether a run belongs to the active profile: evaluated on it, with one of its seeds
    (a run that does not is left out and ``notes`` says so)."""
    profile = getattr(params, "profile", None)
    where = display_path(run.source, root) if run.source is not None else "a run"
    other = predictions_attrs(run.predictions).get("profile")
    if profile is not None and other is not None and str(other) != profile:
        notes.append(f"{where} left out: evaluated on profile {str(other)!r}, the active profile is {profile!r}.")
        return False
    seeds = profile_seeds(params)
    if not seeds or run.seed is None or run.source is None:
        return True
    if run.source.name.startswith(SEED_FOLDER_PREFIX):  # the trainer's layout: other seeds in seed_<S>/
        if run.seed in seeds[1:]:
            return True
        notes.append(f"{where} left out: seed {run.seed} is not one of the other seeds {list(seeds[1:])} "
                     f"of profile {profile!r}.")
        return False
    if run.seed != seeds[0]:  # the model folder itself holds the profile's first seed
        notes.append(f"{where} left out: it holds seed {run.seed}, the first seed of profile {profile!r} is {seeds[0]}.")
        return False
    return True


UNSEEDED_MODELS: frozenset[str] = frozenset({"sacsma"})
"""Models without a training seed (CAMELS' calibrated SAC-SMA runs)."""


def missing_seed_notes(models: list[ModelResult], seeds: tuple[int, ...]) -> list[str]:
    """One note per trained model evaluated for fewer seeds than the profile lists, naming the missing ones."""
    notes = []
    for model in models:
        missing = [seed for seed in seeds if seed not in {run.seed for run in model.runs}]
        if missing and model.name not in UNSEEDED_MODELS:
            notes.append(f"{model.name}: {len(model.runs)} of the profile's {len(seeds)} seeds; seed "
                         f"{', '.join(map(str, missing))} not evaluated, so its statistics cover fewer seeds.")
    return notes


def profile_seeds(params: Any) -> tuple[int, ...]:
    """The active profile's seeds (empty when params.yaml could not be read)."""
    try:
        return tuple(int(s) for s in params.active.seeds)
    except (AttributeError, TypeError, ValueError):
        return ()


def attach_mlflow_runs(models: list[ModelResult], found: dict[tuple[str, int | None], RunRecord]) -> None:
    """Give each run its MLflow run id, final metrics and parameters (matched by model and seed; a
    single run with no recorded seed takes the model's newest run and that run's seed)."""
    for model in models:
        for run in model.runs:
            match = found.get((model.name, run.seed))
            if match is None and run.seed is None and len(model.runs) == 1:
                key = next((k for k in found if k[0] == model.name), None)
                if key is not None:
                    run.seed, match = key[1], found[key]
            if match is not None:
                run.run_id, run.run_metrics, run.run_params = run.run_id or match[0], match[1], match[2]


def attach_ensembles(models: list[ModelResult], params: Any, dataset: Any = None) -> list[str]:
    """Score the seed ensemble of every model with several seeds (:mod:`benchmark.ensemble`).

    The processed dataset is ``dataset`` or, when needed, read from ``data.processed_dir``.
    Returns notes for ensembles that could not be scored (and why).
    """
    several = [m for m in models if len(m.runs) > 1]
    if not several:
        return []
    if dataset is None:
        from benchmark.data.dataset import load_dataset

        try:
            dataset = load_dataset(params=params) if params is not None else None
        except DataError as exc:
            return [f"Seed ensembles not scored: {exc}."]
        if dataset is None:
            return ["Seed ensembles not scored: params.yaml could not be read, so the processed dataset is unknown."]
    notes = []
    for model in several:
        missing = [str(r.source) for r in model.runs if r.predictions is None]
        if missing:
            notes.append(f"{model.name}: seed ensemble not scored, no predictions.nc in {', '.join(missing)}.")
            continue
        model.ensemble = score_model_ensemble(model, dataset)
    return notes


def score_model_ensemble(model: ModelResult, dataset: Any) -> EnsembleScore:
    """The ensemble-mean prediction of a model's seeds, scored (DataError naming the files
    when the seeds' predictions do not line up)."""
    import xarray as xr

    from benchmark.ensemble import score_ensemble

    predictions = []
    for run in model.runs:
        try:
            with xr.open_dataset(run.predictions) as ds:
                predictions.append(ds.load())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read predictions {run.predictions}: {exc}") from None
    per_basin, summary = score_ensemble(predictions, dataset, names=[str(r.predictions) for r in model.runs])
    per_basin.index = pd.Index([str(b).zfill(8) for b in per_basin.index], name="basin")
    return EnsembleScore(model.seeds, per_basin, summary)


def predictions_attrs(path: Path | None) -> dict[str, Any]:
    """The global attributes of a ``predictions.nc`` (empty when absent or unreadable)."""
    if path is None:
        return {}
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            return dict(ds.attrs)
    except (OSError, ValueError):
        return {}  # the figures step reports an unreadable file with its name


# --------------------------------------------------------------------------- MLflow

MLFLOW_ARTIFACTS: tuple[tuple[str, str], ...] = (
    ("per_basin_metrics.csv", "per_basin_metrics.csv"),
    ("evaluation/metrics.json", "metrics.json"),
    ("metrics.json", "metrics.json"),
    ("predictions.nc", "predictions.nc"),
    ("neuralhydrology/nh_config.yml", "nh_config.yml"),
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
    dataset: Any = None,
) -> ReportInputs:
    """Gather the report's inputs from MLflow: the newest FINISHED evaluated run per model
    (tag ``model``) and seed (tag ``seed``; only the profile's seeds when params.yaml is
    readable) of the profile, with its ``per_basin_metrics.csv``, ``metrics.json`` and
    ``predictions.nc`` artifacts downloaded under ``scratch`` and its loss history as the
    training curve. Seed ensembles are scored as in :func:`collect_from_files`.

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
    seeds = profile_seeds(params)
    filter_string = "attributes.status = 'FINISHED'" + (f" and tags.profile = '{profile}'" if profile else "")
    try:
        runs = tracking.query_runs(experiment, filter_string)
    except Exception as exc:  # noqa: BLE001 - report the store's answer to the user
        raise DataError(f"cannot read MLflow experiment {experiment!r} at {tracking.tracking_uri()}: {exc}") from None
    client = tracking.client()
    by_model: dict[str, list[SeedRun]] = {}
    for _, row in runs.iterrows():  # newest first
        tag = row.get("tags.model")
        if not isinstance(tag, str):
            continue
        name, seed = NAME_ALIASES.get(tag, tag), _int_or_none(row.get("tags.seed"))
        if any(r.seed == seed for r in by_model.get(name, [])) or (seeds and seed is not None and seed not in seeds):
            continue
        run = _download_run(client, row, scratch / name / (seed_folder_name(seed) if seed is not None else "any"))
        if run is not None:
            by_model.setdefault(name, []).append(run)
    if not by_model:
        raise DataError(f"no evaluated run (FINISHED, with per_basin_metrics.csv) in MLflow experiment {experiment!r}"
                        + (f" for profile {profile!r}" if profile else "") + f" at {tracking.tracking_uri()}")
    order = {seed: i for i, seed in enumerate(seeds)}
    models = [ModelResult(name, sorted(found, key=lambda r: (order.get(r.seed, len(order)), r.seed or 0)))
              for name, found in by_model.items()]
    notes = attach_ensembles(models, params, dataset)
    dirs = default_dirs(root, params)
    perf = perf_dir if perf_dir is not None else dirs["perf"]
    return ReportInputs(
        models=models,
        published=read_published(),
        perf=read_perf(perf if Path(perf).is_absolute() else root / perf, root),
        provenance=collect_provenance(root, profile, models),
        notes=notes,
        params=params,
    )


def _download_run(client: Any, row: pd.Series, folder: Path) -> SeedRun | None:
    """The evaluation artifacts of one MLflow run as a :class:`SeedRun` (None for a run
    without ``per_basin_metrics.csv``: trained, not evaluated)."""
    folder.mkdir(parents=True, exist_ok=True)
    run_id = str(row["run_id"])
    got: dict[str, Path] = {}
    for artifact, local in MLFLOW_ARTIFACTS:
        if local in got:
            continue
        path = _download(client, run_id, artifact, folder)
        if path is not None and path.is_file():
            target = folder / local
            if path != target:
                path.replace(target)
            got[local] = target
    if "per_basin_metrics.csv" not in got:
        return None
    summary = read_summary(got["metrics.json"]) if "metrics.json" in got else {
        str(k)[len("metrics.test."):] if str(k).startswith("metrics.test.") else str(k): v
        for k, v in row.items() if str(k).startswith("metrics.")
    }
    return SeedRun(seed=_int_or_none(row.get("tags.seed")), per_basin=read_per_basin(got["per_basin_metrics.csv"]),
                   summary=summary, predictions=got.get("predictions.nc"), train_log=_history_frame(client, run_id),
                   run_id=run_id, source=folder, run_metrics=_run_metrics(row), run_params=_run_params(row))
