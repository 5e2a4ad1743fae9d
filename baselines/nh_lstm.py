"""The pure-LSTM baseline, trained and tested with neuralhydrology (Kratzert et al. 2019 code).

Song et al. (2024) compare their differentiable models with "the code from Kratzert et al.
(2019)", i.e. neuralhydrology's ``cudalstm``. This module generates its configuration from
``params.yaml`` (same basins and periods as the δHBV models), runs it through the Python API
(``neuralhydrology.training.train.start_training`` and ``neuralhydrology.evaluation.get_tester``,
no subprocess), and converts the test-period simulation into this project's
``predictions.nc`` so that *our* metric code scores it like every other model.

Choices (all visible in the generated config and logged to MLflow):

- **Data**: neuralhydrology reads the raw CAMELS-US folder (``data.raw_dir``) with its own
  ``camels_us`` forcing reader (Daymet ``prcp(mm/day)``, ``srad(W/m2)``, ``tmax(C)``,
  ``tmin(C)``, ``vp(Pa)``). Two things differ from its stock ``camels_us`` class, through the
  registered subclass :class:`HbvbenchCamelsUS` (dataset key :data:`DATASET_KEY`):

  * the target ``QObs(mm/d)`` is converted from cfs with CAMELS ``area_gages2`` (as our
    prepared data and every δHBV model do), not with the forcing header's area, which differs
    by up to 22 % on the embedded basins (02231342);
  * the static attributes are the 35 of Table A1 read by ``benchmark.data.camels`` with the
    three class-name attributes (``dom_land_cover``, ``geol_1st_class``, ``geol_2nd_class``)
    integer-coded exactly as in the prepared dataset (neuralhydrology cannot take strings).
    Missing attribute values (e.g. ``geol_2nd_class`` of some basins) are filled with the mean
    over the training basins, i.e. 0 after neuralhydrology's z-scoring ("NaN -> 0" of
    docs/training.md#network-inputs-and-normalization). Attributes constant over the training
    basins are dropped (neuralhydrology refuses zero-variance attributes; a constant input
    carries no information).

- **Periods**: train and test are the active profile's. neuralhydrology requires a validation
  period; it is the last ``validation_years`` of the *training* period (in-sample monitoring
  only: the last epoch's weights are tested, there is no early stopping or model selection).
  Validation runs every ``validate_every`` epochs, by default once after the last epoch.

- **Basins**: by default the profile's basins for training, validation and test. For the
  ungauged-basin protocol (:mod:`benchmark.pub`) the network trains (and validates) on one
  basin list and is tested on another, held-out one: neuralhydrology's
  ``train_basin_file`` / ``test_basin_file``; the attribute scaler and the fill values of
  missing attributes come from the training basins only.

- **Seeds**: one run per seed (neuralhydrology's ``seed``); the profile's first seed writes
  ``<baselines.out_dir>/lstm/``, every other seed ``lstm/seed_<S>/`` (the layout of the
  differentiable models, see :func:`lstm_out_dir`).

- **Run folders**: neuralhydrology refuses to reuse a run folder, so each invocation gets a
  unique folder ``<out_dir>/nh_runs/<name>/`` (``name`` = ``lstm_nh_<profile>_<utc time>_<hex>``)
  holding the generated ``nh_config.yml``, the basin lists and neuralhydrology's own run
  folder (the trained weights). The configuration of the newest run is also written to
  ``<out_dir>/nh_config.yml``, and ``<out_dir>/training.json`` records its seed, run folder,
  basins and training and test seconds (:data:`TRAINING_RECORD`).

- **Loss curve**: neuralhydrology logs "Epoch N average loss: ..." through Python logging;
  :class:`EpochLogHook` captures these records (training loss and validation loss/metrics
  per epoch), which are written to ``epoch_losses.csv`` and logged to MLflow by epoch.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from benchmark import atomic
from benchmark.artifacts import seed_folder_name
from benchmark.config import LstmBaselineConfig, Params, Period, resolve_path
from benchmark.data.dataset import profile_basins
from benchmark.errors import ConfigError, DataError, TrainingError

MODEL_NAME = "lstm_nh"
NH_CONFIG_NAME = "nh_config.yml"
TRAINING_RECORD = "training.json"
"""Per run folder: seed, neuralhydrology run folder, basins, ``train_wall_s`` and ``test_wall_s`` (seconds)."""
DATASET_KEY = "camels_us_hbvbench"
TARGET = "QObs(mm/d)"
DYNAMIC_INPUTS: tuple[str, ...] = ("prcp(mm/day)", "srad(W/m2)", "tmax(C)", "tmin(C)", "vp(Pa)")
NH_DATE_FORMAT = "%d/%m/%Y"

LOGGER = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- dataset


@functools.lru_cache(maxsize=4)
def _attribute_table(raw_dir: str) -> pd.DataFrame:
    from benchmark.data.camels import read_attributes

    return read_attributes(raw_dir)


def table_a1_attributes(raw_dir: Path | str, basins: Sequence[str]) -> pd.DataFrame:
    """The 35 Table A1 attributes of ``basins`` as floats, class names integer-coded.

    Same reader and encoding as the prepared dataset (``benchmark.data.camels``): codes are
    positions in the sorted class list over every basin of the attribute files. NaN stays NaN.
    """
    from benchmark.data.camels import TABLE_A1, select_attributes

    table, _ = select_attributes(_attribute_table(str(raw_dir)), TABLE_A1, list(basins))
    return table


def usable_static_attributes(raw_dir: Path | str, train_basins: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the Table A1 attributes into those neuralhydrology can use and those dropped.

    Returns
    -------
    (list, list)
        Attributes kept (Table A1 order) and attributes dropped because they are constant
        (or entirely missing) over ``train_basins``.
    """
    table = table_a1_attributes(raw_dir, train_basins)
    spread = table.std(ddof=1) if len(table) > 1 else pd.Series(0.0, index=table.columns)
    dropped = [name for name in table.columns if not (spread[name] > 0)]
    kept = [name for name in table.columns if name not in dropped]
    return kept, dropped


