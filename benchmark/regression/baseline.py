"""The regression baseline file and the comparison of a run with it.

``reports/regression_baseline.json``::

    {
      "profile": "ci",
      "tolerances": {"NSE_median": {"abs": 0.03, "better": "higher"}, ...},
      "ratio_tolerance": {"rel": 0.5, "better": "lower"},
      "models": {"dhbv": {"NSE_median": 0.41, ...}, ...},
      "perf": {"ratio": 1.8, "config": {...}},
      "recorded": {"date": "...", "git_commit": "...", "machine": "..."}
    }

Each metric has an absolute tolerance (``abs``), a relative one (``rel``, a fraction of the
baseline value) or both (the larger applies), and a good direction (``higher`` / ``lower``). A value that moved by more
than the tolerance in the bad direction, became non-finite, or disappeared is a regression;
one that moved by more than the tolerance in the good direction is an improvement.
Tolerances are kept when ``--update`` rewrites the values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import ConfigError

STATUS_OK, STATUS_IMPROVED, STATUS_REGRESSED, STATUS_NEW = "ok", "improved", "REGRESSED", "new"

#: Tolerances written into a new baseline file. Training on 4 basins for a few minibatches
#: is deterministic on one machine; across CPUs (vector units, thread counts) float32
#: rounding differs, which these bounds absorb while still catching a broken model.
DEFAULT_TOLERANCES: dict[str, dict[str, Any]] = {
    "NSE_median": {"abs": 0.03, "better": "higher"},
    "KGE_median": {"abs": 0.03, "better": "higher"},
    "absFLV_median": {"abs": 5.0, "rel": 0.1, "better": "lower"},
    "absFHV_median": {"abs": 3.0, "rel": 0.1, "better": "lower"},
    "lowRMSE_median": {"rel": 0.05, "better": "lower"},
    "peakRMSE_median": {"rel": 0.05, "better": "lower"},
    "BFI_r": {"abs": 0.1, "better": "higher"},
}
#: The adjoint / sequential step-time ratio: a ratio, not a time, since CI machines differ.
#: A regression is a ratio above twice the recorded one (e.g. the adjoint falling back to a
#: slower solver); smaller moves are within the noise of shared CI machines.
DEFAULT_RATIO_TOLERANCE: dict[str, Any] = {"rel": 1.0, "better": "lower"}
RATIO_KEY = "perf.adjoint_over_sequential"


@dataclass(frozen=True)
class Comparison:
    """One compared value."""

    model: str
    metric: str
    baseline: float | None
    current: float | None
    tolerance: float
    status: str

    @property
    def delta(self) -> float | None:
        """``current - baseline`` (None when either is missing)."""
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def check_rule(rule: Any, where: str) -> None:
    """ConfigError naming ``where`` unless ``rule`` has ``abs`` and/or ``rel`` and a ``better``."""
    if not isinstance(rule, dict) or ("abs" not in rule and "rel" not in rule):
        raise ConfigError(f"{where}: a tolerance needs 'abs' and/or 'rel', got {rule}")
    if rule.get("better") not in ("higher", "lower"):
        raise ConfigError(f"{where}: tolerance 'better' must be 'higher' or 'lower', got {rule.get('better')!r}")


def _allowed(rule: dict[str, Any], baseline: float, where: str) -> float:
    """``max(abs, rel * |baseline|)`` over the bounds the rule gives."""
    check_rule(rule, where)
    return max(float(rule.get("abs", 0.0)), float(rule.get("rel", 0.0)) * abs(baseline))


def judge(baseline: float | None, current: float | None, rule: dict[str, Any], where: str) -> tuple[float, str]:
    """Allowed deviation and status of ``current`` against ``baseline`` under ``rule``."""
    check_rule(rule, where)
    if baseline is None:
        return math.nan, STATUS_NEW if current is not None else STATUS_OK
    allowed = _allowed(rule, baseline, where)
    if current is None:
        return allowed, STATUS_REGRESSED
    gain = (current - baseline) if rule["better"] == "higher" else (baseline - current)
    if gain < -allowed:
        return allowed, STATUS_REGRESSED
    if gain > allowed:
        return allowed, STATUS_IMPROVED
    return allowed, STATUS_OK


def compare(baseline: dict[str, Any], models: dict[str, dict[str, Any]], ratio: float | None,
            source: str = "baseline") -> list[Comparison]:
    """Every metric of every baseline model (and the cost ratio) against the current run.

    Parameters
    ----------
    baseline
        The parsed baseline file.
    models
        Model name -> its ``metrics.json`` summary from this run.
    ratio
        The adjoint / sequential step-time ratio of this run (None when not measured: not compared).
    source
        Name of the baseline file, for error messages.
    """
    tolerances = baseline.get("tolerances") or {}
    out: list[Comparison] = []
    names = list(baseline.get("models", {})) + [m for m in models if m not in baseline.get("models", {})]
    for model in names:
        recorded = baseline.get("models", {}).get(model, {})
        current = models.get(model, {})
        for metric, rule in tolerances.items():
            where = f"{source}: tolerances.{metric}"
            base_value = _finite(recorded.get(metric))
            if model not in models and base_value is not None:
                out.append(Comparison(model, metric, base_value, None, _allowed(rule, base_value, where),
                                      STATUS_REGRESSED))
                continue
            allowed, status = judge(base_value, _finite(current.get(metric)), rule, where)
            out.append(Comparison(model, metric, base_value, _finite(current.get(metric)), allowed, status))
    if ratio is not None:
        rule = baseline.get("ratio_tolerance") or DEFAULT_RATIO_TOLERANCE
        recorded_ratio = _finite((baseline.get("perf") or {}).get("ratio"))
        allowed, status = judge(recorded_ratio, ratio, rule, f"{source}: ratio_tolerance")
        out.append(Comparison(RATIO_KEY, "step-time ratio", recorded_ratio, ratio, allowed, status))
    return out


def regressions(comparisons: list[Comparison]) -> list[Comparison]:
    """The comparisons that fail the check."""
    return [c for c in comparisons if c.status == STATUS_REGRESSED]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def table(comparisons: list[Comparison]) -> str:
    """A markdown table of every comparison, regressions and improvements marked."""
    lines = ["| model | metric | baseline | current | change | tolerance | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    for c in comparisons:
        delta = c.delta
        change = "n/a" if delta is None else f"{delta:+.3f}"
        status = {STATUS_REGRESSED: "**REGRESSED**", STATUS_IMPROVED: "improved ↑"}.get(c.status, c.status)
        lines.append(f"| {c.model} | {c.metric} | {_fmt(c.baseline)} | {_fmt(c.current)} | {change} "
                     f"| ±{_fmt(c.tolerance)} | {status} |")
    return "\n".join(lines)


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a baseline file (ConfigError naming the file when it is missing or malformed)."""
    if not path.is_file():
        raise ConfigError(f"regression baseline {path} does not exist; record one with `hbvbench regress --update`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"regression baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not isinstance(
            data.get("tolerances"), dict):
        raise ConfigError(f"regression baseline {path} needs the mappings 'models' and 'tolerances'")
    for metric, rule in data["tolerances"].items():  # before a two-minute run, not after it
        check_rule(rule, f"{path}: tolerances.{metric}")
    if "ratio_tolerance" in data:
        check_rule(data["ratio_tolerance"], f"{path}: ratio_tolerance")
    return data


def updated_baseline(old: dict[str, Any] | None, models: dict[str, dict[str, Any]], ratio: float | None,
                     perf_config: dict[str, Any] | None, recorded: dict[str, Any], profile: str) -> dict[str, Any]:
    """A new baseline with this run's values and the old file's tolerances (defaults if none)."""
    old = old or {}
    tolerances = old.get("tolerances") or DEFAULT_TOLERANCES
    return {
        "profile": profile,
        "about": "hbvbench regress: median test metrics of every variant on the ci profile (4 basins, fixed "
                 "seed) and the adjoint/sequential training-step time ratio. Rewrite deliberately with "
                 "`hbvbench regress --update`; tolerances are kept.",
        "tolerances": tolerances,
        "ratio_tolerance": old.get("ratio_tolerance") or DEFAULT_RATIO_TOLERANCE,
        "models": {name: {k: _finite(summary.get(k)) for k in tolerances} for name, summary in models.items()},
        "perf": {"ratio": ratio, "config": perf_config} if ratio is not None else old.get("perf"),
        "recorded": recorded,
    }
