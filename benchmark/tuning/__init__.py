"""Optuna hyperparameter studies tracked in MLflow, and the explorer -> fine-tune workflow.

``hbvbench tune --model dhbv --trials 20`` searches the space declared in ``params.yaml``
(``tune.search_space``) for the best validation score (median KGE by default) of a model
trained on the profile's training period minus its last ``tune.validation_years`` years,
which form the validation period (never the test period).

Modules, one concept each:

* :mod:`~benchmark.tuning.space` -- the search space: sampling a trial's hyperparameters
  (applying hyperparameters to a :class:`~benchmark.config.Params` is
  :mod:`benchmark.hyperparams`, below training, which ``--hyperparams`` also uses);
* :mod:`~benchmark.tuning.objective` -- one trial: train, score the validation period every
  epoch (pruning), log a nested MLflow run, keep the network;
* :mod:`~benchmark.tuning.study` -- storage, study creation/continuation, dead-trial
  clean-up, parallel workers;
* :mod:`~benchmark.tuning.summary` -- best parameters file and the plots on the parent run;
* :mod:`~benchmark.tuning.init_from` -- ``train --init-from <path | run id | study>``:
  :func:`~benchmark.tuning.init_from.train_from` resolves the source, applies its
  hyperparameters and hands its weights to training;
* :mod:`~benchmark.tuning.commands` -- the ``hbvbench tune`` command line.
"""
