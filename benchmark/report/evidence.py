"""The paired tests the paper's comparisons call for, and "What the evidence says": each
finding of Song et al. (2024) checked against this run.

Pairs (model A against model B, differences A − B): the adjoint against the sequential model
(with and without capillary rise), each model with capillary rise ("improved") against the
one without (sequential and adjoint), and each δHBV variant against the LSTM. Every pair is
tested on every metric both models have (:func:`benchmark.report.comparisons.compare`).

A paper finding is judged by one decision rule, printed with the table (:data:`DECISION_RULE`):
*supports* when the pair differs significantly on the finding's metric (Holm-adjusted
p < ALPHA) with the median paired difference pointing the paper's way, *contradicts* when it
differs significantly the other way, *cannot tell* otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.report import statistics, styles
from benchmark.report.comparisons import HIGHER_IS_BETTER, METRIC_LABELS, Comparisons, MetricComparison
from benchmark.report.inputs import ReportInputs
from benchmark.report.tables import CI_TEXT, DECIMALS, NA, PUBLISHED_DECIMALS, Cell, RowGroup, Table, fmt, ordered

SUPPORTS, CONTRADICTS, CANNOT_TELL = "supports", "contradicts", "cannot tell"

#: (A, B) pairs: capillary rise ("improved") against none, sequential and adjoint.
CAPILLARY_PAIRS: tuple[tuple[str, str], ...] = (("dhbv_cr", "dhbv"), ("dhbv_adj_cr", "dhbv_adj"))
LSTM = "lstm"

DECISION_RULE = (
    f"Decision rule: a finding is supported when the paired test of its metric is significant (p < "
    f"{statistics.ALPHA} after Holm's correction across the metrics of that model pair) and the median paired "
    f"difference points the paper's way; contradicted when it is significant the other way; otherwise this run "
    f"cannot tell (which is not evidence that the models are equal). Per-basin metrics: two-sided Wilcoxon "
    f"signed-rank test over the basins both models scored; the BFI correlation is one number per run and is "
    f"tested by a paired bootstrap over basins."
)


@dataclass(frozen=True)
class Pair:
    """Model ``a`` against model ``b``, and why the paper compares them."""

    a: str
    b: str
    question: str


@dataclass(frozen=True)
class Finding:
    """A claim of the paper: on ``metric``, each ``(better, worse)`` pair's first model wins."""

    claim: str
    metric: str
    pairs: tuple[tuple[str, str], ...]
    paper_table: str


FINDINGS: tuple[Finding, ...] = (
    Finding("The adjoint model's KGE is at least the sequential model's", "KGE", styles.PAPER_ADJOINT_PAIRS,
            "table1"),
    Finding("The adjoint model's low-flow RMSE is at most the sequential model's", "lowRMSE",
            styles.PAPER_ADJOINT_PAIRS, "table1"),
    Finding("Capillary rise lowers |FLV|", "absFLV", CAPILLARY_PAIRS, "table1"),
    Finding("The adjoint model's BFI spatial correlation is higher", "BFI_r", styles.PAPER_ADJOINT_PAIRS, "table2"),
)
"""The findings of Sect. 3.1-3.2 the evidence section checks (on the HBV pairs, the paper's models;
other structures' adjoint pairs are in the paired-test table)."""


def paper_pairs(inputs: ReportInputs) -> list[Pair]:
    """The pairs the paper discusses whose two models are both in this report, in page order."""
    names = {m.name for m in inputs.models}
    pairs = [Pair(a, b, "adjoint vs sequential") for a, b in styles.ADJOINT_PAIRS]
    pairs += [Pair(a, b, "capillary rise (improved) vs none") for a, b in CAPILLARY_PAIRS]
    pairs += [Pair(m.name, LSTM, "differentiable model vs LSTM") for m in ordered(inputs.models) if not m.is_baseline]
    return [p for p in pairs if p.a in names and p.b in names]


# --------------------------------------------------------------------------- paired-test table

PAIRED_COLUMNS = [
    "Metric", "Basins", "A", "B", f"Difference A − B [{CI_TEXT}]", "p", "p, Holm",
    "Basins where A is better / B is better / tied", "Verdict",
]


