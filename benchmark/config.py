"""Validated configuration read from ``params.yaml``.

``params.yaml`` is the one file users edit (and ``dvc exp run -S key=value`` sets). Its
top-level ``profile`` key picks one entry of ``profiles`` (``ci``, ``default``, ``paper``):
the basin selection, the periods and the training sizes. Every section is a pydantic model
with unknown keys rejected, so a typo fails loudly with the key's name, as in
neuralhydrology. Dates are ISO (``YYYY-MM-DD``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from benchmark import repository
from benchmark.errors import ConfigError

FORCING_PRODUCTS = ("daymet", "maurer", "nldas")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Period(_Strict):
    """A closed date interval ``[start, end]`` (ISO dates)."""

    start: dt.date
    end: dt.date

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


class ProfileConfig(_Strict):
    """One run profile: which basins, which periods, how much training."""

    description: str = ""
    basins: list[str] | Literal["all"] = "all"
    train: Period
    test: Period
    #: held-out period for the per-epoch validation loss (monitoring only: nothing is selected
    #: on it); must overlap neither the training nor the test period; null: no validation curve
    validation: Period | None = None
    warmup_days: int = 365
    epochs: int = 1
    batch_basins: int = 100
    window_days: int = 365
    hidden_size: int = 256
    nmul: int = 16
    iterations_per_epoch: int | None = None
    seeds: list[int] = [111111]

    @model_validator(mode="after")
    def _validation_held_out(self) -> "ProfileConfig":
        v = self.validation
        if v is None:
            return self
        for name, period in (("training", self.train), ("test", self.test)):
            if v.start <= period.end and period.start <= v.end:
                raise ValueError(f"validation period {v.start}..{v.end} overlaps the {name} period "
                                 f"{period.start}..{period.end}; it must be held out from both")
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
    """The ``train:`` section: which variants the pipeline trains and how (SPEC.md section 5).

    Sizes (epochs, hidden, nmul, batch, window) come from the active profile; ``epochs`` set
    here (e.g. ``dvc exp run -S train.epochs=3``) overrides the profile's.
    """

    models: list[str] = ["dhbv", "dhbv_cr", "dhbv_adj", "dhbv_adj_cr"]
    epochs: int | None = None
    alpha: float = 0.25
    learning_rate: float = 1.0
    dropout: float = 0.5
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    newton_tol: float | None = None
    newton_max_iter: int = 20
    #: null: the model's own dynamic parameters (registry); a list overrides them (tuning, --hyperparams)
    dynamic_parameters: list[str] | None = None
    compile: bool = False
    #: torch CPU threads per process (null: cores / workers for a known worker, else torch's default);
    #: speed, not results beyond rounding (benchmark.threads)
    threads: int | None = None
    test_warmup_days: int = 730
    experiment: str = "hbvbench"
    models_dir: Path = Path("artifacts/models")
    eval_dir: Path = Path("artifacts/eval")

    @field_validator("epochs")
    @classmethod
    def _positive_epochs(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"epochs must be >= 1 or null, got {value}")
        return value

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"threads must be >= 1 or null, got {value}")
        return value

    @field_validator("alpha", "dropout")
    @classmethod
    def _unit_interval(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be in [0, 1), got {value}")
        return value


class LstmBaselineConfig(_Strict):
    """neuralhydrology LSTM (``cudalstm``) hyperparameters for one profile (``baselines.lstm.<profile>``).

    Keys map one to one onto neuralhydrology config keys; ``learning_rate`` maps epoch -> rate
    (key 0 is the initial rate); ``eval_batch_size`` is the test-time batch (no effect on the
    result, only on speed). ``validation_years`` is the number of final years of the
    training period used as neuralhydrology's (required) validation period: in-sample
    monitoring only, the last epoch's weights are always the ones tested.
    """

    hidden_size: int
    seq_length: int
    epochs: int
    batch_size: int
    learning_rate: dict[int, float]
    output_dropout: float = 0.4
    initial_forget_bias: float = 3.0
    clip_gradient_norm: float | None = 1.0
    loss: Literal["NSE", "MSE", "RMSE"] = "NSE"
    max_updates_per_epoch: int | None = None
    eval_batch_size: int = 2048
    validation_years: int = 1
    validate_every: int | None = None

    @field_validator("hidden_size", "seq_length", "epochs", "batch_size", "eval_batch_size", "validation_years")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value


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
    comma-separated SPEC.md parameter names (``"BETA,BETAET"``; ``""`` for none).
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
    trials: int = 20
    study: str | None = None
    storage: str | None = None
    experiment: str = "hbvbench-tuning"
    metric: str = "KGE"
    aggregate: Literal["median", "mean"] = "median"
    validation: Period | None = None
    validation_years: int = 1
    epochs: int | None = None
    seed: int | None = None
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 1
    heartbeat_s: int = 60
    out_dir: Path = Path("artifacts/tuning")
    search_space: dict[str, SearchDimension] = {}

    @field_validator("search_space")
    @classmethod
    def _known_hyperparameters(cls, value: dict[str, SearchDimension]) -> dict[str, SearchDimension]:
        unknown = sorted(set(value) - set(TUNABLE_HYPERPARAMETERS))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}; tunable: {sorted(TUNABLE_HYPERPARAMETERS)}")
        return value

    @field_validator("trials", "validation_years", "pruner_warmup_epochs", "heartbeat_s")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        return value

    @field_validator("epochs")
    @classmethod
    def _positive_epochs(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"epochs must be >= 1 or null, got {value}")
        return value


class Params(_Strict):
    """The whole of ``params.yaml``."""

    profile: str
    data: DataConfig = DataConfig()
    profiles: dict[str, ProfileConfig]
    train: TrainConfig = TrainConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _known_profile(self) -> "Params":
        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not one of {sorted(self.profiles)}")
        return self

    @property
    def active(self) -> ProfileConfig:
        """The profile selected by the top-level ``profile`` key."""
        return self.profiles[self.profile]


def _format_validation_error(source: Path | str, err: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


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
        If the file is missing, not YAML, or a key is unknown or invalid; the message
        names the file and the key (:class:`~benchmark.repository.RepositoryNotFound`
        when there is no path and no repository).
    """
    path = Path(path) if path is not None else repository.params_path()
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    raw = {**raw, **(overrides or {})}
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err)) from None


def resolve_path(path: Path, root: Path | None = None) -> Path:
    """Return ``path`` made absolute against ``root`` (default: the repository root; absolute paths pass).

    The repository root is found from the working directory, ``--params`` or
    ``HBVBENCH_ROOT`` (:mod:`benchmark.repository`), never from where the package lives.
    """
    return repository.resolve(path, root)