def _nh_dataset_class() -> type:
    """Build (once) the neuralhydrology dataset class; importing neuralhydrology is slow."""
    from neuralhydrology.datasetzoo.camelsus import CamelsUS
    from neuralhydrology.datautils.utils import load_basin_file

    from benchmark.data.camels import read_streamflow, streamflow_path

    class HbvbenchCamelsUS(CamelsUS):
        """neuralhydrology's ``camels_us`` with this project's target and attribute encoding."""

        def _load_basin_data(self, basin: str) -> pd.DataFrame:
            frame = super()._load_basin_data(basin)  # neuralhydrology's own forcing reader
            area_km2 = float(_attribute_table(str(self.cfg.data_dir)).at[basin, "area_gages2"])
            flow = read_streamflow(streamflow_path(self.cfg.data_dir, basin), area_km2=area_km2)
            frame[TARGET] = flow["qobs_mm"].reindex(frame.index)
            return frame

        def _load_attributes(self) -> pd.DataFrame:
            table = table_a1_attributes(self.cfg.data_dir, self.basins)
            train_basins = load_basin_file(self.cfg.train_basin_file)
            fill = table_a1_attributes(self.cfg.data_dir, train_basins).mean()
            return table.fillna(fill)

    return HbvbenchCamelsUS


@functools.lru_cache(maxsize=1)
def register_nh_dataset() -> type:
    """Register :class:`HbvbenchCamelsUS` with neuralhydrology under :data:`DATASET_KEY`."""
    from neuralhydrology.datasetzoo import register_dataset

    cls = _nh_dataset_class()
    register_dataset(DATASET_KEY, cls)
    return cls


# ----------------------------------------------------------------------------- configuration


def validation_period(train: Period, years: int) -> Period:
    """The last ``years`` of the training period (neuralhydrology's mandatory validation period).

    Clipped to the training period when it is shorter than ``years``.
    """
    end = pd.Timestamp(train.end)
    start = max(pd.Timestamp(train.start), end - pd.DateOffset(years=years) + pd.Timedelta(days=1))
    return Period(start=start.date(), end=end.date())


