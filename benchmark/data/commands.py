"""CLI subcommands of the data layer: ``hbvbench prepare`` and ``hbvbench data fetch``."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.config import load_params


def _params(args: argparse.Namespace):
    overrides = {"profile": args.profile} if getattr(args, "profile", None) else None
    return load_params(args.params, overrides=overrides)


def run_prepare(args: argparse.Namespace) -> int:
    """``hbvbench prepare``: validate the raw folder and write the processed dataset."""
    import time

    from benchmark.data.prepare import prepare

    start = time.perf_counter()
    params = _params(args)
    out_dir = prepare(params)
    print(f"prepared profile {params.profile!r} ({params.data.forcing_product}) -> {out_dir} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """``hbvbench data fetch --dest DIR``: download the full CAMELS-US data set."""
    from benchmark.data import fetch

    raw_dir = fetch.fetch(Path(args.dest), fetch.CAMELS_US_ARCHIVES)
    print(fetch.params_hint(raw_dir))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare`` and ``data fetch`` to the ``hbvbench`` parser."""
    prepare = subparsers.add_parser(
        "prepare", help="validate the raw CAMELS folder and write camels.nc + manifest.json (DVC stage)"
    )
    prepare.add_argument("--profile", default=None, help="profile to use instead of params.yaml's `profile`")
    prepare.set_defaults(func=run_prepare)

    data = subparsers.add_parser("data", help="data management")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    fetch = data_commands.add_parser(
        "fetch", help="download the official CAMELS-US archives (671 basins), verify and extract them"
    )
    fetch.add_argument("--dest", required=True, help="folder to download and extract into")
    fetch.set_defaults(func=run_fetch)
