"""Training and evaluation of the differentiable HBV variants (Song et al. 2024, Section 2.2.6).

Modules
-------
normalization
    Input statistics from the training period (saved as ``normalization.json``).
network
    The parameterization LSTM g_w and :class:`~benchmark.training.network.DifferentiableHBV`.
loss
    The RMSE-combined loss of eqs. 35-36 over non-missing observations.
sampler
    Seeded minibatches of basins x windows (with warm-up) and the iterations-per-epoch rule.
trainer
    :func:`~benchmark.training.trainer.train_model`: Adadelta, checkpoint every epoch,
    exact ``--resume``, TrainingError on a non-finite loss, MLflow tracking.
evaluate
    :func:`~benchmark.training.evaluate.evaluate_model`: the test period with 730 warm-up
    days, ``predictions.nc``, ``metrics.json``, per-basin CSV and figures.
commands
    ``hbvbench train --model NAME [--resume] [--seed S] [--epochs N] [--init-from RUN]`` and
    ``hbvbench evaluate --model NAME``.

Profiles (``params.yaml``)
--------------------------
``ci``: 4 basins, tiny network, 2 epochs of 2 minibatches - a regression check.
``default``: the 35 embedded basins on the paper's periods with a budget that fits a 2-core CPU.
``paper``: 671 basins, hidden 256, nmul 16, batch 100 basins x 365 days (+365 warm-up),
50 epochs - a GPU job: point ``data.raw_dir`` at the full CAMELS-US download, then
``dvc exp run -S profile=paper -S train.device=cuda`` (or ``hbvbench train --profile paper
--model dhbv_adj`` per model). ``-S train.epochs=N`` overrides any profile's epochs.
"""
