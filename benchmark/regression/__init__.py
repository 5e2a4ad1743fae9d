"""CI regression checks: every model variant on a fixed 4-basin subset against a committed baseline.

``hbvbench regress`` trains and evaluates the differentiable HBV variants and the
neuralhydrology LSTM on the ``ci`` profile with its fixed seed (:mod:`.runner`), measures the
adjoint / sequential training-step cost ratio with :mod:`benchmark.perf`, and compares every
median metric and the ratio with ``reports/regression_baseline.json`` under the per-metric
tolerances stored in that file (:mod:`.baseline`). A move beyond tolerance in the bad
direction is a regression (exit code 1); one in the good direction is flagged as an
improvement. ``hbvbench regress --update`` rewrites the baseline's values deliberately.
"""
