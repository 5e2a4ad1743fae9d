"""MLflow tracking for the benchmark: where runs go, what every run records, how a crash is logged.

Runs are stored in a local SQLite database at an absolute path under the repository
(``<repo>/mlflow.db``) with artifacts in ``<repo>/mlartifacts``; ``MLFLOW_TRACKING_URI``
overrides the store (another SQLite file, a database, or an ``http://`` tracking server).
The legacy file store (``./mlruns``) is refused: MLflow 3 no longer supports it.

Typical use::

    from benchmark import tracking

    with tracking.run("hbvbench-default", "dhbv_adj-seed111111",
                      tags=tracking.standard_tags("default", spec),
                      params=config.model_dump(mode="json")):
        ...
        tracking.log_metrics_series("train_loss", losses)
        tracking.log_dataframe(per_basin, "per_basin_metrics.csv")

``mlflow`` itself is imported on first use (it takes over a second), so importing this
module keeps the ``hbvbench`` CLI quick to start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from benchmark import repository
from benchmark.errors import ConfigError, HbvbenchError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from mlflow import ActiveRun
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

DEFAULT_DB_NAME = "mlflow.db"
ARTIFACTS_DIR_NAME = "mlartifacts"
DVC_PREPARE_STAGE = "prepare"
DVC_EXPERIMENT_ENV = "DVC_EXP_NAME"
"""Set by ``dvc exp run`` for the stage commands of an experiment: its name."""
DVC_EXPERIMENT_TAG = "dvc.experiment"

TEST_METRIC_PREFIX = "test"
"""Prefix of the test-period metrics every model's run logs (``test.NSE_median``, ...)."""
RUNS_TABLE_METRICS: tuple[str, ...] = ("NSE_median", "KGE_median", "FLV_median", "FHV_median")
"""Summary keys the MLflow runs table shows for every model, side by side (as ``test.<key>``)."""
PREPARED_DATA_NAME = "camels_us"

# How `mlflow ui` (MLflow 3) presents our experiments: a model-training experiment, whose runs
# table shows the test metrics. The UI reads the kind tag (older 3.x releases decide from it
# which page an experiment opens on; 3.17 asks the URL's workflowType) and applies a shared view
# (an experiment tag named by the URL's viewStateShareKey: the columns to show).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
RUNS_VIEW_KEY = "hbvbench-test-metrics"

# MLflow's own limits (mlflow.utils.validation); values beyond them are rejected by the server.
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_KEY_LENGTH = 250
TRUNCATION_MARK = "...[truncated]"

# Characters MLflow accepts in param, metric and tag names (POSIX rule).
_INVALID_KEY_CHARS = re.compile(r"[^/\w.\- :]")

_GIT_TIMEOUT_S = 10.0

#: URI schemes MLflow 3 can keep runs in (``postgresql+psycopg://`` counts as ``postgresql``).
SUPPORTED_SCHEMES: tuple[str, ...] = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
_CHECKED_STORES: set[str] = set()


class TrackingError(HbvbenchError):
    """The tracking store cannot answer a request (e.g. an experiment does not exist)."""


# --------------------------------------------------------------------------------------
# Where runs are stored
# --------------------------------------------------------------------------------------


def _mlflow():
    """Import mlflow on first use, with its usage telemetry off (the benchmark runs offline)."""
    if "mlflow" not in sys.modules:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    return mlflow


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other scheme."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///"):].split("?", 1)[0]))


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def tracking_uri() -> str:
    """The MLflow tracking URI runs are logged to.

    Returns
    -------
    str
        ``$MLFLOW_TRACKING_URI`` when set (a relative ``sqlite:///`` path is made absolute
        against the current directory, which is where MLflow would have put it), else
        ``sqlite:///<absolute repo root>/mlflow.db`` (the workspace a DVC experiment was
        started from, for one running in DVC's temporary copy: :func:`benchmark.repository.store_root`).

    Raises
    ------
    ConfigError
        If ``MLFLOW_TRACKING_URI`` names the legacy file store (``file:`` URI or a plain
        path), which MLflow 3 refuses.
    """
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not env:
        return _sqlite_uri(repository.store_root() / DEFAULT_DB_NAME)
    db_path = _sqlite_path(env)
    if db_path is not None:
        if db_path == Path(":memory:") or str(db_path) == "":
            raise ConfigError("MLFLOW_TRACKING_URI: an in-memory SQLite store keeps no runs; give a file path")
        return _sqlite_uri(db_path.absolute()) if not db_path.is_absolute() else env
    is_plain_path = "://" not in env and not env.startswith("databricks")
    if is_plain_path or env.startswith("file:"):
        raise ConfigError(
            f"MLFLOW_TRACKING_URI={env!r} names MLflow's legacy file store, which MLflow 3 refuses; "
            f"use a SQLite database instead, e.g. sqlite:///{Path.cwd() / DEFAULT_DB_NAME}"
        )
    scheme = env.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"MLFLOW_TRACKING_URI={env!r}: MLflow cannot store runs under the scheme {scheme!r}; use "
            f"sqlite:///<absolute path>.db, a database URL ({', '.join(s for s in SUPPORTED_SCHEMES if s not in ('sqlite', 'http', 'https', 'databricks'))}) "
            "or an http(s):// tracking server, or unset it for the repository's mlflow.db"
        )
    return env


