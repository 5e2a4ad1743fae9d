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
series
    The data as tensors (normalized inputs, forcing, observed flow), the periods as day
    indices, a minibatch's windows, the first non-finite basin-day of a simulation.
device
    ``train.device`` and ``train.dtype`` resolved.
solver_stats
    Newton statistics of ``simulate`` accumulated over batches.
checkpoint, resume
    The checkpoint format and the decision how a rerun starts; file names and folders are
    :mod:`benchmark.artifacts`.
trainer
    :func:`~benchmark.training.trainer.train_model` in phases (set-up, initialization or
    resume, epoch loop, checkpointing, logging): Adadelta, checkpoint every epoch, exact
    ``--resume``, TrainingError on a non-finite loss, MLflow tracking. Training never
    imports :mod:`benchmark.tuning`: ``--init-from`` and ``--hyperparams`` are resolved above
    it and passed down as weights (:class:`~benchmark.training.trainer.WeightSource`) and
    configuration.
evaluate
    :func:`~benchmark.training.evaluate.evaluate_model`: the test period with 730 warm-up
    days, ``predictions.nc``, ``metrics.json``, per-basin CSV and figures.
tracking_glue, mlflow_model
    The MLflow run of a (model, seed) and the logged MLflow model.
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