def p_text(p: float) -> str:
    """A p-value: three decimals, or scientific notation below 0.001."""
    if not math.isfinite(p):
        return NA
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def signed(value: float, decimals: int) -> str:
    """A difference with its sign."""
    text = fmt(value, decimals)
    return text if text.startswith("-") or text == NA else f"+{text}"


def difference_text(comparison: MetricComparison) -> str:
    """``+0.012 [-0.003, +0.030]``."""
    d = DECIMALS.get(comparison.metric, 3)
    est = comparison.difference
    return f"{signed(est.value, d)} [{signed(est.low, d)}, {signed(est.high, d)}]"


def verdict_text(comparison: MetricComparison, a: str, b: str) -> str:
    """Which model is significantly better, or that the test cannot tell."""
    winner = comparison.favours(a, b)
    return f"{styles.label(winner)} better" if winner else "no significant difference"


def _paired_row(comparison: MetricComparison, a: str, b: str) -> list[Cell]:
    d = DECIMALS.get(comparison.metric, 3)
    tally = comparison.tally
    return [
        Cell(METRIC_LABELS.get(comparison.metric, comparison.metric)),
        Cell(str(comparison.n)),
        Cell(fmt(comparison.value_a, d)),
        Cell(fmt(comparison.value_b, d)),
        Cell(difference_text(comparison)),
        Cell(p_text(comparison.p)),
        Cell(p_text(comparison.p_holm), best=comparison.significant),
        Cell(f"{tally.first} / {tally.second} / {tally.ties}" if tally is not None else "—"),
        Cell(verdict_text(comparison, a, b)),
    ]


def paired_table(inputs: ReportInputs, comparisons: Comparisons) -> Table | None:
    """One row group per paper pair, one row per metric (None when no pair is in the report)."""
    groups = []
    models = {m.name: m for m in inputs.models}
    for pair in paper_pairs(inputs):
        result = comparisons.get(models[pair.a], models[pair.b])
        rows = [_paired_row(c, pair.a, pair.b) for c in result.metrics.values()]
        heading = f"A = {styles.label(pair.a)}, B = {styles.label(pair.b)} ({pair.question})"
        groups.append(RowGroup(heading, rows or [[Cell("no metric both models have")] + [Cell("—")] * 8]))
    if not groups:
        return None
    notes = [
        "A, B: medians over the basins both models scored (each basin's mean over a model's seeds); for the BFI "
        "correlation, r. Difference: median of the per-basin differences A − B with its paired-bootstrap CI "
        "(basins resampled jointly); for the BFI correlation, r_A − r_B.",
        f"p: two-sided Wilcoxon signed-rank test of the per-basin differences (zero differences dropped; exact null "
        f"distribution up to {statistics.EXACT_WILCOXON_MAX_N} differences without tied magnitudes, else the normal "
        f"approximation); for the BFI correlation, a two-sided paired-bootstrap p. p, Holm: adjusted across the "
        f"metrics of the pair; bold where below {statistics.ALPHA}.",
        "The test ranks the sizes of the per-basin differences; the CI is that of their median. When a few basins "
        "differ a lot the two can disagree (a CI excluding 0 with a large p, or the reverse); the verdict follows the "
        "test. With few basins no difference can be significant: with n basins the smallest two-sided exact Wilcoxon "
        "p is 2 / 2^n (0.125 for 4 basins).",
        "|FLV|, |FHV| and the RMSEs: lower is better; NSE, KGE, ET NSE and BFI r: higher is better.",
    ]
    return Table("paired", "Paired tests of the paper's comparisons", PAIRED_COLUMNS, groups, notes)


# --------------------------------------------------------------------------- evidence

EVIDENCE_COLUMNS = ["Paper finding", "A vs B", "Paper (671 basins)", "This run: A vs B", "Test", "Verdict"]


@dataclass(frozen=True)
class Judgement:
    """The verdict on one finding for one model pair, and the numbers behind it."""

    finding: Finding
    better: str
    worse: str
    verdict: str
    comparison: MetricComparison | None
    reason: str = ""


