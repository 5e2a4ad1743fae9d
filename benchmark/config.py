"""Validated configuration read from ``params.yaml``.

``params.yaml`` is the one file users edit (and ``dvc exp run -S key=value`` sets). Its
top-level ``profile`` key picks one entry of ``profiles`` (``ci``, ``default``, ``paper``):
the basin selection, the periods and the training sizes. Every section is a pydantic model
with unknown keys rejected, so a typo fails loudly with the key's name, as in
neuralhydrology. Dates are ISO (``YYYY-MM-DD``).

This module is the configuration half of hbvbench's one validation layer (the data half
is :mod:`benchmark.data.checks`); every command runs it before doing any work:

* the YAML itself: a key given twice in one mapping is an error (plain YAML keeps the last
  one silently, which can make a whole section vanish);
* every number is range-checked and named by its key: counts and sizes >= 1 (epochs,
  basins per batch, window, hidden size, nmul, iterations, Newton iterations, trials),
  day counts >= 0 (warm-ups), rates and tolerances > 0, fractions in [0, 1); NaN and
  infinity are refused everywhere;
* periods against each other: training, validation and test periods are disjoint, a
  training window fits in the training period; dates are ``YYYY-MM-DD`` (a bare number is not read as a time stamp).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark import repository
from benchmark.errors import ConfigError

FORCING_PRODUCTS = ("daymet", "maurer", "nldas")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> Any:
    """Accept a date or a ``YYYY-MM-DD`` string; anything else (a bare number would be
    read as a Unix time stamp) is refused."""
    if isinstance(value, dt.datetime):
        raise ValueError("expected a date YYYY-MM-DD, not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        return value.strip()
    raise ValueError("expected an ISO date YYYY-MM-DD")


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
#: a share such as a dropout rate or a loss weight: 0 <= x < 1
UnitFraction = Annotated[float, Field(ge=0.0, lt=1.0)]
#: numpy and torch seeds are non-negative and fit in 32 bits
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def _models_once(value: list[str]) -> list[str]:
    """A model list (``train.models``, ``pub.models``) that names no model twice."""
    if len(set(value)) != len(value):
        raise ValueError(f"{value} lists a model twice")
    return value


ModelList = Annotated[list[str], AfterValidator(_models_once)]
"""A list of model names, none twice (``train.models``, ``pub.models``)."""


def _overlap(a: "Period", b: "Period") -> bool:
    return a.start <= b.end and b.start <= a.end


class Period(_Strict):
    """A closed date interval ``[start, end]`` (ISO dates)."""

    start: IsoDate
    end: IsoDate

    @model_validator(mode="after")
    def _ordered(self) -> "Period":
        if self.end < self.start:
            raise ValueError(f"period end {self.end} is before start {self.start}")
        return self

    @property
    def n_days(self) -> int:
        """Number of days in the period, both ends included."""
        return (self.end - self.start).days + 1


class DataConfig(_Strict):
    """Where the raw CAMELS-US folder is and what the ``prepare`` stage writes."""

    raw_dir: Path = Path("data/camels_us")
    forcing_product: Literal["daymet", "maurer", "nldas"] = "daymet"
    modis_et_dir: Path | None = None
    processed_dir: Path = Path("artifacts/data")
    #: static attributes written to the dataset: "table_a1" (the paper's 35) or a list of CAMELS names
    attributes: list[str] | Literal["table_a1"] = "table_a1"
    #: a basin without a single streamflow observation in the training, validation or test
    #: period: "error" stops `prepare`; "warn" keeps it, prints a warning and records it in
    #: manifest.json and the MLflow runs of every model trained or evaluated on the data
    unobserved_basins: Literal["error", "warn"] = "error"


class ProfileConfig(_Strict):
    """One run profile: which basins, which periods, how much training."""

    description: str = ""
    basins: list[str] | Literal["all"] = "all"
    train: Period
    test: Period
    #: held-out period for the per-epoch validation loss (monitoring only: nothing is selected
    #: on it); must overlap neither the training nor the test period; null: no validation curve
    validation: Period | None = None
    warmup_days: NonNegativeInt = 365
    epochs: PositiveInt = 1
    batch_basins: PositiveInt = 100
    window_days: PositiveInt = 365
    hidden_size: PositiveInt = 256
    nmul: PositiveInt = 16
    iterations_per_epoch: PositiveInt | None = None
    seeds: list[Seed] = Field(default=[111111], min_length=1)
    #: fused daily kernels (see TrainConfig.compile): pays off from a few hundred training steps;
    #: a profile of a handful of steps spends more time compiling than it saves
    compile: bool = False

    @model_validator(mode="after")
    def _periods_disjoint(self) -> "ProfileConfig":
        if _overlap(self.train, self.test):
            raise ValueError(f"the training period {self.train.start}..{self.train.end} overlaps the test period "
                             f"{self.test.start}..{self.test.end}: the model would be scored on years it trained on")
        v = self.validation
        if v is not None:
            for name, period in (("training", self.train), ("test", self.test)):
                if _overlap(v, period):
                    raise ValueError(f"validation period {v.start}..{v.end} overlaps the {name} period "
                                     f"{period.start}..{period.end}; it must be held out from both")
        return self

    @model_validator(mode="after")
    def _sizes_fit(self) -> "ProfileConfig":
        if self.window_days > self.train.n_days:
            raise ValueError(f"window_days={self.window_days} is longer than the training period "
                             f"{self.train.start}..{self.train.end} ({self.train.n_days} days)")
        if isinstance(self.basins, list) and not self.basins:
            raise ValueError("basins is an empty list (give gauge ids or 'all')")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} lists a seed twice")
        return self

    @field_validator("basins")
    @classmethod
    def _gauge_ids(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            for gauge in value:
                if not (isinstance(gauge, str) and len(gauge) == 8 and gauge.isdigit()):
                    raise ValueError(f"basin id {gauge!r} is not an 8-digit USGS gauge id (quote it in YAML)")
        return value


class TrainConfig(_Strict):
    """The ``train:`` section: which variants the pipeline trains and how (docs/training.md).

    Sizes (epochs, hidden, nmul, batch, window) come from the active profile; ``epochs`` set
    here (e.g. ``dvc exp run -S train.epochs=3``) overrides the profile's.
    """

    models: ModelList = Field(default=["dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr"], min_length=1)
    epochs: PositiveInt | None = None
    alpha: UnitFraction = 0.25
    learning_rate: PositiveFloat = 1.0
    dropout: UnitFraction = 0.5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    newton_tol: PositiveFloat | None = None
    newton_max_iter: PositiveInt = 20
    #: evaluation: a basin whose share of not-converged Newton days (implicit scheme, over the
    #: warm-up and test days) is above this is marked failed (see benchmark/training/evaluate.py)
    max_not_converged_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    #: null: the model's own dynamic parameters (registry); a list overrides them (tuning, --hyperparams)
    dynamic_parameters: list[str] | None = None
    #: fused daily kernels of the time scheme (torch.compile, benchmark/solvers/fused.py); the same
    #: results as without to rounding; the network is not compiled. null: the profile's ``compile``
    compile: bool | None = None
    #: torch CPU threads per process (null: cores / workers for a known worker, else torch's default);
    #: speed, not results beyond rounding (benchmark.threads)
    threads: PositiveInt | None = None
    test_warmup_days: NonNegativeInt = 730
    experiment: str = "hbvbench"
    models_dir: Path = Path("artifacts/models")
    eval_dir: Path = Path("artifacts/eval")
    #: the in-progress state of a training run (checkpoint of the last finished epoch), kept
    #: outside the pipeline's declared outputs so that a rerun after a crash can continue
    work_dir: Path = Path("artifacts/work")


class LstmBaselineConfig(_Strict):
    """neuralhydrology LSTM (``cudalstm``) hyperparameters for one profile (``baselines.lstm.<profile>``).

    Keys map one to one onto neuralhydrology config keys; ``learning_rate`` maps epoch -> rate
    (key 0 is the initial rate); ``eval_batch_size`` is the test-time batch (no effect on the
    result, only on speed). ``validation_years`` is the number of final years of the
    training period used as neuralhydrology's (required) validation period: in-sample
    monitoring only, the last epoch's weights are always the ones tested.
    ``predict_last_n``: the last days of each ``seq_length``-day training sequence that enter
    the loss (1: sequence-to-one as in Kratzert et al. 2019; the days before are spin-up).
    """

    hidden_size: PositiveInt
    seq_length: PositiveInt
    predict_last_n: PositiveInt = 1
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: dict[NonNegativeInt, PositiveFloat]
    output_dropout: UnitFraction = 0.4
    initial_forget_bias: float = 3.0
    clip_gradient_norm: PositiveFloat | None = 1.0
    loss: Literal["NSE", "MSE", "RMSE"] = "NSE"
    max_updates_per_epoch: PositiveInt | None = None
    eval_batch_size: PositiveInt = 2048
    validation_years: PositiveInt = 1
    validate_every: PositiveInt | None = None

    @field_validator("learning_rate")
    @classmethod
    def _starts_at_epoch_0(cls, value: dict[int, float]) -> dict[int, float]:
        if 0 not in value:
            raise ValueError(f"needs the initial rate under key 0 (epoch -> rate), got keys {sorted(value)}")
        return value

    @model_validator(mode="after")
    def _scored_days_fit(self) -> "LstmBaselineConfig":
        if self.predict_last_n > self.seq_length:
            raise ValueError(f"predict_last_n={self.predict_last_n} is longer than seq_length={self.seq_length}")
        return self


class BaselinesConfig(_Strict):
    """The ``baselines:`` section: the neuralhydrology LSTM and CAMELS SAC-SMA baselines."""

    lstm: dict[str, LstmBaselineConfig] = {}
    device: Literal["auto", "cpu", "cuda"] = "auto"
    out_dir: Path = Path("artifacts/baselines")

    def lstm_for(self, profile: str) -> LstmBaselineConfig:
        """The LSTM settings of ``profile``; ConfigError naming the key if there are none."""
        if profile not in self.lstm:
            raise ConfigError(
                f"params.yaml has no baselines.lstm.{profile} entry (LSTM settings for profile {profile!r}); "
                f"it has {sorted(self.lstm)}"
            )
        return self.lstm[profile]


#: Hyperparameters a study may search (``tune.search_space`` keys) and where each one lives:
#: ``profile`` (the active profile's field) or ``train`` (``train:`` field).
TUNABLE_HYPERPARAMETERS: dict[str, str] = {
    "learning_rate": "train",
    "dropout": "train",
    "alpha": "train",
    "newton_tol": "train",
    "dynamic_parameters": "train",
    "hidden_size": "profile",
    "nmul": "profile",
    "warmup_days": "profile",
    "window_days": "profile",
    "batch_basins": "profile",
}


class SearchDimension(_Strict):
    """One entry of ``tune.search_space``: an Optuna distribution.

    ``type: float`` / ``int`` take ``low``, ``high`` and optionally ``log`` (and ``step`` for
    ``int``); ``type: categorical`` takes ``choices``. ``dynamic_parameters`` choices are
    comma-separated parameter names of docs/model.md#parameters (``"BETA,BETAET"``; ``""`` for none).
    ``schemes`` limits the entry to models of those time schemes (e.g. ``[implicit]`` for
    the Newton tolerance); other models keep the configured value.
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: list[float | int | str | bool | None] | None = None
    schemes: list[str] | None = None

    @model_validator(mode="after")
    def _complete(self) -> "SearchDimension":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("type categorical needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("type categorical takes `choices`, not `low`/`high`")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} needs `low` and `high`")
        if self.choices is not None:
            raise ValueError(f"type {self.type} takes `low`/`high`, not `choices`")
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("type int needs integer `low` and `high`")
        if self.step is not None and (self.type != "int" or self.step < 1 or self.log):
            raise ValueError("`step` is for type int on a linear scale, >= 1")
        return self


