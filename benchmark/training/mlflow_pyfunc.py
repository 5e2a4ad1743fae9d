"""The code of the MLflow model every training logs (models-from-code: MLflow runs this file).

Loading rebuilds the network from the model's artifacts (plain weights, normalization, the
JSON description; see :mod:`benchmark.training.mlflow_model`); nothing is unpickled.
``predict(dataset)`` takes a prepared dataset (``benchmark.data.dataset.load_dataset``) and
returns the routed streamflow in mm/day, one column per basin, one row per day.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class TrainedHbvModel(PythonModel):
    """A trained δHBV variant behind MLflow's ``python_function`` interface.

    The package is imported when the model is loaded or used, not when MLflow runs this file
    to find the model (logging runs it too): the file stays loadable by itself.
    """

    def load_context(self, context: Any) -> None:
        from benchmark.training.mlflow_model import load_saved

        self.trained, self.params = load_saved(Path(context.artifacts["config"]).parent)

    # no type hints: MLflow would validate the input by them, and an xarray.Dataset is none of its types
    def predict(self, context, model_input, params=None):  # noqa: ANN001
        """Routed streamflow (mm/day) of every day and basin of ``model_input``, a prepared dataset."""
        from benchmark.training.mlflow_model import simulate

        return simulate(self.trained, self.params, model_input)


mlflow.models.set_model(TrainedHbvModel())
