"""The leaderboard: tables (Song et al. 2024 Tables 1, 2, A2 layouts) with bootstrap
confidence intervals and seed spread, paired tests of the paper's comparisons, the verdict on
each paper finding, training budgets, figures and provenance, rendered as
``reports/leaderboard.md`` and a self-contained ``reports/leaderboard.html``.

Modules: :mod:`~benchmark.report.inputs` (files / MLflow, seeds, ensembles),
:mod:`~benchmark.report.statistics` (bootstrap, Wilcoxon, Holm: numbers only),
:mod:`~benchmark.report.comparisons` (what a model's value is; model pairs),
:mod:`~benchmark.report.tables`, :mod:`~benchmark.report.evidence`,
:mod:`~benchmark.report.budgets`, :mod:`~benchmark.report.figures`, :mod:`~benchmark.report.build`.

Entry points: :func:`benchmark.report.inputs.collect_from_files` /
:func:`~benchmark.report.inputs.collect_from_mlflow` gather the inputs and
:func:`benchmark.report.build.build_report` writes the report; ``hbvbench report`` runs both.
"""