def artifact_root(uri: str | None = None) -> Path | None:
    """Local folder that new experiments store their artifacts under.

    Parameters
    ----------
    uri
        A tracking URI (default: :func:`tracking_uri`).

    Returns
    -------
    pathlib.Path or None
        ``<folder of the SQLite file>/mlartifacts`` for a SQLite store,
        ``<repo>/mlartifacts`` for another database, and None for a tracking server
        (``http(s)://``, ``databricks``), which decides where artifacts go itself.
        Without this MLflow would put them in ``./mlruns`` of whatever the current
        directory happens to be.
    """
    uri = tracking_uri() if uri is None else uri
    db_path = _sqlite_path(uri)
    if db_path is not None:
        return db_path.parent / ARTIFACTS_DIR_NAME
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return repository.store_root() / ARTIFACTS_DIR_NAME


_READY_SQLITE_STORES: set[str] = set()
"""SQLite stores this process has created or checked (see :func:`_prepare_sqlite_store`)."""


def _prepare_sqlite_store(uri: str, db_path: Path) -> None:
    """Create (or migrate) the tables of a SQLite store while holding ``<db>.lock``.

    MLflow creates its tables when a process first opens the store; two processes doing so
    at once (``dvc queue start -j 2``, tuning workers on a new store) race and one fails with
    "table ... already exists". The first one here creates them, the others wait and find them.
    """
    if uri in _READY_SQLITE_STORES:
        return
    import fcntl

    from mlflow.tracking import MlflowClient

    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # opens the store: creates tables
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_SQLITE_STORES.add(uri)


def check_store(uri: str | None = None) -> str:
    """Fail early, with one clear error, on a store that cannot be used (once per URI and process).

    A SQLite store must be a readable SQLite file or not exist yet (a locked one is retried
    for about 15 s); an ``http(s)://`` server must answer ``/health``; another database
    (PostgreSQL, MySQL ...) must open and answer one query. See :mod:`benchmark.stores`.

    Returns
    -------
    str
        The URI checked.

    Raises
    ------
    benchmark.stores.StoreError, TrackingError
        Naming the URI and the fix.
    """
    from benchmark import stores

    uri = tracking_uri() if uri is None else uri
    if uri in _CHECKED_STORES:
        return uri
    fix = "set MLFLOW_TRACKING_URI to another store (or unset it for the repository's mlflow.db)"
    db_path = _sqlite_path(uri)
    if db_path is not None:
        stores.check_sqlite(db_path, uri, "MLflow tracking store", fix)
    elif uri.startswith(("http://", "https://")):
        stores.check_http(uri, "MLflow tracking server", fix)
    elif not uri.startswith("databricks"):  # a database URL: open it once, where its errors can be named
        from mlflow.tracking import MlflowClient

        _mlflow()
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - driver, connection and schema errors of any kind
            raise _store_failure(uri, exc) from None
    _CHECKED_STORES.add(uri)
    return uri


def configure() -> str:
    """Point MLflow at :func:`tracking_uri` (idempotent; cheap after the first call).

    Checks the store first (:func:`check_store`) and creates the folder and the tables of a
    SQLite database if they are missing (one process at a time). Called by :func:`run`; call it
    yourself only before using ``mlflow`` directly.

    Returns
    -------
    str
        The tracking URI now in use.
    """
    uri = check_store()
    mlflow = _mlflow()
    db_path = _sqlite_path(uri)
    if db_path is not None:
        _prepare_sqlite_store(uri, db_path)
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
    return uri


