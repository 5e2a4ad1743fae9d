"""The leaderboard: tables (Song et al. 2024 Tables 1, 2, A2 layouts), figures, provenance,
rendered as ``reports/leaderboard.md`` and a self-contained ``reports/leaderboard.html``.

Entry points: :func:`benchmark.report.inputs.collect_from_files` /
:func:`~benchmark.report.inputs.collect_from_mlflow` gather the inputs and
:func:`benchmark.report.build.build_report` writes the report; ``hbvbench report`` runs both.
"""