class TuneConfig(_Strict):
    """The ``tune:`` section: Optuna studies of ``hbvbench tune`` (:mod:`benchmark.tuning`).

    The objective is ``aggregate`` (median) across basins of the basin metric ``metric``
    (a :func:`benchmark.metrics.basin_metrics` key) on the validation period: ``validation``
    (ISO dates) or, when null, the last ``validation_years`` years of the profile's training
    period. Trials train on the training period up to the day before it; the validation
    period must not overlap the test period.
    """

    model: str = "dhbv"
    trials: PositiveInt = 20
    study: str | None = None
    storage: str | None = None
    experiment: str = "hbvbench-tuning"
    metric: str = "KGE"
    aggregate: Literal["median", "mean"] = "median"
    validation: Period | None = None
    validation_years: PositiveInt = 1
    epochs: PositiveInt | None = None
    seed: Seed | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    pruner_startup_trials: NonNegativeInt = 3
    pruner_warmup_epochs: PositiveInt = 1
    heartbeat_s: PositiveInt = 60
    out_dir: Path = Path("artifacts/tuning")
    search_space: dict[str, SearchDimension] = {}

    @field_validator("search_space")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        unknown = sorted(set(value) - set(TUNABLE_HYPERPARAMETERS))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; tunable: {sorted(TUNABLE_HYPERPARAMETERS)}")
        return value