def client() -> "MlflowClient":
    """An ``MlflowClient`` bound to :func:`tracking_uri`.

    Raises
    ------
    TrackingError
        The store cannot be opened (driver missing, server refusing, bad schema), naming the URI.
    """
    uri = configure()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _store_failure(uri: str, exc: BaseException) -> "TrackingError":
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return TrackingError(
        f"MLflow tracking store {uri} cannot be used ({type(exc).__name__}: {first_line}); check the URL, the "
        "database server and its driver (pip install -e '.[postgres]' for PostgreSQL), or set MLFLOW_TRACKING_URI "
        "to another store"
    )


def _experiment_dir_name(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "experiment"


def test_metric_name(key: str) -> str:
    """The MLflow name of a test-period summary metric, the same for every model: ``test.<key>``."""
    return f"{TEST_METRIC_PREFIX}.{key}"


def runs_view_state() -> dict[str, Any]:
    """The runs-table view of our experiments: dataset, logged model, :data:`RUNS_TABLE_METRICS`, model and profile."""
    columns = ["attributes.`Dataset`", "attributes.`Models`", "tags.`model`", "tags.`profile`"]
    columns += [f"metrics.`{test_metric_name(key)}`" for key in RUNS_TABLE_METRICS]
    return {"selectedColumns": columns, "orderByKey": "attributes.start_time", "orderByAsc": False}


def experiment_tags() -> dict[str, str]:
    """The tags that make ``mlflow ui`` present an experiment of ours as model training."""
    return {EXPERIMENT_KIND_TAG: TRAINING_EXPERIMENT_KIND,
            SHARED_VIEW_TAG_PREFIX + RUNS_VIEW_KEY: json.dumps(runs_view_state())}


def runs_table_url(ui_url: str, experiment_id: str) -> str:
    """The page of ``mlflow ui`` (at ``ui_url``) showing an experiment's runs table with the test metrics."""
    return (f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}")


def ensure_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating (or restoring a deleted) one if needed.

    New experiments on a local store keep their artifacts in
    ``artifact_root() / <name>`` (see :func:`artifact_root`). Every experiment we log to
    carries :func:`experiment_tags` (set on creation, added to older ones).
    """
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        experiment = mlflow_client.get_experiment_by_name(name)
    except Exception as exc:  # noqa: BLE001 - the first request: connection and schema errors of any kind
        raise _store_failure(mlflow_client.tracking_uri, exc) from None
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            log.warning("restoring deleted MLflow experiment %r", name)
            mlflow_client.restore_experiment(experiment.experiment_id)
        for key, value in experiment_tags().items():
            if experiment.tags.get(key) != value:
                mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    root = artifact_root(mlflow_client.tracking_uri)
    location = (root / _experiment_dir_name(name)).as_uri() if root is not None else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location, tags=experiment_tags())
    except MlflowException as exc:
        # Another process created it between our lookup and create.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise TrackingError(f"cannot create MLflow experiment {name!r} in {mlflow_client.tracking_uri}: {exc}") from exc
        return experiment.experiment_id


# --------------------------------------------------------------------------------------
# Params and tags
# --------------------------------------------------------------------------------------


def _clean_key(key: str) -> str:
    """A name MLflow accepts: allowed characters only, no path tricks, at most 250 chars."""
    key = _INVALID_KEY_CHARS.sub("_", str(key))
    key = re.sub(r"/+", "/", key).strip("/")
    key = "/".join(part if part not in ("", ".", "..") else "_" for part in key.split("/"))
    return key[:MAX_KEY_LENGTH] or "_"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def _as_tree(value: Any) -> Any:
    """Turn pydantic models and dataclasses into plain mappings; leave everything else."""
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _scalar_text(value: Any) -> str:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy / torch scalar
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool, Path)) or value is None:
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return json.dumps(items, default=str)
    if hasattr(value, "tolist"):
        return json.dumps(value.tolist(), default=str)
    return json.dumps(value, default=str)


def flatten_params(params: Mapping[str, Any] | Any, prefix: str = "") -> dict[str, str]:
    """Flatten nested parameters into ``{"dotted.key": "text"}`` as MLflow stores them.

    Parameters
    ----------
    params
        A mapping (nested mappings, pydantic models and dataclasses are descended into).
    prefix
        Prepended to every key with a dot.

    Returns
    -------
    dict
        Keys joined with ``.`` and cleaned to MLflow's allowed characters (max 250
        chars); values as text: scalars with ``str``, dates ISO, lists/tuples as JSON,
        values over MLflow's 6000-character limit truncated with ``...[truncated]``.
        An empty nested mapping is kept as ``"{}"`` so it still shows up.
    """
    flat: dict[str, str] = {}

    def visit(node: Any, path: str) -> None:
        node = _as_tree(node)
        if isinstance(node, Mapping):
            if not node and path:
                flat[_clean_key(path)] = "{}"
            for key, child in node.items():
                visit(child, f"{path}.{key}" if path else str(key))
            return
        key = _clean_key(path)
        while key in flat:  # two raw keys cleaned to the same name: keep both
            key = _clean_key(key[: MAX_KEY_LENGTH - 2] + "_2")
        flat[key] = _truncate(_scalar_text(node), MAX_PARAM_VALUE_LENGTH)

    visit(params, prefix)
    return flat


def log_params_flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Log a nested parameter mapping to the active run (see :func:`flatten_params`).

    Returns the flattened mapping that was logged.
    """
    _require_active_run()
    flat = flatten_params(params, prefix)
    if flat:
        _mlflow().log_params(flat)
    return flat


