"""``hbvbench ui``: ``mlflow ui`` on this repository's runs, opened on the runs table.

Starts ``mlflow ui`` on the tracking store runs are logged to (``benchmark.tracking``: the
repository's ``mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise) and prints the
address of the training experiment's runs table, where every model's run (δHBV variants,
LSTM, SAC-SMA) shows its test NSE, KGE, FLV and FHV side by side. For a tracking server
(``MLFLOW_TRACKING_URI=http://...``) it only prints that address on the server.

MLflow 3.17's UI opens experiments on its GenAI pages unless the address asks for the model
training view (``workflowType=machine_learning``); the address printed here does, and names
the experiment's shared column view (``benchmark.tracking.runs_view_state``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys


def ui_command(backend_uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow ui`` command line for ``backend_uri``."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", backend_uri, "--host", host,
            "--port", str(port), "--workers", "1"]


def _run(args: argparse.Namespace) -> int:
    from benchmark import tracking
    from benchmark.config import load_params

    experiment = args.experiment or load_params(args.params).train.experiment
    uri = tracking.tracking_uri()
    experiment_id = tracking.ensure_experiment(experiment)
    if uri.startswith(("http://", "https://")):
        print(f"runs of {experiment!r}: {tracking.runs_table_url(uri, experiment_id)}")
        return 0
    print(f"runs of {experiment!r} ({uri}): {tracking.runs_table_url(f'http://{args.host}:{args.port}', experiment_id)}",
          flush=True)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # GenAI job runner: not used by our runs
    server = subprocess.Popen(ui_command(uri, args.host, args.port), env=env)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.send_signal(signal.SIGINT)
        return server.wait()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ui`` to the ``hbvbench`` command line."""
    parser = subparsers.add_parser("ui", help="mlflow ui on this repository's runs; prints the runs table's address")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--experiment", default=None, help="default: train.experiment of params.yaml")
    parser.set_defaults(func=_run)
