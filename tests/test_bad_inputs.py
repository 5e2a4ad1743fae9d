"""Every bad input and fault a user can meet ends in one clear error, and nothing is written.

Each case below is run as a user would run it: ``hbvbench --params <their params.yaml>
<command>`` (in process, for speed) in a workspace that holds the ``ci`` profile's real
CAMELS-US files (4 basins, symbolic links to ``data/camels_us``), its processed data and a
trained ``dhbv`` model when the case needs them. A case passes when

* the exit code is 2 and stderr starts with ``hbvbench <command>: error: `` (no traceback);
* the message names what is wrong: the key, file, basin, date or URI (the case's fragments);
* no file or folder of the workspace was created, changed or removed.

Classes: configuration (duplicate YAML keys, ranges, periods, dates), command-line
arguments, raw CAMELS files (plausibility, truncation, empty files, unobserved basins),
processed data, checkpoints (unsafe pickle, other model, structure or configuration,
format, unfinished training, normalization), locks, tracking and tuning stores, downloads.

Further tests: the real 35 basins pass the plausibility checks; a basin kept with
``data.unobserved_basins: warn`` is recorded in the manifest and the MLflow run; a
crafted checkpoint never runs its code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from benchmark import stores
from benchmark.cli import main as cli_main
from tests.paths import DEFAULT_PARAMS, REPO_ROOT
from tests.limits import HANG_GUARD_S
from tests.training_fixtures import ci_data_dir, ci_params  # noqa: F401 - fixtures

CAMELS = REPO_ROOT / "data" / "camels_us"
BASINS = ("01022500", "01031500", "01047000", "02053200")
BASIN = "01022500"
FORCING = f"basin_mean_forcing/daymet/01/{BASIN}_lump_cida_forcing_leap.txt"
FLOW = f"usgs_streamflow/01/{BASIN}_streamflow_qc.txt"
FORCING_COLUMNS = ("year", "month", "day", "hr", "dayl", "prcp", "srad", "swe", "tmax", "tmin", "vp")


# --------------------------------------------------------------------------------------
# the workspace
# --------------------------------------------------------------------------------------


@dataclass
class Workspace:
    """A user's project folder: params.yaml, raw CAMELS files, outputs under artifacts/."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def edit(self, change: Callable[[dict], None]) -> None:
        """Change params.yaml as a parsed mapping."""
        raw = yaml.safe_load(self.params.read_text())
        change(raw)
        self.params.write_text(yaml.safe_dump(raw, sort_keys=False))

    def profile(self, **values: object) -> None:
        self.edit(lambda raw: raw["profiles"]["ci"].update(values))

    def train(self, **values: object) -> None:
        self.edit(lambda raw: raw["train"].update(values))

    def own_copy(self, relative: str) -> Path:
        """Replace the symbolic link of a raw file by a copy the case may change."""
        path = self.raw / relative
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
        return path

    def rewrite_lines(self, relative: str, change: Callable[[list[str]], list[str]]) -> None:
        path = self.own_copy(relative)
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(change(lines)))


