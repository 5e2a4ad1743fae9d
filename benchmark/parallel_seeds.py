"""Run one command per seed as parallel processes: ``--all-seeds --workers N``.

``hbvbench train/evaluate/baseline lstm --all-seeds`` runs every seed of the profile. One seed
of a differentiable model is dispatch-bound (many tiny tensor operations per simulated day),
so a second torch thread barely speeds it up, while a second process running another seed
doubles the throughput of a 2-core machine. With ``--workers N`` (N > 1) the command is
started once per seed as a child process (``python -m benchmark.cli ... --seed S``), at most N
at a time, each with its share of the cores as torch threads (:mod:`benchmark.threads`:
``--threads`` and ``train.threads`` still win). Children run exactly the single-seed command
(its lock, resume, MLflow run), so a parallel run writes what a sequential one writes; their
output lines are printed prefixed with ``[seed S]``. Seeds may have more workers than the
machine has cores: the processes then share the cores by time slicing, which still finishes
``n`` seeds sooner than rounds of ``cores`` seeds when ``n`` is not a multiple of ``cores``.

The command line a child runs is this process's own, with ``--all-seeds`` replaced by
``--seed S`` and ``--workers`` removed, so every other option reaches every seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from benchmark import threads
from benchmark.errors import ConfigError, HbvbenchError

WORKERS_HELP = ("with --all-seeds: seeds run as parallel processes, at most N at a time, sharing the "
                "cores as torch threads (default: every seed at once, at most two per core; 1: one "
                "after the other in this process)")
_print_lock = threading.Lock()


def default_workers(n_seeds: int, cores: int | None = None) -> int:
    """Every seed at once, but no more than two processes per core."""
    cores = cores if cores is not None else threads.available_cores()
    return max(1, min(n_seeds, 2 * cores))


def child_argv(argv: Sequence[str], seed: int, thread_count: int | None) -> list[str]:
    """``argv`` (this process's arguments) for one seed: ``--all-seeds`` -> ``--seed S``, no ``--workers``.

    ``--threads`` is added (in front of the subcommand) when ``thread_count`` is given and the
    command line has none.
    """
    out: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--all-seeds":
            out += ["--seed", str(seed)]
        elif token == "--workers":
            skip = True
        elif token.startswith("--workers="):
            continue
        else:
            out.append(token)
    has_threads = any(t == "--threads" or t.startswith("--threads=") for t in out)
    if thread_count is not None and not has_threads:
        out = ["--threads", str(thread_count), *out]
    return out


def _run_one(argv: list[str], seed: int) -> tuple[int, str]:
    """Run one child; print its lines prefixed; return (exit code, its last line)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its lines as they come, not at its exit
    )
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line.strip():
            last = line
        with _print_lock:
            print(f"[seed {seed}] {line}", flush=True)
    return proc.wait(), last


def run(argv: Sequence[str], seeds: Sequence[int], workers: int, thread_count: int | None) -> None:
    """Run this process's command once per seed, ``workers`` processes at a time.

    Parameters
    ----------
    argv
        This process's command line (without the program name), holding ``--all-seeds``.
    seeds
        The profile's seeds.
    workers
        Processes at a time (>= 1).
    thread_count
        Torch threads per child (None: the child chooses by its own rules).

    Raises
    ------
    HbvbenchError
        Naming every seed whose process failed (each has printed its own error); the other
        seeds still finish.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {seed: pool.submit(_run_one, child_argv(argv, seed, thread_count), seed) for seed in seeds}
        results = {seed: future.result() for seed, future in futures.items()}
    failed = [f"seed {seed} (exit {code}: {last})" for seed, (code, last) in results.items() if code != 0]
    if failed:
        raise HbvbenchError(f"{len(failed)} of {len(seeds)} seeds failed: " + "; ".join(failed))


def run_if_parallel(argv: Sequence[str], seeds: Sequence[int], workers: int | None,
                    explicit_threads: int | None, configured_threads: int | None) -> bool:
    """``--all-seeds``: run the seeds as child processes when more than one worker applies.

    Parameters
    ----------
    argv
        This process's command line (holding ``--all-seeds``).
    seeds
        The profile's seeds.
    workers
        ``--workers`` (None: :func:`default_workers`).
    explicit_threads, configured_threads
        ``--threads`` and ``train.threads``: they win over the automatic share of the cores.

    Returns
    -------
    bool
        True when the seeds ran here as child processes; False when the caller should run
        them itself, one after the other (one seed, or one worker).

    Raises
    ------
    ConfigError
        ``--workers`` below 1.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    workers = workers if workers is not None else default_workers(len(seeds))
    if len(seeds) < 2 or workers == 1:
        return False
    share = threads.choose(explicit_threads, configured_threads, min(workers, len(seeds))).threads
    run(argv, seeds, workers, share)
    return True