def judge(finding: Finding, better: str, worse: str, inputs: ReportInputs, comparisons: Comparisons) -> Judgement:
    """Apply the decision rule to one finding and pair (``better``: the model the paper favours)."""
    a, b = inputs.model(better), inputs.model(worse)
    if a is None or b is None:
        missing = [styles.label(n) for n, m in ((better, a), (worse, b)) if m is None]
        return Judgement(finding, better, worse, CANNOT_TELL, None, f"{' and '.join(missing)} not in this run")
    comparison = comparisons.get(a, b).get(finding.metric)
    if comparison is None:
        return Judgement(finding, better, worse, CANNOT_TELL, None,
                         f"{METRIC_LABELS.get(finding.metric, finding.metric)} not available for both")
    winner = comparison.favours(better, worse)
    verdict = SUPPORTS if winner == better else CONTRADICTS if winner == worse else CANNOT_TELL
    return Judgement(finding, better, worse, verdict, comparison)


def judgements(inputs: ReportInputs, comparisons: Comparisons) -> list[Judgement]:
    """Every finding of :data:`FINDINGS` for every one of its pairs."""
    return [judge(f, better, worse, inputs, comparisons) for f in FINDINGS for better, worse in f.pairs]


def paper_value(inputs: ReportInputs, finding: Finding, name: str) -> float:
    """The paper's number for a model on the finding's metric (NaN when not published)."""
    table = inputs.published.get(finding.paper_table)
    if table is None or finding.metric not in table.columns:
        return math.nan
    rows = table[table["model"] == name]
    return float(rows[finding.metric].iloc[0]) if len(rows) else math.nan


def _this_run_text(judgement: Judgement) -> str:
    comparison = judgement.comparison
    if comparison is None:
        return judgement.reason
    d = DECIMALS.get(comparison.metric, 3)
    what = "r" if comparison.metric == "BFI_r" else "median"
    text = f"{what} {fmt(comparison.value_a, d)} vs {fmt(comparison.value_b, d)}; difference {difference_text(comparison)}"
    if comparison.tally is not None:
        text += f"; A better in {comparison.tally.first} of {comparison.n} basins"
    return text


def _test_text(comparison: MetricComparison | None) -> str:
    if comparison is None:
        return "—"
    name = "paired bootstrap" if comparison.tally is None else "Wilcoxon"
    return f"{name} p = {p_text(comparison.p)}, Holm {p_text(comparison.p_holm)} (n = {comparison.n})"


def evidence_table(inputs: ReportInputs, comparisons: Comparisons) -> Table:
    """"What the evidence says": one row per finding and pair, with the verdict and its numbers."""
    rows = []
    for judgement in judgements(inputs, comparisons):
        finding = judgement.finding
        d = PUBLISHED_DECIMALS.get(finding.metric, 2)
        paper = (f"{fmt(paper_value(inputs, finding, judgement.better), d)} vs "
                 f"{fmt(paper_value(inputs, finding, judgement.worse), d)}")
        direction = "higher is better" if HIGHER_IS_BETTER[finding.metric] else "lower is better"
        rows.append([
            Cell(f"{finding.claim} ({METRIC_LABELS.get(finding.metric, finding.metric)}, {direction})"),
            Cell(f"{styles.label(judgement.better)} vs {styles.label(judgement.worse)}"),
            Cell(paper),
            Cell(_this_run_text(judgement)),
            Cell(_test_text(judgement.comparison)),
            Cell(judgement.verdict),
        ])
    notes = [DECISION_RULE,
             "Paper: the published 671-basin medians (Table 1) or correlations (Table 2) of A and B; this run's numbers "
             "are on our basins only."]
    return Table("evidence", "Paper findings tested on this run", EVIDENCE_COLUMNS,
                 [RowGroup(f"this benchmark: {inputs.provenance.get('profile', '?')} profile", rows)], notes)


def summary_lines(inputs: ReportInputs, comparisons: Comparisons) -> list[str]:
    """One sentence per finding and pair, e.g. for the top of the report."""
    lines = []
    for judgement in judgements(inputs, comparisons):
        pair = f"{styles.label(judgement.better)} vs {styles.label(judgement.worse)}"
        lines.append(f"{judgement.finding.claim} ({pair}): {judgement.verdict}"
                     + (f" ({judgement.reason})" if judgement.reason else f" — {_test_text(judgement.comparison)}."))
    return lines