def _link_raw(raw: Path) -> None:
    for basin in BASINS:
        for pattern in (f"basin_mean_forcing/daymet/*/{basin}_*", f"usgs_streamflow/*/{basin}_*"):
            for source in CAMELS.glob(pattern):
                target = raw / source.relative_to(CAMELS)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    for source in (CAMELS / "camels_attributes_v2.0").iterdir():
        target = raw / source.relative_to(CAMELS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def _workspace_params(root: Path) -> dict:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["profile"] = "ci"
    art = root / "artifacts"
    raw["data"].update(raw_dir=str(root / "raw"), processed_dir=str(art / "data"))
    raw["train"].update(models_dir=str(art / "models"), eval_dir=str(art / "eval"), work_dir=str(art / "work"),
                        device="cpu", epochs=1)
    raw["tune"].update(out_dir=str(art / "tuning"), storage=f"sqlite:///{root / 'optuna.db'}")
    raw["baselines"].update(out_dir=str(art / "baselines"), device="cpu")
    raw["pub"].update(out_dir=str(art / "pub"), report_dir=str(root / "reports" / "pub"))
    return raw


@pytest.fixture(scope="module")
def trained_dhbv(tmp_path_factory, ci_data_dir) -> Path:
    """A ``dhbv`` model trained for one epoch on the ci profile (its model folder)."""
    from benchmark.config import load_params
    from benchmark.training.trainer import train_model

    root = tmp_path_factory.mktemp("bad-inputs-model")
    (root / "params.yaml").write_text(yaml.safe_dump(_workspace_params(root), sort_keys=False))
    params = load_params(root / "params.yaml")
    params = params.model_copy(update={"data": params.data.model_copy(update={"processed_dir": ci_data_dir})})
    return train_model(params, "dhbv", track=False).model_dir


@pytest.fixture
def workspace(tmp_path, ci_data_dir, trained_dhbv, monkeypatch) -> Workspace:
    """A fresh workspace with raw files, processed data and the trained dhbv model."""
    ws = Workspace(tmp_path / "project")
    _link_raw(ws.raw)
    ws.params.write_text(yaml.safe_dump(_workspace_params(ws.root), sort_keys=False))
    shutil.copytree(ci_data_dir, ws.artifacts / "data")
    shutil.copytree(trained_dhbv, ws.artifacts / "models" / "dhbv")
    monkeypatch.chdir(ws.root)
    return ws


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: folders, links (their target) and files (sha256 of the bytes)."""
    state: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            state[key] = "dir"
        else:
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# --------------------------------------------------------------------------------------
# what the cases change
# --------------------------------------------------------------------------------------


def _forcing_value(date: str, column: str, value: str) -> Callable[[Workspace], None]:
    year, month, day = date.split("-")
    index = FORCING_COLUMNS.index(column)

    def change(ws: Workspace) -> None:
        def lines(text: list[str]) -> list[str]:
            out = []
            for line in text:
                fields = line.rstrip("\n").split("\t")
                head = fields[0].split() if fields else []
                if head[:3] == [year, month, day]:
                    cells = head + fields[1:]
                    cells[index] = value
                    line = " ".join(cells[:4]) + "\t" + "\t".join(cells[4:]) + "\n"
                out.append(line)
            return out

        ws.rewrite_lines(FORCING, lines)

    return change


def _flow_value(date: str, value: str) -> Callable[[Workspace], None]:
    year, month, day = date.split("-")

    def change(ws: Workspace) -> None:
        ws.rewrite_lines(FLOW, lambda lines: [
            f"{BASIN} {year} {month} {day}   {value} A\n" if line.split()[1:4] == [year, month, day] else line
            for line in lines
        ])

    return change


def _flow_missing_in(first_year: int, last_year: int) -> Callable[[Workspace], None]:
    """Every observation of BASIN in ``first_year..last_year`` set to the missing code -999."""
    def change(ws: Workspace) -> None:
        ws.rewrite_lines(FLOW, lambda lines: [
            f"{BASIN} {parts[1]} {parts[2]} {parts[3]}  -999.00 M\n" if first_year <= int(parts[1]) <= last_year else line
            for line, parts in ((line, line.split()) for line in lines)
        ])

    return change


def _truncate_last_line(relative: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        path = ws.own_copy(relative)
        text = path.read_text()
        path.write_text(text[: len(text) - 12])  # a download or copy cut off mid-line

    return change


def _attribute(file_name: str, column: str, value: str) -> Callable[[Workspace], None]:
    """Set one attribute of BASIN in a ';'-separated CAMELS attribute file."""
    def change(ws: Workspace) -> None:
        def lines(text: list[str]) -> list[str]:
            header = text[0].rstrip("\n").split(";")
            index = header.index(column)
            out = [text[0]]
            for line in text[1:]:
                cells = line.rstrip("\n").split(";")
                if cells[0].strip() == BASIN:
                    cells[index] = value
                out.append(";".join(cells) + "\n")
            return out

        ws.rewrite_lines(f"camels_attributes_v2.0/{file_name}", lines)

    return change


def _empty(relative: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        ws.own_copy(relative).write_text("")

    return change


def _append_params(text: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        ws.params.write_text(ws.params.read_text() + textwrap.dedent(text))

    return change


def _duplicate_train_key(ws: Workspace) -> None:
    text = ws.params.read_text()
    ws.params.write_text(text.replace("\n  alpha: 0.25\n", "\n  alpha: 0.25\n  learning_rate: 0.5\n", 1))


def _write(relative: str, text: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        path = ws.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    return change


def _remove(relative: str) -> Callable[[Workspace], None]:
    def change(ws: Workspace) -> None:
        path = ws.root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return change


def _checkpoint_edit(change: Callable[[dict], None]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        path = ws.artifacts / "models" / "dhbv" / "checkpoint.pt"
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)

    return setup


def _copy_model_as(name: str) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        shutil.copytree(ws.artifacts / "models" / "dhbv", ws.artifacts / "models" / name)

    return setup


def _env(**values: str) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        ws.env.update({k: v.format(root=ws.root) for k, v in values.items()})

    return setup


def _all(*steps: Callable[[Workspace], None]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        for step in steps:
            step(ws)

    return setup


def _corrupt_file(relative: str) -> Callable[[Workspace], None]:
    return _write(relative, "this file was overwritten by something else entirely\n" * 40)


# --------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: what to change, the command, and what the message must name."""

    name: str
    setup: Callable[[Workspace], None]
    command: tuple[str, ...]
    names: tuple[str, ...]


TRAIN = ("train", "--model", "dhbv")
EVALUATE = ("evaluate", "--model", "dhbv")
PREPARE = ("prepare",)
TUNE = ("tune", "--model", "dhbv", "--trials", "1")
PUB_RUN = ("pub", "run", "--fold", "1", "--model", "dhbv")


def _pub_folds(*folds: list[str]) -> Callable[[Workspace], None]:
    """Set the ci profile's PUB folds."""
    return lambda ws: ws.edit(lambda raw: raw["pub"]["folds"].update(ci=[list(fold) for fold in folds]))

CASES: tuple[Case, ...] = (
    # ---- configuration: YAML, ranges, periods, dates
    Case("duplicate-top-level-key", _append_params("tune:\n  trials: 3\n"), TRAIN,
         ("params.yaml line", "key 'tune' appears twice", "first on line")),
    Case("duplicate-nested-key", _duplicate_train_key, TRAIN, ("params.yaml line", "key 'learning_rate' appears twice")),
    Case("unknown-key", lambda ws: ws.train(learnig_rate=0.5), TRAIN, ("train.learnig_rate", "Extra inputs")),
    Case("negative-learning-rate", lambda ws: ws.train(learning_rate=-1.0), TRAIN,
         ("train.learning_rate", "greater than 0", "-1.0")),
    Case("nan-learning-rate", lambda ws: ws.train(learning_rate=float("nan")), TRAIN,
         ("train.learning_rate", "finite number")),
    Case("zero-basins-per-batch", lambda ws: ws.profile(batch_basins=0), TRAIN, ("profiles.ci.batch_basins", "greater than or equal to 1 (got 0)")),
    Case("zero-iterations", lambda ws: ws.profile(iterations_per_epoch=0), TRAIN,
         ("profiles.ci.iterations_per_epoch", "greater than or equal to 1")),
    Case("zero-window", lambda ws: ws.profile(window_days=0), TRAIN, ("profiles.ci.window_days",)),
    Case("zero-hidden-size", lambda ws: ws.profile(hidden_size=0), TRAIN, ("profiles.ci.hidden_size",)),
    Case("zero-components", lambda ws: ws.profile(nmul=0), TRAIN, ("profiles.ci.nmul",)),
    Case("negative-warmup", lambda ws: ws.profile(warmup_days=-1), TRAIN, ("profiles.ci.warmup_days", "greater than or equal to 0 (got -1)")),
    Case("zero-epochs", lambda ws: ws.train(epochs=0), TRAIN, ("train.epochs",)),
    Case("zero-newton-tolerance", lambda ws: ws.train(newton_tol=0.0), TRAIN, ("train.newton_tol",)),
    Case("zero-newton-iterations", lambda ws: ws.train(newton_max_iter=0), TRAIN, ("train.newton_max_iter",)),
    Case("negative-test-warmup", lambda ws: ws.train(test_warmup_days=-5), EVALUATE, ("train.test_warmup_days",)),
    Case("dropout-of-one", lambda ws: ws.train(dropout=1.0), TRAIN, ("train.dropout", "less than 1")),
    Case("not-converged-share-above-one", lambda ws: ws.train(max_not_converged_share=1.5), EVALUATE,
         ("train.max_not_converged_share",)),
    Case("no-seeds", lambda ws: ws.profile(seeds=[]), TRAIN, ("profiles.ci.seeds",)),
    Case("negative-seed", lambda ws: ws.profile(seeds=[-1]), TRAIN, ("profiles.ci.seeds.0",)),
    Case("train-overlaps-test", lambda ws: ws.profile(test={"start": "1995-01-01", "end": "2000-09-30"}), TRAIN,
         ("profiles.ci", "training period 1990-10-01..1995-09-30 overlaps the test period")),
    Case("validation-overlaps-training", lambda ws: ws.profile(validation={"start": "1994-10-01", "end": "1996-09-30"}),
         TRAIN, ("profiles.ci", "validation period", "overlaps the training period")),
    Case("date-not-iso", lambda ws: ws.profile(train={"start": "10/01/1990", "end": "1995-09-30"}), PREPARE,
         ("profiles.ci.train.start", "ISO date YYYY-MM-DD", "10/01/1990")),
    Case("date-as-a-number", lambda ws: ws.profile(train={"start": 19901001, "end": "1995-09-30"}), PREPARE,
         ("profiles.ci.train.start", "19901001")),
    Case("period-ends-before-it-starts", lambda ws: ws.profile(test={"start": "2000-09-30", "end": "1995-10-01"}),
         PREPARE, ("profiles.ci.test", "before start")),
    Case("window-longer-than-training", lambda ws: ws.profile(window_days=5000), TRAIN,
         ("profiles.ci", "window_days=5000 is longer than the training period")),
    Case("unknown-profile", lambda ws: ws.edit(lambda raw: raw.update(profile="nope")), PREPARE,
         ("profile", "'nope'")),
    Case("empty-params-file", _write("params.yaml", ""), PREPARE, ("params.yaml", "is empty")),
    Case("params-not-a-mapping", _write("params.yaml", "- profile\n- ci\n"), PREPARE,
         ("params.yaml", "must hold a mapping")),
    Case("basin-id-not-8-digits", lambda ws: ws.profile(basins=["1022500"]), PREPARE,
         ("profiles.ci.basins", "'1022500'", "8-digit")),
    Case("unknown-unobserved-policy", lambda ws: ws.edit(lambda raw: raw["data"].update(unobserved_basins="maybe")),
         PREPARE, ("data.unobserved_basins",)),
    Case("negative-pruner-startup", lambda ws: ws.edit(lambda raw: raw["tune"].update(pruner_startup_trials=-1)),
         TUNE, ("tune.pruner_startup_trials",)),
    Case("lstm-negative-learning-rate",
         lambda ws: ws.edit(lambda raw: raw["baselines"]["lstm"]["ci"].update(learning_rate={0: -1e-3})),
         ("baseline", "lstm"), ("baselines.lstm.ci.learning_rate.0", "greater than 0")),
    Case("lstm-scored-days-longer-than-the-sequence",
         lambda ws: ws.edit(lambda raw: raw["baselines"]["lstm"]["ci"].update(predict_last_n=400)),
         ("baseline", "lstm"), ("baselines.lstm.ci", "predict_last_n=400 is longer than seq_length=90")),
    # ---- ungauged-basin (PUB) folds and runs
    Case("pub-fold-missing-a-basin", _pub_folds(["01022500"], ["01031500", "02053200"]), PUB_RUN,
         ("pub.folds.ci", "['01047000'] of the profile are in no fold")),
    Case("pub-basin-in-two-folds", _pub_folds(["01022500", "01047000"], ["01031500", "02053200", "01047000"]),
         PUB_RUN, ("pub.folds.ci", "basin 01047000 is in fold 1 and fold 2")),
    Case("pub-unknown-basin", _pub_folds(["01022500", "01047000", "01030500"], ["01031500", "02053200"]), PUB_RUN,
         ("pub.folds.ci", "['01030500'] are not basins of the profile")),
    Case("pub-one-fold", _pub_folds(list(BASINS)), PUB_RUN, ("pub.folds.ci has 1 fold(s)", "at least 2")),
    Case("pub-empty-fold", _pub_folds(list(BASINS), []), PUB_RUN, ("pub.folds.ci fold 2 is empty",)),
    Case("pub-folds-of-an-unknown-profile", lambda ws: ws.edit(lambda raw: raw["pub"]["folds"].update(nope=[])),
         PUB_RUN, ("pub.folds.nope", "no profile 'nope'")),
    Case("pub-folds-of-other-basins-than-the-profile", lambda ws: ws.profile(basins=list(BASINS[:3]), batch_basins=3),
         PUB_RUN, ("pub.folds.ci", "['02053200'] are not basins of the profile", "hbvbench pub folds")),
    Case("pub-no-folds-for-the-profile", lambda ws: ws.edit(lambda raw: raw["pub"]["folds"].pop("ci")), PUB_RUN,
         ("no pub.folds.ci entry", "hbvbench pub folds")),
    Case("pub-fold-that-does-not-exist", lambda ws: None, ("pub", "run", "--fold", "3", "--model", "dhbv"),
         ("--fold 3", "folds 1..2")),
    Case("pub-model-not-in-the-protocol", lambda ws: None, ("pub", "run", "--model", "sacsma"),
         ("--model sacsma", "not in pub.models")),
    Case("pub-report-before-the-runs", lambda ws: None, ("pub", "report"),
         ("no held-out results of dhbv for fold 1", "hbvbench pub run --fold 1 --model dhbv")),
    # ---- command-line arguments
    Case("epochs-argument-zero", lambda ws: None, (*TRAIN, "--epochs", "0"), ("epochs must be >= 1",)),
    Case("seed-argument-negative", lambda ws: None, (*TRAIN, "--seed", "-3"), ("seed", "-3")),
    Case("lstm-all-seeds-with-one-out-folder", lambda ws: None, ("baseline", "lstm", "--all-seeds", "--out", "lstm_here"),
         ("--out names one run's folder", "--all-seeds", "lstm/seed_<S>")),
    Case("zero-seed-workers", lambda ws: None, ("train", "--model", "dhbv", "--all-seeds", "--workers", "0"),
         ("--workers", ">= 1", "got 0")),
    Case("evaluate-all-seeds-of-a-logged-model", lambda ws: None, (*EVALUATE, "--all-seeds", "--from-mlflow", "0123abcd"),
         ("--all-seeds", "--from-mlflow")),
    Case("trials-argument-zero", lambda ws: None, ("tune", "--model", "dhbv", "--trials", "0"), ("--trials",)),
    Case("resume-and-restart", lambda ws: None, (*TRAIN, "--resume", "--restart"), ("--resume and --restart",)),
    Case("resume-without-checkpoint", _remove("artifacts/models/dhbv"), (*TRAIN, "--resume"),
         ("--resume: no checkpoint", "artifacts/work/dhbv/checkpoint.pt")),
    Case("hyperparameters-out-of-range", _write("best.yaml", "hyperparams:\n  learning_rate: -2.0\n"),
         (*TRAIN, "--hyperparams", "best.yaml"), ("best.yaml", "train.learning_rate", "greater than 0")),
    Case("hyperparameters-duplicate-key", _write("best.yaml", "dropout: 0.1\ndropout: 0.2\n"),
         (*TRAIN, "--hyperparams", "best.yaml"), ("best.yaml line 2", "key 'dropout' appears twice")),
    # ---- raw CAMELS files, checked by prepare
    Case("negative-precipitation", _forcing_value("1990-10-15", "prcp", "-5.00"), PREPARE,
         (FORCING, f"basin {BASIN}", "1990-10-15", "prcp = -5 mm/day", "0..1825")),
    Case("absurd-precipitation", _forcing_value("1996-05-01", "prcp", "1e30"), PREPARE,
         (FORCING, f"basin {BASIN}", "1996-05-01", "prcp = 1e+30")),
    Case("impossible-temperature", _forcing_value("2001-07-04", "tmax", "75.0"), PREPARE,
         (FORCING, "2001-07-04", "tmax = 75 degC")),
    Case("day-longer-than-a-day", _forcing_value("1985-06-21", "dayl", "90000"), PREPARE, (FORCING, "dayl = 90000 s")),
    Case("negative-radiation", _forcing_value("1985-06-21", "srad", "-10"), PREPARE, (FORCING, "srad = -10 W/m2")),
    Case("vapour-pressure-in-the-wrong-unit", _forcing_value("1985-06-21", "vp", "120000"), PREPARE,
         (FORCING, "vp = 120000 Pa")),
    Case("missing-forcing-value", _forcing_value("1999-12-31", "tmin", "nan"), PREPARE,
         (FORCING, "1999-12-31", "tmin = nan")),
    Case("latitude-out-of-range", _attribute("camels_topo.txt", "gauge_lat", "95.0"), PREPARE,
         ("camels_topo.txt", f"basin {BASIN}", "gauge_lat = 95 degrees_north", "-90..90")),
    Case("truncated-forcing-file", _truncate_last_line(FORCING), PREPARE, (FORCING, "is malformed", "expected 11 fields")),
    Case("empty-forcing-file", _empty(FORCING), PREPARE, (FORCING, "the file is empty")),
    Case("empty-streamflow-file", _empty(FLOW), PREPARE, (FLOW, "the file is empty")),
    Case("truncated-streamflow-file", _truncate_last_line(FLOW), PREPARE, (FLOW, "is malformed", "expected 6 fields")),
    Case("negative-discharge", _flow_value("1991-03-03", "-5.00"), PREPARE, (FLOW, "discharge -5 cfs is negative")),
    Case("absurd-discharge", _flow_value("1991-03-03", "1e9"), PREPARE,
         (FLOW, f"basin {BASIN}", "1991-03-03", "qobs =", "0..2000 mm/day")),
    Case("basin-unobserved-in-the-test-period", _flow_missing_in(1995, 2000), PREPARE,
         (f"basin {BASIN} has no streamflow observation in the test 1995-10-01..2000-09-30", FLOW,
          "data.unobserved_basins: warn")),
    Case("empty-attribute-file", _empty("camels_attributes_v2.0/camels_topo.txt"), PREPARE, ("camels_topo.txt",)),
    Case("missing-forcing-file", _remove(f"raw/{FORCING}"), PREPARE, (f"basin {BASIN} daymet forcing", "no file")),
    Case("period-outside-the-record", lambda ws: ws.profile(validation={"start": "2013-10-01", "end": "2016-09-30"}),
         PREPARE, ("validation period 2013-10-01..2016-09-30 is outside the record",)),
    # ---- processed data
    Case("train-before-prepare", _remove("artifacts/data"), TRAIN, ("camels.nc does not exist", "hbvbench prepare")),
    Case("corrupt-processed-data", _corrupt_file("artifacts/data/camels.nc"), TRAIN, ("camels.nc cannot be read",)),
    Case("basin-not-prepared", lambda ws: ws.profile(basins=[*BASINS[:3], "01030500"]), TRAIN,
         ("['01030500']", "not in the processed dataset", "hbvbench prepare")),
    Case("data-prepared-with-other-attributes", lambda ws: _prepare_with_attributes(ws, ["p_mean", "aridity"]),
         EVALUATE, ("attributes ['p_mean', 'aridity'] differ from the ones the model was trained on",)),
    # ---- checkpoints
    Case("checkpoint-of-another-model", _copy_model_as("dhbv_adj"), ("evaluate", "--model", "dhbv_adj"),
         ("models/dhbv_adj/checkpoint.pt", "holds a 'dhbv' model, not 'dhbv_adj'")),
    Case("checkpoint-of-another-structure",
         _checkpoint_edit(lambda c: c["structure"].update(parameter_names=c["structure"]["parameter_names"][:-1])),
         EVALUATE, ("checkpoint.pt does not fit the dhbv network", "parameter_names: only in the checkpoint [], "
                    "only now ['BETAET']")),
    Case("checkpoint-of-other-basins", lambda ws: ws.profile(basins=list(BASINS[:3]), batch_basins=3), EVALUATE,
         ("checkpoint.pt was trained on another configuration", "basins")),
    Case("checkpoint-of-another-profile", lambda ws: ws.edit(lambda raw: raw["profiles"]["default"].update(
         basins=list(BASINS), batch_basins=4)), (*EVALUATE, "--profile", "default"),
         ("trained on another configuration", "profile: 'ci' in the checkpoint, 'default' now")),
    Case("checkpoint-of-an-older-format", _checkpoint_edit(lambda c: c.update(format=1)), EVALUATE,
         ("checkpoint.pt is an hbvbench checkpoint of format 1", "train the model again")),
    Case("checkpoint-of-an-unfinished-run", _checkpoint_edit(lambda c: c.update(epochs=3)), EVALUATE,
         ("checkpoint.pt is from an unfinished training (epoch 1 of 3", "hbvbench train --model dhbv")),
    Case("truncated-checkpoint", lambda ws: _truncate_file(ws.artifacts / "models/dhbv/checkpoint.pt"), EVALUATE,
         ("checkpoint.pt cannot be read",)),
    Case("not-a-checkpoint", lambda ws: torch.save({"weights": torch.ones(3)}, ws.artifacts / "models/dhbv/checkpoint.pt"),
         EVALUATE, ("checkpoint.pt is not an hbvbench checkpoint",)),
    Case("missing-normalization", _remove("artifacts/models/dhbv/normalization.json"), EVALUATE,
         ("normalization.json do not exist",)),
    Case("corrupt-normalization", _write("artifacts/models/dhbv/normalization.json", "{not json"), EVALUATE,
         ("normalization.json are not valid",)),
    Case("normalization-of-another-run",
         lambda ws: _edit_json(ws.artifacts / "models/dhbv/normalization.json", train_start="1980-10-01"), EVALUATE,
         ("normalization.json does not belong to the checkpoint", "training period 1980-10-01")),
    # ---- tracking and tuning stores
    Case("corrupt-mlflow-store", _all(_corrupt_file("mlflow.db"), _env(MLFLOW_TRACKING_URI="sqlite:///{root}/mlflow.db")),
         TRAIN, ("MLflow tracking store sqlite:///", "mlflow.db is not an SQLite database", "MLFLOW_TRACKING_URI")),
    Case("unsupported-tracking-scheme", _env(MLFLOW_TRACKING_URI="foo://tracking"), TRAIN,
         ("MLFLOW_TRACKING_URI='foo://tracking'", "scheme 'foo'")),
    Case("legacy-file-store", _env(MLFLOW_TRACKING_URI="file:///{root}/mlruns"), EVALUATE,
         ("MLFLOW_TRACKING_URI", "legacy file store")),
    Case("unreachable-tracking-server", _env(MLFLOW_TRACKING_URI="http://127.0.0.1:9"), TRAIN,
         ("MLflow tracking server http://127.0.0.1:9 is not reachable", "start the server")),
    Case("tracking-database-that-cannot-be-opened", _env(MLFLOW_TRACKING_URI="mysql://nobody@127.0.0.1:9/mlflow"),
         TRAIN, ("MLflow tracking store mysql://nobody@127.0.0.1:9/mlflow cannot be used", "MLFLOW_TRACKING_URI")),
    Case("corrupt-optuna-storage", _corrupt_file("optuna.db"), TUNE,
         ("Optuna storage sqlite:///", "optuna.db is not an SQLite database", "--storage")),
    Case("unsupported-optuna-storage", lambda ws: None, (*TUNE, "--storage", "foo://optuna"),
         ("Optuna storage foo://optuna cannot be opened", "--storage")),
    # ---- downloads
    Case("fetch-to-an-unwritable-destination", _write("occupied", "a file, not a folder\n"),
         ("data", "fetch", "--dest", "occupied/camels"), ("cannot write to the destination", "occupied/camels")),
)


def _prepare_with_attributes(ws: Workspace, attributes: list[str]) -> None:
    """Re-run prepare with other static attributes than the model was trained with."""
    from benchmark.config import load_params
    from benchmark.data.prepare import prepare

    ws.edit(lambda raw: raw["data"].update(attributes=attributes))
    prepare(load_params(ws.params))


def _truncate_file(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_json(path: Path, **values: object) -> None:
    content = json.loads(path.read_text())
    content.update(values)
    path.write_text(json.dumps(content))


def _run(ws: Workspace, command: tuple[str, ...], capsys, monkeypatch) -> tuple[int, str]:
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = cli_main(["--params", str(ws.params), *command])
    return code, capsys.readouterr().err


def _command_name(command: tuple[str, ...]) -> str:
    return " ".join(command[:2]) if command[0] in ("data", "baseline", "pub") else command[0]


def test_there_are_at_least_forty_distinct_cases():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_is_one_clear_error_and_writes_nothing(case: Case, workspace: Workspace, capsys, monkeypatch):
    case.setup(workspace)
    before = snapshot(workspace.root)
    code, err = _run(workspace, case.command, capsys, monkeypatch)
    assert code == 2, err
    assert err.startswith(f"hbvbench {_command_name(case.command)}: error: "), err
    assert "Traceback" not in err
    for fragment in case.names:
        assert fragment in err, f"{fragment!r} not in:\n{err}"
    assert snapshot(workspace.root) == before, "the failed command created, changed or removed files"


# --------------------------------------------------------------------------------------
# cases that need more than a changed file
# --------------------------------------------------------------------------------------


class _RunsCodeWhenUnpickled:
    """What a crafted checkpoint carries: unpickling it calls ``Path.touch(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_before_any_of_its_code_runs(workspace, capsys, monkeypatch):
    marker = workspace.root / "code-ran"
    checkpoint = workspace.artifacts / "models" / "dhbv" / "checkpoint.pt"
    torch.save({"format": 2, "model": "dhbv", "model_state": {}, "payload": _RunsCodeWhenUnpickled(marker)}, checkpoint)
    with pytest.raises(pickle.UnpicklingError):  # what an unguarded loader would have done: the proof of the trap
        torch.load(checkpoint, weights_only=True)
    before = snapshot(workspace.root)
    code, err = _run(workspace, EVALUATE, capsys, monkeypatch)
    assert code == 2 and "was refused" in err and "could run code" in err and str(checkpoint) in err, err
    assert not marker.exists()
    assert snapshot(workspace.root) == before


def test_a_locked_tracking_store_is_retried_then_named(workspace, capsys, monkeypatch):
    import sqlite3
    import threading

    store = workspace.root / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setattr(stores, "LOCK_RETRY_DELAYS_S", (0.1, 0.2, 0.4))
    holder = sqlite3.connect(store, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE held (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    before = snapshot(workspace.root)
    code, err = _run(workspace, TRAIN, capsys, monkeypatch)
    assert code == 2, err
    assert err.startswith("hbvbench train: error: MLflow tracking store sqlite:///"), err
    assert "is locked by another process (still locked after 0.7 s of retries)" in err
    assert snapshot(workspace.root) == before

    # released while the command retries: it goes on
    from benchmark import tracking

    release = threading.Timer(0.15, lambda: holder.execute("COMMIT"))
    release.start()
    tracking.check_store(f"sqlite:///{store}")
    release.join()
    holder.close()


def test_a_model_folder_in_use_names_the_process_holding_it(workspace, capsys, monkeypatch):
    folder = workspace.artifacts / "models" / "dhbv"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from benchmark import locks
            with locks.hold({str(folder)!r}, "hbvbench train --model dhbv --seed 111111"):
                print("held", flush=True)
                time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(workspace.root)
        code, err = _run(workspace, TRAIN, capsys, monkeypatch)
        assert code == 2, err
        assert f"{folder} is in use by process {holder.pid} on host" in err
        assert "'hbvbench train --model dhbv --seed 111111'" in err and f"kill {holder.pid}" in err
        assert snapshot(workspace.root) == before
    finally:
        holder.kill()
        holder.wait(timeout=HANG_GUARD_S)


# --------------------------------------------------------------------------------------
# the real data passes; an accepted warning is kept on record
# --------------------------------------------------------------------------------------


def test_every_embedded_basin_passes_the_plausibility_checks(tmp_path):
    """All 35 real basins, 1980-2014: forcing, Hargreaves PET and flow inside their physical
    ranges, and observations in every period of the default profile."""
    from benchmark.config import load_params
    from benchmark.data.dataset import load_manifest
    from benchmark.data.prepare import prepare

    params = load_params(overrides={"profile": "default"})
    params = params.model_copy(update={"data": params.data.model_copy(update={"processed_dir": tmp_path / "data"})})
    out = prepare(params)
    manifest = load_manifest(out)
    assert manifest["n_basins"] == 35 and manifest["warnings"] == []


def test_an_accepted_unobserved_basin_is_recorded_in_the_manifest_and_the_mlflow_run(
        workspace, capsys, monkeypatch, mlflow_tracking_uri):
    from mlflow.tracking import MlflowClient

    _flow_missing_in(2000, 2002)(workspace)  # no observation in the validation period 2000-10-01..2002-09-30
    workspace.edit(lambda raw: raw["data"].update(unobserved_basins="warn"))
    workspace.train(experiment="bad-inputs-warning")
    assert cli_main(["--params", str(workspace.params), "prepare"]) == 0
    err = capsys.readouterr().err
    expected = f"basin {BASIN} has no streamflow observation in the validation 2000-10-01..2002-09-30 period"
    assert f"hbvbench prepare: warning: {expected}" in err
    manifest = json.loads((workspace.artifacts / "data" / "manifest.json").read_text())
    assert [w.startswith(expected) for w in manifest["warnings"]] == [True]

    assert cli_main(["--params", str(workspace.params), "train", "--model", "dhbv", "--restart"]) == 0
    client = MlflowClient(tracking_uri=mlflow_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bad-inputs-warning").experiment_id])
    assert run.data.tags["data_warnings"].startswith(expected)