def resolve_device(setting: str) -> str:
    """neuralhydrology device string for ``auto`` / ``cpu`` / ``cuda``.

    Raises
    ------
    ConfigError
        ``cuda`` requested on a machine without CUDA.
    """
    import torch

    if setting == "cpu":
        return "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml baselines.device is 'cuda' but torch sees no CUDA device; use auto or cpu")
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _nh_date(day: dt.date) -> str:
    return pd.Timestamp(day).strftime(NH_DATE_FORMAT)


def build_nh_config(
    *,
    settings: LstmBaselineConfig,
    train: Period,
    test: Period,
    raw_dir: Path,
    forcing_product: str,
    basin_file: Path,
    run_parent: Path,
    experiment_name: str,
    static_attributes: Sequence[str],
    n_basins: int,
    device: str,
    seed: int,
    test_basin_file: Path | None = None,
) -> dict[str, Any]:
    """The neuralhydrology run configuration (only keys neuralhydrology knows).

    Parameters
    ----------
    settings
        The profile's ``baselines.lstm`` entry (sizes, epochs, learning rates, loss).
    train, test
        Periods (the profile's); validation is the last ``settings.validation_years`` of ``train``.
    raw_dir
        CAMELS-US folder in the official layout (absolute).
    forcing_product
        ``daymet`` (the paper's), ``maurer`` or ``nldas``.
    basin_file
        Text file with one gauge id per line: the training and validation basins (and the test
        basins unless ``test_basin_file`` is given).
    run_parent
        Folder in which neuralhydrology creates its run folder.
    experiment_name
        Unique per invocation (the run folder name starts with it).
    static_attributes
        Attribute names (see :func:`usable_static_attributes`).
    n_basins
        Number of basins in ``basin_file`` (all are validated).
    device
        ``cpu`` or ``cuda:0``.
    seed
        Random seed.
    test_basin_file
        The basins to test on when they differ from the training basins (ungauged basins).

    Returns
    -------
    dict
        Accepted by ``neuralhydrology.utils.config.Config`` (which rejects unknown keys).
    """
    validation = validation_period(train, settings.validation_years)
    validate_every = settings.validate_every if settings.validate_every is not None else settings.epochs
    return {
        "experiment_name": experiment_name,
        "run_dir": str(run_parent),
        "train_basin_file": str(basin_file),
        "validation_basin_file": str(basin_file),
        "test_basin_file": str(test_basin_file if test_basin_file is not None else basin_file),
        "train_start_date": _nh_date(train.start),
        "train_end_date": _nh_date(train.end),
        "validation_start_date": _nh_date(validation.start),
        "validation_end_date": _nh_date(validation.end),
        "test_start_date": _nh_date(test.start),
        "test_end_date": _nh_date(test.end),
        "device": device,
        "seed": int(seed),
        "validate_every": int(validate_every),
        "validate_n_random_basins": n_basins,  # all basins
        "metrics": ["NSE", "KGE"],
        "save_validation_results": False,
        "cache_validation_data": True,
        "model": "cudalstm",
        "head": "regression",
        "output_activation": "linear",
        "hidden_size": settings.hidden_size,
        "initial_forget_bias": settings.initial_forget_bias,
        "output_dropout": settings.output_dropout,
        "optimizer": "Adam",
        "loss": settings.loss,
        "learning_rate": {int(k): float(v) for k, v in settings.learning_rate.items()},
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "max_updates_per_epoch": settings.max_updates_per_epoch,
        "clip_gradient_norm": settings.clip_gradient_norm,
        "predict_last_n": settings.predict_last_n,
        "seq_length": settings.seq_length,
        "num_workers": 0,
        "log_interval": 5,
        "log_tensorboard": False,
        "log_n_figures": 0,
        "save_weights_every": settings.epochs,
        "verbose": 0,
        "dataset": DATASET_KEY,
        "data_dir": str(raw_dir),
        "forcings": [forcing_product],
        "dynamic_inputs": list(DYNAMIC_INPUTS),
        "target_variables": [TARGET],
        "clip_targets_to_zero": [TARGET],
        "static_attributes": list(static_attributes),
    }


# ----------------------------------------------------------------------------- epoch log hook

_TRAIN_RE = re.compile(r"^Epoch (\d+) average loss: (.*)$")
_VALID_RE = re.compile(r"^Epoch (\d+) average validation loss: (\S+)(?: -- Median validation metrics: (.*))?$")