def _clean_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {
        _clean_key(key): _truncate(_scalar_text(value), MAX_TAG_VALUE_LENGTH)
        for key, value in (tags or {}).items()
    }


def _git(args: list[str], repo: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(repo: Path | None = None) -> dict[str, str]:
    """Git commit of ``repo`` (default: the repository root) and whether tracked files differ from it.

    Returns
    -------
    dict
        ``{"git_commit": <sha>, "git_dirty": "true"|"false"}``; ``{}`` when ``repo`` is
        not a git work tree or git is unavailable. Untracked files do not make it dirty,
        nor do the files the pipeline itself rewrites (:data:`PIPELINE_WRITTEN`: ``dvc.lock``
        during a ``dvc repro``, the generated reports).
    """
    repo = repo if repo is not None else repository.root_or_none()
    if repo is None:  # the library used outside any repository: no code state to record
        return {}
    commit = _git(["rev-parse", "HEAD"], repo)
    if not commit:
        return {}
    status = _git(["diff", "--name-only", "HEAD"], repo)  # tracked files, staged or not
    state = {"git_commit": commit}
    if status is not None:
        changed = [line.strip() for line in status.splitlines() if line.strip()]
        state["git_dirty"] = "true" if any(not _pipeline_written(path) for path in changed) else "false"
    return state


PIPELINE_WRITTEN: tuple[str, ...] = ("dvc.lock", "reports/leaderboard.md", "reports/leaderboard.html",
                                     "reports/figures/", "reports/regression_metrics.json", "artifacts/")
"""Tracked files that ``dvc repro`` / ``hbvbench regress`` rewrite (a ``dvc.lock`` in any folder; the
``cache: false`` metrics, logs and plots under ``artifacts/`` that experiments commit)."""


def _pipeline_written(path: str) -> bool:
    return path == "dvc.lock" or path.endswith("/dvc.lock") or any(
        path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in PIPELINE_WRITTEN)


def dvc_data_hash(repo: Path | None = None, data_dir: Path | str | None = None) -> str | None:
    """The md5 DVC recorded for the prepared data (``dvc.lock``, stage ``prepare``).

    Parameters
    ----------
    repo
        Folder holding ``dvc.lock`` (default: the repository root).
    data_dir
        The prepared-data path to pick when the stage has several outputs (relative to
        ``repo``, or absolute inside it); an output matches when it is that path, inside
        it, or contains it. Default: the stage's first output.

    Returns
    -------
    str or None
        The output's ``md5`` (``<hash>.dir`` for a folder), or None when there is no
        ``dvc.lock``, no ``prepare`` stage in it, or no matching output.
    """
    import yaml

    repo = repo if repo is not None else repository.root_or_none()
    if repo is None:
        return None
    lock_path = repo / "dvc.lock"
    if not lock_path.is_file():
        return None
    try:
        lock = yaml.safe_load(lock_path.read_text()) or {}
    except yaml.YAMLError as exc:
        log.warning("cannot read %s: %s", lock_path, exc)
        return None
    outs = ((lock.get("stages") or {}).get(DVC_PREPARE_STAGE) or {}).get("outs") or []
    outs = [out for out in outs if isinstance(out, dict) and out.get("md5")]
    if not outs:
        return None
    if data_dir is None:
        return str(outs[0]["md5"])
    wanted = Path(data_dir)
    if wanted.is_absolute():
        try:
            wanted = wanted.resolve().relative_to(repo.resolve())
        except ValueError:
            return None
    for out in outs:
        out_path = Path(str(out.get("path", "")))
        # The output may be the folder itself, a file in it, or a folder holding it.
        if out_path == wanted or wanted in out_path.parents or out_path in wanted.parents:
            return str(out["md5"])
    return None


def standard_tags(
    profile: str,
    model_spec: Any | None = None,
    data_dir: Path | str | None = None,
    *,
    repo: Path | None = None,
) -> dict[str, str]:
    """The tags every benchmark run carries.

    Parameters
    ----------
    profile
        The ``params.yaml`` profile (``ci``, ``default``, ``paper``).
    model_spec
        A ``ModelSpec`` (or any object with ``name``, ``scheme``, ``gradient``,
        ``capillary_rise``, ``substeps``); baselines pass None.
    data_dir
        The prepared-data folder, to pick its hash from ``dvc.lock``.
    repo
        The repository root (``git`` state and ``dvc.lock``; default :func:`benchmark.repository.root`).

    Returns
    -------
    dict
        ``profile``, ``git_commit``, ``git_dirty``, ``data_md5`` (when ``dvc.lock`` has
        it), ``dvc.experiment`` (inside ``dvc exp run``: the experiment's name), and from the spec:
        ``model``, ``scheme``, ``gradient``, ``structure`` (HBV's ``capillary_rise`` or ``standard``),
        ``model_structure`` (``hbv``, ``gr4j``, ...), ``substeps``.
    """
    tags: dict[str, str] = {"profile": str(profile)}
    tags.update(git_state(repo))
    dvc_experiment = os.environ.get(DVC_EXPERIMENT_ENV, "").strip()
    if dvc_experiment:  # a queued / --temp DVC experiment: the name `dvc exp show` lists it under
        tags[DVC_EXPERIMENT_TAG] = dvc_experiment
    data_hash = dvc_data_hash(repo, data_dir)
    if data_hash is not None:
        tags["data_md5"] = data_hash
    if model_spec is not None:
        for field in ("name", "scheme", "gradient", "substeps"):
            value = getattr(model_spec, field, None)
            if value is not None:
                tags["model" if field == "name" else field] = str(value)
        capillary = getattr(model_spec, "capillary_rise", None)
        if capillary is not None:
            tags["structure"] = "capillary_rise" if capillary else "standard"
        structure = getattr(model_spec, "structure", None)
        if structure is not None:
            tags["model_structure"] = str(structure.name)
    return tags


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


def _require_active_run() -> "ActiveRun":
    # mlflow.log_* would silently start a stray run in the Default experiment otherwise.
    active = _mlflow().active_run()
    if active is None:
        raise RuntimeError("no active MLflow run: log inside `with benchmark.tracking.run(...)`")
    return active


def _record_failure(run_id: str, exc: BaseException) -> None:
    """Log the traceback as ``error.txt`` and the message as tag ``error``; never raises."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        mlflow_client = client()
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        mlflow_client.set_tag(run_id, "error", _truncate(message, MAX_TAG_VALUE_LENGTH))
        mlflow_client.log_text(run_id, text, "error.txt")
    except Exception as log_exc:  # the original error matters more than the record of it
        log.warning("could not record the failure of MLflow run %s: %s", run_id, log_exc)


def _end_until(run_id: str, status: str) -> None:
    """End runs from the top of MLflow's stack down to and including ``run_id``.

    Does nothing if the body already ended ``run_id`` itself (so a parent is not ended).
    """
    mlflow = _mlflow()
    try:
        still_running = client().get_run(run_id).info.status == "RUNNING"
    except Exception as exc:  # store unreachable: still pop our run off the local stack
        log.warning("could not read the status of MLflow run %s: %s", run_id, exc)
        still_running = True
    if not still_running:
        return
    while (active := mlflow.active_run()) is not None:
        try:
            mlflow.end_run(status=status)
        except Exception as exc:
            log.warning("could not end MLflow run %s: %s", active.info.run_id, exc)
        if active.info.run_id == run_id:
            break


def _check_unchanged_params(run_id: str, flat: Mapping[str, str]) -> None:
    logged = client().get_run(run_id).data.params
    changed = [f"{key}: {logged[key]!r} -> {value!r}" for key, value in flat.items() if key in logged and logged[key] != value]
    if changed:
        raise TrackingError(
            f"cannot reopen MLflow run {run_id} with different parameters ({'; '.join(changed[:10])}); "
            "start a new run instead"
        )


@contextmanager
def run(
    experiment: str,
    run_name: str,
    *,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    nested: bool = False,
    run_id: str | None = None,
) -> Iterator["ActiveRun"]:
    """Run the body inside an MLflow run; a crash ends it FAILED with the error logged.

    Parameters
    ----------
    experiment
        Experiment name (one per benchmark); created if missing.
    run_name
        Display name, e.g. ``"dhbv_adj-seed111111"``.
    tags
        Run tags (e.g. :func:`standard_tags`); values longer than MLflow allows are truncated.
    params
        Nested parameters, logged flattened with dotted keys (:func:`flatten_params`).
    nested
        Start the run as a child of the active run.
    run_id
        Reopen this existing run instead of creating one (to resume a killed job).
        ``params`` may repeat the values logged before but not change them.

    Yields
    ------
    mlflow.ActiveRun
        The active run.

    Raises
    ------
    TrackingError
        If ``run_id`` is given and ``params`` would change a value that run already
        logged (checked before the run is reopened, so its record is left as it was).

    Notes
    -----
    On an exception in the body the run gets an ``error.txt`` artifact (the traceback) and
    an ``error`` tag, ends ``FAILED`` (``KILLED`` for KeyboardInterrupt), and the exception
    propagates unchanged. Runs the body left open on top of it end with the same status.
    """
    mlflow = _mlflow()
    configure()
    experiment_id = ensure_experiment(experiment)
    if run_id is not None and params:
        _check_unchanged_params(run_id, flatten_params(params))
    active = mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=None if run_id else run_name,
        nested=nested,
        tags=_clean_tags(tags),
    )
    this_run = active.info.run_id
    try:
        if params:
            log_params_flat(params)
        yield active
    except BaseException as exc:
        _record_failure(this_run, exc)
        _end_until(this_run, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    else:
        _end_until(this_run, "FINISHED")


# --------------------------------------------------------------------------------------
# Artifacts and metrics
# --------------------------------------------------------------------------------------


def _log_file(write: Any, artifact_path: str, suffix: str) -> str:
    """Write an artifact with ``write(local_path)`` in a temp folder, then upload it.

    Returns the artifact path within the run (``dir/name.suffix``).
    """
    _require_active_run()
    artifact_path = artifact_path.strip("/")
    if not artifact_path.endswith(suffix):
        artifact_path += suffix
    folder, _, name = artifact_path.rpartition("/")
    with tempfile.TemporaryDirectory(prefix="hbvbench-artifact-") as tmp:
        local = Path(tmp) / name
        write(local)
        _mlflow().log_artifact(str(local), artifact_path=folder or None)
    return artifact_path


def log_dataframe(df: Any, artifact_path: str, *, index: bool = True) -> str:
    """Log a table as a CSV artifact of the active run.

    Parameters
    ----------
    df
        A pandas DataFrame (or polars DataFrame, written without index).
    artifact_path
        Path within the run, e.g. ``"per_basin_metrics.csv"``; ``.csv`` is appended if missing.
    index
        Write the pandas index (e.g. the basin id) as the first column.

    Returns
    -------
    str
        The artifact path logged.
    """
    if hasattr(df, "to_csv"):
        return _log_file(lambda path: df.to_csv(path, index=index), artifact_path, ".csv")
    if hasattr(df, "write_csv"):
        return _log_file(lambda path: df.write_csv(path), artifact_path, ".csv")
    raise TypeError(f"log_dataframe needs a pandas or polars DataFrame, got {type(df).__name__}")


def log_dataset(ds: Any, artifact_path: str) -> str:
    """Log an ``xarray.Dataset`` (e.g. test predictions) as a netCDF artifact (``.nc``)."""
    return _log_file(lambda path: ds.to_netcdf(path), artifact_path, ".nc")


def log_figure(fig: Any, artifact_path: str, *, dpi: int = 120) -> str:
    """Log a matplotlib figure as a PNG artifact (``.png``); the figure is not closed."""
    return _log_file(lambda path: fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png"), artifact_path, ".png")


def _metric_value(value: Any) -> float:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    return float(value)


def log_metrics_series(name: str, values: Iterable[Any], step_start: int = 0) -> int:
    """Log a whole curve (e.g. per-epoch loss) as one metric over steps, in one batch.

    Parameters
    ----------
    name
        Metric name, e.g. ``"train_loss"``.
    values
        One number per step (floats, numpy or 0-d torch values).
    step_start
        Step of the first value (e.g. the first epoch after a resume).

    Returns
    -------
    int
        Number of points logged.
    """
    from mlflow.entities import Metric

    active = _require_active_run()
    key = _clean_key(name)
    now_ms = int(time.time() * 1000)
    points = [Metric(key, _metric_value(v), now_ms, step_start + i) for i, v in enumerate(values)]
    if points:
        client().log_batch(active.info.run_id, metrics=points, synchronous=True)
    return len(points)


def log_metrics_dict(metrics: Mapping[str, Any], prefix: str = "", step: int | None = None) -> list[str]:
    """Log the numeric entries of a (possibly nested) summary; return the keys skipped.

    Entries that are not finite numbers (``None``, ``"n/a"``, NaN) are not metrics: they
    are skipped, and their keys listed in the tag ``metrics_not_available``. Other text
    values (e.g. ``failed_basins``) are set as tags of the same name when not empty.
    """
    _require_active_run()
    numeric: dict[str, float] = {}
    skipped: list[str] = []
    texts: dict[str, str] = {}

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                visit(child, f"{path}.{key}" if path else str(key))
            return
        if isinstance(node, str) and node != "n/a":
            if node:
                texts[_clean_key(path)] = _truncate(node, MAX_TAG_VALUE_LENGTH)
            return
        try:
            value = _metric_value(node)
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(node, bool) or not math.isfinite(value):
            skipped.append(_clean_key(path))
        else:
            numeric[_clean_key(path)] = value

    visit(metrics, prefix)
    mlflow = _mlflow()
    if numeric:
        mlflow.log_metrics(numeric, step=step)
    if skipped:
        mlflow.set_tag("metrics_not_available", _truncate(",".join(skipped), MAX_TAG_VALUE_LENGTH))
    if texts:
        mlflow.set_tags(texts)
    return skipped


def log_test_metrics(summary: Mapping[str, Any]) -> list[str]:
    """Log a model's test-period summary under the names every model shares (:func:`test_metric_name`).

    Returns the keys skipped as not numbers (see :func:`log_metrics_dict`).
    """
    return log_metrics_dict(summary, prefix=TEST_METRIC_PREFIX)


def _prepared_data_digest(data_dir: Path, repo: Path | None) -> tuple[str, str]:
    """``(digest, where from)``: DVC's md5 of the folder, else the sha256 of its manifest (32 hex digits)."""
    import hashlib

    md5 = dvc_data_hash(repo, data_dir)
    if md5:
        return md5.removesuffix(".dir"), "dvc.lock"
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        return hashlib.sha256(manifest.read_bytes()).hexdigest()[:32], "manifest.json"
    return "unknown", "none"


def log_prepared_data(data_dir: Path | str, profile: str, *, context: str = "training",
                      repo: Path | None = None) -> dict[str, str]:
    """Record the prepared dataset as an input of the active run (the "Datasets" column of ``mlflow ui``).

    Parameters
    ----------
    data_dir
        The prepared-data folder (``data.processed_dir``).
    profile
        The profile whose basins and periods the run used: the dataset is ``camels_us-<profile>``.
    context
        ``training`` or ``evaluation``.
    repo
        Repository root holding ``dvc.lock`` (default :func:`benchmark.repository.root`).

    Returns
    -------
    dict
        The input's tags besides its context: ``dvc.md5`` (the md5 DVC recorded for the folder,
        when ``dvc.lock`` has it) and ``digest_from``. The dataset's digest is that md5 (without
        ``.dir``), else the first 32 hex digits of the sha256 of its ``manifest.json``.
    """
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    _require_active_run()
    data_dir = repository.resolve(data_dir, repo)
    digest, origin = _prepared_data_digest(data_dir, repo)
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": it is a local folder either way
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(data_dir))
    tags = {"digest_from": origin}
    if origin == "dvc.lock":
        tags["dvc.md5"] = dvc_data_hash(repo, data_dir) or ""
    dataset = MetaDataset(source, name=f"{PREPARED_DATA_NAME}-{profile}", digest=digest)
    _mlflow().log_input(dataset, context=context, tags=tags)
    return tags


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB, from ``getrusage``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20  # Linux reports KiB, macOS bytes


