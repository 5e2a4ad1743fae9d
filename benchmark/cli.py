"""The ``hbvbench`` command line: one console script, one subcommand per pipeline step.

Each subcommand lives in the module that implements it and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
``argparse.Namespace``, returning an exit code). Add a new subcommand by appending its
module to :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
    parser.add_argument("--params", default=None, help="path to params.yaml (default: the repository's)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


#: argparse destinations of second-level subcommands (``data fetch``, ``baseline lstm``)
_SUBCOMMAND_DESTS: tuple[str, ...] = ("data_command", "baseline")


def command_name(args: argparse.Namespace) -> str:
    """``train``, ``data fetch``, ``baseline lstm``: the command as the user typed it."""
    parts = [args.command, *(getattr(args, dest, None) for dest in _SUBCOMMAND_DESTS)]
    return " ".join(str(part) for part in parts if part)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hbvbench`` console script.

    Every failure a user can cause ends as one line ``hbvbench <command>: error: <message>``
    on stderr and exit code 2 (130 after Ctrl-C): the package's own errors
    (:class:`~benchmark.errors.HbvbenchError`, whose messages name the key, file or basin
    and what to do) and operating-system errors (a full disk, a permission, a missing
    folder), which name the file. Anything else is a bug and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    name = command_name(args)
    try:
        return int(args.func(args) or 0)
    except HbvbenchError as exc:
        print(f"hbvbench {name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hbvbench {name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hbvbench {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
