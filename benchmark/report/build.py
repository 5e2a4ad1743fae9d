"""Write the leaderboard: ``leaderboard.md`` (images in ``figures/``) and a self-contained
``leaderboard.html``, atomically (everything is written beside the target, then renamed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark import atomic
from benchmark.report import styles
from benchmark.report.budgets import budget_table
from benchmark.report.comparisons import Comparisons
from benchmark.report.evidence import evidence_table, paired_table
from benchmark.report.figures import ReportFigure, all_figures
from benchmark.report.html import render_page
from benchmark.report.inputs import ReportInputs
from benchmark.report.tables import Table, all_tables, benchmark_basins, to_markdown

TITLE = "hbvbench leaderboard"
INTRO = ("Differentiable HBV models (Song et al. 2024, HESS 28:3051, doi:10.5194/hess-28-3051-2024) and baselines "
         "on CAMELS-US, scored on the test period by hbvbench's metric code. Published rows are the paper's "
         "671-basin values and are never part of our medians.")


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written."""

    markdown: Path
    html: Path
    figures_dir: Path
    figures: tuple[Path, ...]


EVIDENCE_HEADING = "What the evidence says"
EVIDENCE_INTRO = ("Each finding of the paper that this benchmark can check, judged on this run's basins and seeds by "
                  "the decision rule below the table.")


def render_markdown(tables: list[Table], figures: list[ReportFigure], provenance: dict[str, str],
                    notes: list[str], figures_rel: str = "figures", evidence: Table | None = None) -> str:
    """The markdown leaderboard; figures referenced relative to the markdown file."""
    lines = [f"# {TITLE}", "", INTRO, "", "## Provenance", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in provenance.items()]
    if evidence is not None:
        lines += ["", f"## {EVIDENCE_HEADING}", "", EVIDENCE_INTRO, "", to_markdown(evidence)]
    lines += ["", "## Tables", ""]
    for table in tables:
        lines += [to_markdown(table), ""]
    lines += ["## Figures", ""]
    for figure in figures:
        lines += [f"![{figure.caption}]({figures_rel}/{figure.name}.png)", "", f"*{figure.caption}*", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _write_figures(folder: Path, figures: list[ReportFigure]) -> None:
    for figure in figures:
        (folder / f"{figure.name}.png").write_bytes(figure.png)


def build_report(inputs: ReportInputs, out_dir: Path) -> ReportPaths:
    """Render tables and figures and write the markdown and HTML leaderboards.

    Parameters
    ----------
    inputs
        From :func:`benchmark.report.inputs.collect_from_files` or ``collect_from_mlflow``.
    out_dir
        Folder for ``leaderboard.md``, ``leaderboard.html`` and ``figures/`` (created).

    Returns
    -------
    ReportPaths
        The written files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparisons = Comparisons(benchmark_basins(inputs))
    tables = all_tables(inputs, comparisons)
    extra = [paired_table(inputs, comparisons), budget_table(inputs)]
    tables = tables[:-1] + [t for t in extra if t is not None] + tables[-1:]  # cost last
    evidence = evidence_table(inputs, comparisons)
    figures, missing = all_figures(inputs)
    notes = list(inputs.notes) + missing
    colours = [(styles.label(m.name), styles.colour(m.name)) for m in sorted(inputs.models, key=lambda m: styles.sort_key(m.name))]
    figures_dir = out_dir / "figures"
    atomic.replace_dir(figures_dir, lambda folder: _write_figures(folder, figures))
    markdown = render_markdown(tables, figures, inputs.provenance, notes, evidence=evidence)
    page = render_page(title=TITLE, intro=INTRO, tables=tables, figures=figures, provenance=inputs.provenance,
                       colours=colours, notes=notes, evidence=(EVIDENCE_HEADING, EVIDENCE_INTRO, evidence))
    atomic.write_text(out_dir / "leaderboard.md", markdown)
    atomic.write_text(out_dir / "leaderboard.html", page)
    return ReportPaths(out_dir / "leaderboard.md", out_dir / "leaderboard.html", figures_dir,
                       tuple(figures_dir / f"{f.name}.png" for f in figures))