def _parse_pairs(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for item in text.split(","):
        key, sep, number = item.strip().rpartition(": ")
        if sep:
            try:
                values[key.strip()] = float(number)
            except ValueError:
                continue
    return values


def _train_values(text: str) -> dict[str, float]:
    """``avg_total_loss`` -> ``train_loss``; other loss terms -> ``train_<name>`` (``avg_loss``,
    equal to the total with a single target and no regularization, is left out)."""
    pairs = _parse_pairs(text)
    values = {"train_loss": pairs.pop("avg_total_loss")} if "avg_total_loss" in pairs else {}
    if "train_loss" in values and pairs.get("avg_loss") == values["train_loss"]:
        pairs.pop("avg_loss")
    values.update({f"train_{k}": v for k, v in pairs.items()})
    return values


def _valid_values(loss: str, metrics: str | None) -> dict[str, float]:
    values = {"valid_loss": float(loss)}
    pairs = _parse_pairs(metrics or "")
    if pairs.get("avg_loss") == values["valid_loss"]:
        pairs.pop("avg_loss")
    values.update({f"valid_{k}": v for k, v in pairs.items()})
    return values


class EpochLogHook(logging.Handler):
    """Captures neuralhydrology's per-epoch training/validation summaries from its logger.

    Each parsed record becomes ``{"epoch": N, "train_loss": ..., "valid_loss": ...,
    "valid_NSE": ..., "valid_KGE": ...}`` in :attr:`epochs` (merged per epoch; losses as
    configured, e.g. NSE loss), and ``on_epoch(epoch, values)`` is called with the newly
    parsed values.
    """

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.on_epoch = on_epoch
        self._by_epoch: dict[int, dict[str, float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        parsed: tuple[int, dict[str, float]] | None = None
        if match := _TRAIN_RE.match(message):
            parsed = int(match.group(1)), _train_values(match.group(2))
        elif match := _VALID_RE.match(message):
            parsed = int(match.group(1)), _valid_values(match.group(2), match.group(3))
        if parsed is None:
            return
        epoch, values = parsed
        self._by_epoch.setdefault(epoch, {}).update(values)
        if self.on_epoch is not None:
            self.on_epoch(epoch, values)

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per epoch (column ``epoch`` plus every parsed value)."""
        rows = [{"epoch": epoch, **values} for epoch, values in sorted(self._by_epoch.items())]
        return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- run


def new_run_name(profile: str) -> str:
    """Unique per invocation: ``lstm_nh_<profile>_<YYYYmmddTHHMMSS>_<6 hex>``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{MODEL_NAME}_{profile}_{stamp}_{uuid.uuid4().hex[:6]}"


@dataclass
class NhRun:
    """What one neuralhydrology train + test run left behind."""

    run_dir: Path
    config: dict[str, Any]
    results: dict[str, Any]
    epochs: pd.DataFrame
    train_seconds: float
    test_seconds: float
    dropped_attributes: list[str] = field(default_factory=list)


def train_and_test(
    config: dict[str, Any],
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    *,
    eval_batch_size: int | None = None,
) -> NhRun:
    """Train with ``start_training`` and evaluate the test period with ``get_tester``.

    Parameters
    ----------
    config
        From :func:`build_nh_config`; ``run_dir`` is the parent of the run folder.
    on_epoch
        Called as ``on_epoch(epoch, values)`` for every epoch summary neuralhydrology logs.
    eval_batch_size
        Batch size of the test evaluation (default: the training batch size). Inference in
        eval mode: only speed depends on it.

    Returns
    -------
    NhRun
        The run folder, the test results (neuralhydrology's dict: basin -> "1D" -> ``xr`` and
        metrics), the per-epoch log and timings.

    Raises
    ------
    TrainingError
        neuralhydrology rejected the configuration or failed while training/testing.
    """
    from neuralhydrology.evaluation import get_tester
    from neuralhydrology.training.train import start_training
    from neuralhydrology.utils.config import Config

    register_nh_dataset()
    try:
        cfg = Config(dict(config))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"neuralhydrology rejected the generated configuration: {exc}") from None
    parent = Path(config["run_dir"])
    before = {p.name for p in parent.iterdir()} if parent.is_dir() else set()

    nh_logger = logging.getLogger("neuralhydrology")
    hook = EpochLogHook(on_epoch)
    previous_level, previous_hook = nh_logger.level, sys.excepthook
    nh_logger.setLevel(logging.INFO)
    nh_logger.addHandler(hook)
    try:
        start = time.perf_counter()
        try:
            start_training(cfg)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise TrainingError(f"neuralhydrology training failed: {type(exc).__name__}: {exc}") from exc
        train_seconds = time.perf_counter() - start
        created = sorted({p.name for p in parent.iterdir() if p.is_dir()} - before)
        if len(created) != 1:
            raise TrainingError(f"expected neuralhydrology to create one run folder in {parent}, found {created}")
        run_dir = parent / created[0]
        start = time.perf_counter()
        run_cfg = Config(run_dir / "config.yml")
        if eval_batch_size is not None:
            run_cfg.update_config({"batch_size": int(eval_batch_size)})
        tester = get_tester(cfg=run_cfg, run_dir=run_dir, period="test", init_model=True)
        try:
            results = tester.evaluate(save_results=True, metrics=["NSE", "KGE"])
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            raise TrainingError(f"neuralhydrology test evaluation failed: {type(exc).__name__}: {exc}") from exc
        test_seconds = time.perf_counter() - start
    finally:
        nh_logger.removeHandler(hook)
        nh_logger.setLevel(previous_level)
        sys.excepthook = previous_hook  # neuralhydrology's setup_logging replaces it
    return NhRun(run_dir=run_dir, config=dict(config), results=results, epochs=hook.epochs,
                 train_seconds=train_seconds, test_seconds=test_seconds)


# ----------------------------------------------------------------------------- conversion


def results_to_predictions(
    results: dict[str, Any],
    qobs: xr.DataArray | None = None,
    *,
    period: Period | None = None,
) -> xr.Dataset:
    """Convert neuralhydrology test results into this project's ``predictions.nc`` layout.

    Parameters
    ----------
    results
        ``tester.evaluate()``'s dict: basin -> ``"1D"`` -> ``"xr"`` (a Dataset with
        ``QObs(mm/d)_sim`` / ``QObs(mm/d)_obs`` over ``date`` x ``time_step``).
    qobs
        Observed flow (mm/day) over (``basin``, ``date``) from the prepared dataset; when given
        it is the ``qobs`` of the output (the one every model is scored against), otherwise
        neuralhydrology's observation is used.
    period
        The test period; when given, the dates must cover it exactly.

    Returns
    -------
    xarray.Dataset
        ``qsim`` and ``qobs`` (float32, mm/day) over (``basin``, ``date``); negative simulated
        flows clipped to 0 (as neuralhydrology does with ``clip_targets_to_zero`` before its
        metrics); attrs ``model`` = ``lstm_nh``.

    Raises
    ------
    DataError
        Empty results, a basin without daily output, mismatched dates, or a basin missing
        from ``qobs``.
    """
    if not results:
        raise DataError("neuralhydrology returned no test results")
    sims, obss, basins = [], [], sorted(results)
    dates: pd.DatetimeIndex | None = None
    for basin in basins:
        daily = results[basin].get("1D")
        if daily is None or "xr" not in daily:
            raise DataError(f"neuralhydrology test results of basin {basin} hold no daily ('1D') output")
        frame = daily["xr"].isel(time_step=-1)
        basin_dates = pd.DatetimeIndex(frame["date"].values)
        if dates is None:
            dates = basin_dates
        elif not basin_dates.equals(dates):
            raise DataError(f"neuralhydrology test dates of basin {basin} differ from those of basin {basins[0]}")
        sims.append(np.clip(frame[f"{TARGET}_sim"].values.astype(np.float64), 0.0, None))
        obss.append(frame[f"{TARGET}_obs"].values.astype(np.float64))
    assert dates is not None
    if period is not None:
        expected = pd.date_range(period.start, period.end, freq="D")
        if not dates.equals(expected):
            raise DataError(
                f"neuralhydrology test output covers {dates[0].date()}..{dates[-1].date()} ({len(dates)} days), "
                f"expected the test period {period.start}..{period.end}"
            )
    qsim = np.stack(sims).astype(np.float32)
    if qobs is None:
        observed = np.stack(obss).astype(np.float32)
        source = "neuralhydrology (QObs(mm/d), area_gages2)"
    else:
        missing = sorted(set(basins) - set(map(str, qobs["basin"].values)))
        if missing:
            raise DataError(f"basin {missing[0]} of the LSTM run is not in the prepared dataset")
        observed = qobs.sel(basin=basins).reindex(date=dates).values.astype(np.float32)
        source = "prepared dataset (qobs)"
    coords = {"basin": np.array(basins, dtype=str), "date": dates.values.astype("datetime64[ns]")}
    attrs_unit = {"units": "mm/day"}
    return xr.Dataset(
        {
            "qsim": (("basin", "date"), qsim, {**attrs_unit, "long_name": "LSTM simulated streamflow"}),
            "qobs": (("basin", "date"), observed, {**attrs_unit, "long_name": "observed streamflow"}),
        },
        coords=coords,
        attrs={"model": MODEL_NAME, "qobs_source": source, "created_by": "baselines.nh_lstm"},
    )


def nh_metrics(results: dict[str, Any]) -> pd.DataFrame:
    """neuralhydrology's own per-basin test metrics (``NSE``, ``KGE``), indexed by basin."""
    rows = {basin: {k: v for k, v in results[basin]["1D"].items() if k != "xr"} for basin in results}
    return pd.DataFrame.from_dict(rows, orient="index").sort_index()


# ----------------------------------------------------------------------------- pipeline step


@dataclass
class LstmBaselineResult:
    """Outputs of :func:`run_lstm_baseline`."""

    out_dir: Path
    predictions: xr.Dataset
    per_basin: pd.DataFrame
    summary: dict[str, Any]
    nh_run: NhRun
    wall_seconds: float


def lstm_out_dir(params: Params, seed: int | None = None) -> Path:
    """``<baselines.out_dir>/lstm`` for the profile's first seed, ``lstm/seed_<S>`` for another (absolute)."""
    folder = resolve_path(params.baselines.out_dir) / "lstm"
    return folder if seed is None or seed == params.active.seeds[0] else folder / seed_folder_name(seed)


def prepare_run_folder(
    params: Params, basins: Sequence[str], out_dir: Path, *, seed: int | None = None,
    test_basins: Sequence[str] | None = None,
) -> tuple[dict[str, Any], Path, list[str]]:
    """Create ``<out_dir>/nh_runs/<unique name>/`` with the basin lists and ``nh_config.yml``
    (also written to ``<out_dir>/nh_config.yml``: the configuration of the newest run).

    Parameters
    ----------
    params
        Validated params (profile, ``baselines.lstm.<profile>``, data folder, device).
    basins
        Training (and validation) basins; also the test basins unless ``test_basins`` is given.
    out_dir
        The run's output folder.
    seed
        neuralhydrology's seed (default: the profile's first).
    test_basins
        Held-out basins to test on (ungauged basins); static attributes are chosen and
        scaled on ``basins`` only.

    Returns
    -------
    (dict, Path, list)
        The neuralhydrology config, the invocation folder, the dropped attributes.
    """
    settings = params.baselines.lstm_for(params.profile)
    raw_dir = resolve_path(params.data.raw_dir).resolve()
    name = new_run_name(params.profile)
    folder = out_dir / "nh_runs" / name
    folder.mkdir(parents=True, exist_ok=False)
    basin_file = folder / "basins.txt"
    atomic.write_text(basin_file, "\n".join(basins) + "\n")
    test_file = None
    if test_basins is not None:
        test_file = folder / "test_basins.txt"
        atomic.write_text(test_file, "\n".join(test_basins) + "\n")
    kept, dropped = usable_static_attributes(raw_dir, basins)
    config = build_nh_config(
        settings=settings, train=params.active.train, test=params.active.test, raw_dir=raw_dir,
        forcing_product=params.data.forcing_product, basin_file=basin_file.resolve(), run_parent=folder.resolve(),
        experiment_name=name, static_attributes=kept, n_basins=len(basins), device=resolve_device(params.baselines.device),
        seed=params.active.seeds[0] if seed is None else seed,
        test_basin_file=test_file.resolve() if test_file is not None else None,
    )
    atomic.write_yaml(folder / NH_CONFIG_NAME, config)
    atomic.write_yaml(out_dir / NH_CONFIG_NAME, config)
    return config, folder, dropped


def run_lstm_baseline(
    params: Params,
    *,
    out_dir: Path | None = None,
    dataset: xr.Dataset | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    seed: int | None = None,
    basins: Sequence[str] | None = None,
    test_basins: Sequence[str] | None = None,
) -> LstmBaselineResult:
    """Train and test the LSTM on the active profile, score it with our metrics, write artifacts.

    Writes ``<out_dir>/predictions.nc``, ``metrics.json``, ``per_basin_metrics.csv``,
    ``nh_metrics.csv`` (neuralhydrology's own NSE/KGE, for cross-checking),
    ``epoch_losses.csv``, ``nh_config.yml`` and ``training.json``; ``out_dir`` defaults to
    :func:`lstm_out_dir` of the seed. MLflow logging is done by the caller
    (:func:`baselines.commands`), which passes ``on_epoch``.

    Parameters
    ----------
    seed
        neuralhydrology's seed (default: the profile's first).
    basins, test_basins
        Training basins and held-out test basins (ungauged basins, :mod:`benchmark.pub`);
        default: the profile's basins for both.

    Raises
    ------
    HbvbenchError
        Bad configuration, missing data, or a failed neuralhydrology run.
    """
    from benchmark.evaluation import score_predictions, write_metrics

    wall_start = time.perf_counter()
    seed = params.active.seeds[0] if seed is None else seed
    out_dir = Path(out_dir) if out_dir is not None else lstm_out_dir(params, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        from benchmark.data.dataset import load_dataset

        dataset = load_dataset(params=params)
    available = dataset["basin"].values
    train_basins = profile_basins(params, available) if basins is None else _known_basins(basins, available)
    tested = train_basins if test_basins is None else _known_basins(test_basins, available)
    config, run_folder, dropped = prepare_run_folder(params, train_basins, out_dir, seed=seed,
                                                     test_basins=None if test_basins is None else tested)
    settings = params.baselines.lstm_for(params.profile)
    nh_run = train_and_test(config, on_epoch=on_epoch, eval_batch_size=settings.eval_batch_size)
    nh_run.dropped_attributes = dropped
    predictions = results_to_predictions(nh_run.results, dataset["qobs"], period=params.active.test)
    predictions.attrs.update({"seed": int(seed), "profile": params.profile})
    per_basin, summary = score_predictions(predictions, dataset)
    atomic.write_netcdf(out_dir / "predictions.nc", predictions)
    write_metrics(out_dir, per_basin, summary)
    atomic.write_text(out_dir / "nh_metrics.csv", nh_metrics(nh_run.results).to_csv(index_label="basin"))
    atomic.write_text(out_dir / "epoch_losses.csv", nh_run.epochs.to_csv(index=False))
    record = {"seed": int(seed), "profile": params.profile, "nh_run_dir": str(run_folder.relative_to(out_dir)),
              "train_basins": list(train_basins), "test_basins": list(tested),
              "train_wall_s": nh_run.train_seconds, "test_wall_s": nh_run.test_seconds}
    atomic.write_text(out_dir / TRAINING_RECORD, json.dumps(record, indent=2) + "\n")
    wall = time.perf_counter() - wall_start
    LOGGER.info("LSTM baseline (seed %d): %d training / %d test basins, train %.1f s, test %.1f s, total %.1f s",
                seed, len(train_basins), len(tested), nh_run.train_seconds, nh_run.test_seconds, wall)
    return LstmBaselineResult(out_dir=out_dir, predictions=predictions, per_basin=per_basin, summary=summary,
                              nh_run=nh_run, wall_seconds=wall)


def _known_basins(basins: Sequence[str], available: Sequence[Any]) -> list[str]:
    """``basins`` sorted (DataError naming the first one the prepared dataset lacks)."""
    known = set(map(str, available))
    missing = [b for b in basins if b not in known]
    if missing:
        raise DataError(f"basin {missing[0]} is not in the prepared dataset; run `hbvbench prepare` with it")
    return sorted(basins)


def is_finite_number(value: Any) -> bool:
    """True for a real, finite number (used to filter summaries before logging)."""
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and math.isfinite(value)
