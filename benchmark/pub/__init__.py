"""The ungauged-basin (PUB) spatial k-fold protocol (docs/training.md#ungauged-basins-pub).

The basins of a profile are split into fixed folds (``pub.folds.<profile>`` of params.yaml,
stratified by HUC-02 region, :mod:`benchmark.pub.folds`). For every fold and model of
``pub.models`` the model is trained on the basins of the other folds and tested on the
held-out fold's basins over the profile's test period (:mod:`benchmark.pub.runner`); each
basin is thus scored once, as a basin the model never saw. :mod:`benchmark.pub.report`
collects the held-out scores into ``reports/pub/leaderboard.md``.
"""