def peak_memory_mb(device: Any = None) -> float:
    """The peak memory of a job (MB), the one measure training, evaluation and the baselines report.

    On a CUDA ``device`` (a ``torch.device`` or its name) the peak CUDA memory torch allocated
    there (``torch.cuda.max_memory_allocated``), else the process's peak resident set size
    (:func:`peak_rss_mb`).
    """
    if getattr(device, "type", device) == "cuda":
        import torch  # a CUDA device means the caller already loaded torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def measure_peak_memory() -> dict[str, float]:
    """Peak memory of this process so far.

    Returns
    -------
    dict
        ``peak_rss_mb`` (:func:`peak_rss_mb`) and, when torch has used a CUDA device,
        ``peak_gpu_memory_mb`` (``torch.cuda.max_memory_allocated``).
    """
    peak = {"peak_rss_mb": peak_rss_mb()}
    torch = sys.modules.get("torch")  # only if the caller already uses torch
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def log_system_metrics(wall_time_s: float, peak_memory_mb: float | None = None) -> dict[str, float]:
    """Log wall time (s) and peak memory (MB) of the job as metrics of the active run.

    Parameters
    ----------
    wall_time_s
        Elapsed wall-clock time, seconds.
    peak_memory_mb
        Peak memory in MB if the caller measured it; default: the peak RSS from
        :func:`measure_peak_memory` (which also adds peak CUDA memory when torch used a GPU).

    Returns
    -------
    dict
        The metrics logged: ``wall_time_s``, ``peak_memory_mb`` and the parts of
        :func:`measure_peak_memory`.
    """
    _require_active_run()
    measured = measure_peak_memory()
    values = {"wall_time_s": float(wall_time_s), **measured}
    values["peak_memory_mb"] = float(peak_memory_mb) if peak_memory_mb is not None else measured["peak_rss_mb"]
    _mlflow().log_metrics(values)
    return values


