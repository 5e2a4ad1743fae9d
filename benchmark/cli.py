"""The ``hbvbench`` command line: one console script, one subcommand per pipeline step.

Each subcommand lives in the module that implements it and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
``argparse.Namespace``, returning an exit code). Add a new subcommand by appending its
module to :data:`COMMAND_MODULES`.

Every command works on the repository found from the working directory (or ``--params`` /
``HBVBENCH_ROOT``; :mod:`benchmark.repository`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark import repository
from benchmark.errors import HbvbenchError

COMMAND_MODULES: tuple[str, ...] = (
    "benchmark.data.commands",
    "benchmark.training.commands",
    "benchmark.tuning.commands",
    "benchmark.report.commands",
    "baselines.commands",
    "benchmark.perf",
    "benchmark.regression.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="hbvbench", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="path to params.yaml; its folder is the repository root (default: params.yaml of the "
                             "repository holding the working directory, or of $HBVBENCH_ROOT)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hbvbench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with repository.rooted_at(args.params):
            return int(args.func(args) or 0)
    except HbvbenchError as exc:
        print(f"hbvbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hbvbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
