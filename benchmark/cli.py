"""The ``hbvbench`` command line: one console script, one subcommand per pipeline step.

Each subcommand lives in the module that implements it and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
``argparse.Namespace``, returning an exit code). Add a new subcommand by appending its
module to :data:`COMMAND_MODULES`.

Every command works on the repository found from the working directory (or ``--params`` /
``HBVBENCH_ROOT``; :mod:`benchmark.repository`) and runs torch with the thread budget of
:mod:`benchmark.threads`. ``--params`` and ``--threads`` go before or after the subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator

from benchmark import repository, threads
from benchmark.errors import ConfigError, HbvbenchError

COMMAND_MODULES: tuple[str, ...] = (
    "benchmark.data.commands",
    "benchmark.training.commands",
    "benchmark.tuning.commands",
    "benchmark.report.commands",
    "baselines.commands",
    "benchmark.perf",
    "benchmark.regression.commands",
    "benchmark.pub.commands",
    "benchmark.ui",
)

PARAMS_HELP = "path to params.yaml; its folder is the repository root (default: params.yaml of the repository " \
              "holding the working directory, or of $HBVBENCH_ROOT)"
THREADS_HELP = "torch CPU threads of this process (default: train.threads, else cores / workers when it is one " \
               "of several workers, else torch's default)"


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--params", default=default, metavar="FILE", help=PARAMS_HELP)
    parser.add_argument("--threads", type=int, default=default, metavar="N", help=THREADS_HELP)


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of runnable subcommands (those without subcommands of their own) under ``parser``."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
        return
    for group in groups:
        for sub in dict.fromkeys(group.choices.values()):  # aliases map to the same parser
            yield from _leaf_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="hbvbench", description=__doc__.splitlines()[0])
    _add_common_options(parser, None)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for leaf in _leaf_parsers(parser):
        if leaf is not parser:
            # SUPPRESS: given after the subcommand it wins, absent it leaves the top-level value
            _add_common_options(leaf, argparse.SUPPRESS)
    return parser


#: argparse destinations of second-level subcommands (``data fetch``, ``baseline lstm``)
_SUBCOMMAND_DESTS: tuple[str, ...] = ("data_command", "baseline", "pub_command")


def command_name(args: argparse.Namespace) -> str:
    """``train``, ``data fetch``, ``baseline lstm``: the command as the user typed it."""
    parts = [args.command, *(getattr(args, dest, None) for dest in _SUBCOMMAND_DESTS)]
    return " ".join(str(part) for part in parts if part)


def _configured_threads(params_file: str | None) -> int | None:
    """``train.threads`` of the params file, None when there is none to read.

    A missing or invalid ``params.yaml`` is not reported here: the commands that need it
    report it themselves, and the others (``data fetch``, ``perf --raw-dir``) do not need it.
    """
    from benchmark.config import load_params

    try:
        return load_params(params_file).train.threads
    except ConfigError:
        return None


def thread_budget(args: argparse.Namespace) -> threads.ThreadBudget:
    """This command's thread budget: ``--threads``, ``train.threads``, torchrun's local world size."""
    explicit = args.threads
    configured = None if explicit is not None else _configured_threads(args.params)
    return threads.choose(explicit, configured, threads.local_workers())


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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what parallel seeds re-run (benchmark.parallel_seeds)
    name = command_name(args)
    try:
        with repository.rooted_at(args.params), threads.applied(thread_budget(args)):
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