# --------------------------------------------------------------------------------------
# Reading runs back (report)
# --------------------------------------------------------------------------------------


def query_runs(experiment: str, filter_string: str | None = None, *, missing_ok: bool = False) -> "pd.DataFrame":
    """All runs of an experiment as a table, newest first.

    Parameters
    ----------
    experiment
        Experiment name.
    filter_string
        MLflow search filter, e.g. ``"tags.profile = 'default' and attributes.status = 'FINISHED'"``.
    missing_ok
        Return an empty table instead of raising when the experiment does not exist.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``run_id``, ``status``, ``start_time``, ``end_time``, and
        ``metrics.*``, ``params.*``, ``tags.*`` columns (MLflow's ``search_runs`` layout).

    Raises
    ------
    TrackingError
        If the experiment does not exist (and ``missing_ok`` is false).
    """
    import pandas as pd

    mlflow = _mlflow()
    uri = configure()
    found = client().get_experiment_by_name(experiment)
    if found is None:
        if missing_ok:
            return pd.DataFrame(columns=["run_id", "status", "start_time", "end_time"])
        raise TrackingError(f"no MLflow experiment named {experiment!r} in {uri}; run the training stages first")
    runs = mlflow.search_runs(
        experiment_ids=[found.experiment_id],
        filter_string=filter_string or "",
        order_by=["attributes.start_time DESC"],
        output_format="pandas",
    )
    return runs.reset_index(drop=True)