PUB_LSTM = "lstm"
"""The name of the neuralhydrology LSTM in ``pub.models`` (the differentiable models go by registry name)."""


def check_folds(folds: list[list[str]], basins: list[str] | None, key: str) -> None:
    """Refuse a fold split that does not hold out every basin exactly once.

    Parameters
    ----------
    folds
        The folds, each a list of 8-digit gauge ids.
    basins
        The basins the folds must partition (the profile's); None: only the folds' own
        consistency is checked (a profile with ``basins: all`` is checked against the
        prepared dataset when a command runs).
    key
        The configuration key of the folds (``pub.folds.<profile>``), named in every error.

    Raises
    ------
    ValueError
        Fewer than two folds, an empty fold, a basin in two folds, a basin outside ``basins``
        or a basin of ``basins`` in no fold; the message names the key, fold and basin.
    """
    if len(folds) < 2:
        raise ValueError(f"{key} has {len(folds)} fold(s); the protocol needs at least 2 (train on the others)")
    seen: dict[str, int] = {}
    for number, fold in enumerate(folds, start=1):
        if not fold:
            raise ValueError(f"{key} fold {number} is empty")
        for basin in fold:
            if basin in seen:
                raise ValueError(f"{key}: basin {basin} is in fold {seen[basin]} and fold {number}; "
                                 "each basin must be held out exactly once")
            seen[basin] = number
    if basins is None:
        return
    unknown = sorted(set(seen) - set(basins))
    if unknown:
        raise ValueError(f"{key}: basins {unknown} are not basins of the profile")
    missing = sorted(set(basins) - set(seen))
    if missing:
        raise ValueError(f"{key}: basins {missing} of the profile are in no fold; each basin must be held out once")


