"""Timing of the data layer: ``python -m benchmark.data.bench``.

Runs the ``prepare`` stage on every basin of the raw folder (the embedded 35 by default)
into a temporary folder, then loads the result with ``load_dataset``, and prints wall
times against the budgets of issue 2 (prepare <= 30 s, load <= 2 s). Exit status 1 if a
budget is exceeded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmark import repository
from benchmark.config import load_params
from benchmark.data.dataset import load_dataset
from benchmark.data.prepare import prepare

PREPARE_BUDGET_S = 30.0
LOAD_BUDGET_S = 2.0


def main(argv: list[str] | None = None) -> int:
    """Time prepare (all basins) and load_dataset; print the figures; 1 if over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=None, help="params.yaml to take data/profile from (default: the repository's)")
    parser.add_argument("--profile", default="default", help="profile whose periods are validated (basins forced to all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each step")
    args = parser.parse_args(argv)

    with repository.rooted_at(args.params):
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    params = load_params(args.params, overrides={"profile": args.profile})
    profile = params.active.model_copy(update={"basins": "all"})
    prepare_times, load_times = [], []
    with tempfile.TemporaryDirectory(prefix="hbvbench-bench-") as tmp:
        data = params.data.model_copy(update={"processed_dir": Path(tmp) / "processed"})
        params = params.model_copy(update={"data": data, "profiles": {**params.profiles, args.profile: profile}})
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = prepare(params)
            prepare_times.append(time.perf_counter() - start)
        for _ in range(args.repeats):
            start = time.perf_counter()
            ds = load_dataset(out)
            load_times.append(time.perf_counter() - start)
        size_mb = (out / "camels.nc").stat().st_size / 1e6
    n_basins, n_days = ds.sizes["basin"], ds.sizes["date"]
    prepare_s, load_s = statistics.median(prepare_times), statistics.median(load_times)
    print(f"raw folder: {params.data.raw_dir} ({params.data.forcing_product}), {n_basins} basins x {n_days} days, "
          f"camels.nc {size_mb:.1f} MB")
    print(f"prepare:      median {prepare_s:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in prepare_times)})"
          f"  budget {PREPARE_BUDGET_S:.0f} s  {'OK' if prepare_s <= PREPARE_BUDGET_S else 'OVER'}")
    print(f"load_dataset: median {load_s:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in load_times)})"
          f"  budget {LOAD_BUDGET_S:.0f} s  {'OK' if load_s <= LOAD_BUDGET_S else 'OVER'}")
    return 0 if prepare_s <= PREPARE_BUDGET_S and load_s <= LOAD_BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
