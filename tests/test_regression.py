"""The CI regression check (``hbvbench regress``): comparison rules, the baseline file, and the
command end to end on the real ci basins (failing on a regression, flagging an improvement)."""

from __future__ import annotations

import json
import math

import pytest

from benchmark.cli import main as cli_main
from tests.paths import REPO_ROOT
from benchmark.errors import ConfigError
from benchmark.regression import baseline as bl
from benchmark.regression.runner import MODELS

RULES = {"NSE_median": {"abs": 0.03, "better": "higher"}, "peakRMSE_median": {"rel": 0.05, "better": "lower"}}


def _baseline(**models: dict) -> dict:
    return {"tolerances": RULES, "models": models, "perf": {"ratio": 2.0},
            "ratio_tolerance": {"rel": 0.5, "better": "lower"}}


def _status(comparisons, model, metric):
    return next(c.status for c in comparisons if c.model == model and c.metric == metric)


def test_a_move_beyond_tolerance_in_the_bad_direction_is_a_regression():
    base = _baseline(dhbv={"NSE_median": 0.70, "peakRMSE_median": 10.0})
    got = bl.compare(base, {"dhbv": {"NSE_median": 0.66, "peakRMSE_median": 10.4}}, None)
    assert _status(got, "dhbv", "NSE_median") == bl.STATUS_REGRESSED  # -0.04 > 0.03
    assert _status(got, "dhbv", "peakRMSE_median") == bl.STATUS_OK  # +4 % < 5 %
    assert [c.metric for c in bl.regressions(got)] == ["NSE_median"]


def test_a_move_beyond_tolerance_in_the_good_direction_is_flagged_not_failed():
    base = _baseline(dhbv={"NSE_median": 0.70, "peakRMSE_median": 10.0})
    got = bl.compare(base, {"dhbv": {"NSE_median": 0.75, "peakRMSE_median": 9.0}}, None)
    assert {c.status for c in got} == {bl.STATUS_IMPROVED} and not bl.regressions(got)


def test_a_vanished_model_or_a_nan_metric_is_a_regression_and_a_new_model_is_new():
    base = _baseline(dhbv={"NSE_median": 0.70, "peakRMSE_median": 10.0},
                     dhbv_adj={"NSE_median": 0.69, "peakRMSE_median": 10.0})
    got = bl.compare(base, {"dhbv": {"NSE_median": math.nan, "peakRMSE_median": 10.0},
                            "dhbv_rk4": {"NSE_median": 0.6, "peakRMSE_median": 11.0}}, None)
    assert _status(got, "dhbv", "NSE_median") == bl.STATUS_REGRESSED
    assert _status(got, "dhbv_adj", "NSE_median") == bl.STATUS_REGRESSED
    assert _status(got, "dhbv_rk4", "NSE_median") == bl.STATUS_NEW


def test_the_cost_ratio_is_compared_relative_to_the_recorded_ratio():
    base = _baseline(dhbv={})
    assert _status(bl.compare(base, {"dhbv": {}}, 2.9), bl.RATIO_KEY, "step-time ratio") == bl.STATUS_OK
    assert _status(bl.compare(base, {"dhbv": {}}, 3.1), bl.RATIO_KEY, "step-time ratio") == bl.STATUS_REGRESSED
    assert _status(bl.compare(base, {"dhbv": {}}, 0.9), bl.RATIO_KEY, "step-time ratio") == bl.STATUS_IMPROVED


def test_abs_and_rel_tolerances_combine_to_the_larger():
    rule = {"abs": 5.0, "rel": 0.1, "better": "lower"}
    assert bl.judge(300.0, 325.0, rule, "x") == (30.0, bl.STATUS_OK)
    assert bl.judge(20.0, 26.0, rule, "x") == (5.0, bl.STATUS_REGRESSED)


def test_a_malformed_tolerance_or_baseline_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="tolerances.NSE_median"):
        bl.compare({"tolerances": {"NSE_median": {"better": "higher"}}, "models": {"dhbv": {"NSE_median": 0.5}}},
                   {"dhbv": {"NSE_median": 0.5}}, None)
    path = tmp_path / "regression_baseline.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=f"{path.name} is not valid JSON"):
        bl.load_baseline(path)
    with pytest.raises(ConfigError, match="does not exist.*--update"):
        bl.load_baseline(tmp_path / "missing.json")
    path.write_text(json.dumps({"models": {}, "tolerances": {"KGE_median": {"abs": 0.03, "better": "up"}}}))
    with pytest.raises(ConfigError, match=r"tolerances.KGE_median: tolerance 'better' must be"):
        bl.load_baseline(path)  # rejected when read, before any model is trained


def test_the_committed_baseline_covers_every_variant_and_the_cost_ratio():
    data = bl.load_baseline(REPO_ROOT / "reports" / "regression_baseline.json")
    assert data["profile"] == "ci"
    assert set(data["models"]) == set(MODELS)
    assert set(data["tolerances"]) >= {"NSE_median", "KGE_median", "absFLV_median", "absFHV_median",
                                       "lowRMSE_median", "peakRMSE_median", "BFI_r"}
    assert isinstance(data["perf"]["ratio"], float) and data["perf"]["ratio"] > 0
    for model, values in data["models"].items():
        assert isinstance(values["NSE_median"], float), model


def test_regress_on_real_ci_basins_passes_fails_and_flags(tmp_path, capsys):
    """Record a baseline for dhbv on the 4 ci basins, rerun (identical: pass), then doctor the
    file: a better recorded NSE makes the rerun fail, a worse one is flagged as improved."""
    baseline, out, metrics = tmp_path / "baseline.json", tmp_path / "work", tmp_path / "metrics.json"
    common = ["regress", "--models", "dhbv", "--no-perf", "--no-mlflow", "--baseline", str(baseline),
              "--out", str(out), "--metrics", str(metrics)]
    assert cli_main([*common, "--update"]) == 0
    recorded = json.loads(baseline.read_text())
    nse = recorded["models"]["dhbv"]["NSE_median"]
    assert json.loads(metrics.read_text())["dhbv"]["NSE_median"] == nse
    assert recorded["tolerances"] == bl.DEFAULT_TOLERANCES

    assert cli_main(common) == 0
    assert "no regression beyond tolerance" in capsys.readouterr().out

    recorded["models"]["dhbv"]["NSE_median"] = nse + 0.1
    baseline.write_text(json.dumps(recorded))
    assert cli_main(common) == 1
    captured = capsys.readouterr()
    assert "| dhbv | NSE_median |" in captured.out and "**REGRESSED**" in captured.out
    assert "REGRESSED dhbv NSE_median" in captured.err

    recorded["models"]["dhbv"]["NSE_median"] = nse - 0.1
    baseline.write_text(json.dumps(recorded))
    assert cli_main(common) == 0
    assert "1 improvement(s) flagged" in capsys.readouterr().out
    report = json.loads((out / "regress.json").read_text())
    assert any(c["status"] == bl.STATUS_IMPROVED and c["metric"] == "NSE_median" for c in report["comparisons"])


def test_regress_rejects_an_unknown_model(tmp_path, capsys):
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps(_baseline(dhbv={})))
    assert cli_main(["regress", "--models", "nope", "--no-perf", "--no-mlflow", "--baseline", str(baseline),
                     "--out", str(tmp_path / "w"), "--metrics", str(tmp_path / "m.json")]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err