class PubConfig(_Strict):
    """The ``pub:`` section: the ungauged-basin (PUB) spatial k-fold protocol (docs/training.md).

    ``folds.<profile>`` lists the folds of that profile as explicit basin lists (each basin of
    the profile in exactly one fold); every model of ``models`` (registry names and
    ``lstm``) is trained on the other folds' basins and tested on the held-out fold's, on the
    profile's periods with its first seed. Outputs go to ``<out_dir>/<profile>/fold_<i>/<model>/``,
    the leaderboard to ``<report_dir>/leaderboard.md``.
    """

    models: ModelList = Field(default=["dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr", PUB_LSTM], min_length=1)
    folds: dict[str, list[list[str]]] = {}
    out_dir: Path = Path("artifacts/pub")
    report_dir: Path = Path("reports/pub")

    @field_validator("folds")
    @classmethod
    def _gauge_ids(cls, value: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
        for profile, folds in value.items():
            for number, fold in enumerate(folds, start=1):
                for gauge in fold:
                    if not (isinstance(gauge, str) and len(gauge) == 8 and gauge.isdigit()):
                        raise ValueError(f"{profile} fold {number}: basin id {gauge!r} is not an 8-digit USGS gauge "
                                         "id (quote it in YAML)")
        return value

    def folds_for(self, profile: str) -> list[list[str]]:
        """The folds of ``profile``; ConfigError naming the key when there are none."""
        if profile not in self.folds:
            raise ConfigError(f"params.yaml has no pub.folds.{profile} entry (the held-out basin folds of profile "
                              f"{profile!r}); it has {sorted(self.folds)}; `hbvbench pub folds` proposes some")
        return self.folds[profile]


class Params(_Strict):
    """The whole of ``params.yaml``."""

    profile: str
    data: DataConfig = DataConfig()
    profiles: dict[str, ProfileConfig]
    train: TrainConfig = TrainConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    tune: TuneConfig = TuneConfig()
    pub: PubConfig = PubConfig()

    @model_validator(mode="after")
    def _known_profile(self) -> "Params":
        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not one of {sorted(self.profiles)}")
        return self

    @model_validator(mode="after")
    def _pub_folds_consistent(self) -> "Params":
        # Whether the folds partition the profile's basins is checked by the `pub` commands
        # (benchmark.pub.folds.profile_folds): editing a profile's basins must not stop `train`.
        for name, folds in self.pub.folds.items():
            if name not in self.profiles:
                raise ValueError(f"pub.folds.{name}: no profile {name!r} (profiles: {sorted(self.profiles)})")
            check_folds(folds, None, f"pub.folds.{name}")
        return self

    @property
    def active(self) -> ProfileConfig:
        """The profile selected by the top-level ``profile`` key."""
        return self.profiles[self.profile]

    @property
    def fused_kernels(self) -> bool:
        """Whether the time schemes run their fused daily kernels: ``train.compile``, else the profile's."""
        return self.train.compile if self.train.compile is not None else self.active.compile


def format_validation_error(source: Path | str, err: ValidationError) -> str:
    """One line per invalid key: ``<dotted key>: <what is wrong> (got <value>)``."""
    lines = [f"invalid configuration in {source}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        shown = "" if item["type"] in ("missing", "extra_forbidden") or isinstance(got, (dict, list)) else f" (got {got!r})"
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: let the default constructor report it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {key!r} appears twice in one mapping (first on line {first + 1}); YAML would silently keep "
                "only the last one: merge the two entries",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: Path | str, what: str = "config file") -> Any:
    """Parse a YAML file, refusing duplicate keys.

    Raises
    ------
    ConfigError
        Missing or unreadable file, invalid YAML or a duplicate key; the message names the
        file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        where = f" line {exc.problem_mark.line + 1}" if exc.problem_mark is not None else ""
        raise ConfigError(f"{what} {path}{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None


def load_params(path: Path | str | None = None, *, overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate a ``params.yaml``.

    Parameters
    ----------
    path
        The YAML file (default: ``params.yaml`` of the repository root,
        :func:`benchmark.repository.root`).
    overrides
        Top-level keys to replace after reading (e.g. ``{"profile": "ci"}``).

    Returns
    -------
    Params
        The validated configuration.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, has a key twice, or a key is unknown or invalid;
        the message names the file and the key (:class:`~benchmark.repository.RepositoryNotFound`
        when there is no path and no repository).
    """
    path = Path(path) if path is not None else repository.params_path()
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"config file {path} is empty; it must hold the params.yaml mapping (profile, profiles, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    raw = {**raw, **(overrides or {})}
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(path, err)) from None


def resolve_path(path: Path, root: Path | None = None) -> Path:
    """Return ``path`` made absolute against ``root`` (default: the repository root; absolute paths pass).

    The repository root is found from the working directory, ``--params`` or
    ``HBVBENCH_ROOT`` (:mod:`benchmark.repository`), never from where the package lives.
    """
    return repository.resolve(path, root)
