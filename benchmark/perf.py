"""``hbvbench perf``: training-step time and peak memory of every time scheme (the paper's Table A2).

For each scheme x gradient method of Table A2 -- sequential (hand-written backward), explicit
Euler 1 d / 4 h / 1 h, RK4 1 d (autograd), implicit backward Euler with the adjoint, and implicit
with autograd unrolled through Newton -- and for every other registry model (its own scheme and
gradient: the improved δHBV variants, δGR4J, δGR4J.adj), one *training step* is timed: parameters from leaf tensors (as a
network's sigmoid outputs would be), :func:`benchmark.models.simulate` over B basins x T days
x nmul components with gamma routing, a loss on the routed flow, and ``backward()``.

Forcing is real: the embedded CAMELS-US basins (Daymet P and mean T, Hargreaves PET as in
docs/data.md#hargreaves-pet) from 1980-10-01, tiled to B basins. Parameters are drawn uniformly in
[0.05, 0.95] of their ranges (seeded); dynamic parameters vary per day as the registry says;
storages start at 0.001 mm. The loss is the mean square of the routed flow (its gradient
reaches every day of every basin, as a streamflow RMSE's does).

Every variant runs in its own spawned process, so that its peak memory (CPU: peak resident
set size over the steps minus that before the first one; CUDA: ``max_memory_allocated``) is
its own. After the timed steps, one more step over the first OPS_DAYS days runs under the torch
profiler, which counts its aten operations (per simulated day: a machine-independent proxy for dispatch and kernel-launch cost).
Outputs: ``perf.json`` and ``perf.md`` in ``--out`` (default ``reports/perf/``), the
table on stdout, and a last line ``ratio <x>``: median adjoint step time / median sequential
step time, both measured in this run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("reports/perf")
START_DATE = "1980-10-01"
WARMUP_STEPS = 3
"""Untimed steps before the timed ones: on CPU the first two steps of a process run up to twice
as slow as the later ones (memory first touched), more so for the sequential scheme."""
OPS_DAYS = 120
"""Days of the profiled step that counts aten operations (the first ones of the sequence): the
profiler keeps every event, and a 730-day step of unrolled autograd through Newton at B = 100
would hold over 20 GB of them."""
INITIAL_STORAGE_MM = 0.001
"""Every storage starts at 0.001 mm, the authors' default (an empty soil gives the sequential
scheme's (SM/FC)^BETA a 0 * log 0 gradient)."""


@dataclass(frozen=True)
class Variant:
    """One row of the table: a registry model, with its own gradient method or another one.

    Label, scheme and time step come from the model's registry row.
    """

    key: str
    model: str
    other_gradient: str | None = None

    @property
    def spec(self) -> Any:
        from benchmark.models.registry import get_model_spec

        return get_model_spec(self.model)

    @property
    def gradient(self) -> str:
        return self.other_gradient or self.spec.gradient

    def row(self) -> dict[str, str]:
        """The fields a result row carries (``hbvbench report`` reads them from perf.json)."""
        from benchmark.solvers.base import GRADIENTS

        spec = self.spec
        scheme_text = f"{spec.time_scheme().description}, {GRADIENTS[self.gradient].description}"
        return {"key": self.key, "model": self.model, "gradient": self.gradient, "label": spec.label,
                "scheme_text": scheme_text, "time_step": spec.time_step}


TABLE_A2: tuple[Variant, ...] = (
    Variant("sequential", "dhbv"),
    Variant("euler1d", "dhbv_euler1d"),
    Variant("euler4h", "dhbv_euler4h"),
    Variant("euler1h", "dhbv_euler1h"),
    Variant("rk4", "dhbv_rk4"),
    Variant("adjoint", "dhbv_adj"),
    Variant("implicit_autograd", "dhbv_adj", other_gradient="autograd"),
)
"""The rows of the paper's Table A2 (``sequential`` and ``adjoint`` give the ratio)."""


PAIRS = (("dhbv_adj_cr", "dhbv_cr"), ("gr4j_adj", "gr4j"))
"""Implicit/sequential pairs besides Table A2's whose step-time ratio the table states."""


def variants() -> tuple[Variant, ...]:
    """Table A2's rows, then one row per other registry model, keyed by its name."""
    from benchmark.models.registry import MODEL_NAMES

    measured = {v.model for v in TABLE_A2}
    return TABLE_A2 + tuple(Variant(name, name) for name in MODEL_NAMES if name not in measured)


# ----------------------------------------------------------------------------- inputs


def _real_forcing(raw_dir: Path, n_basins: int, n_days: int):
    """Forcing ``[T, B, 3]`` (P mm/day, mean T degC, PET mm/day) from the embedded basins, tiled to B."""
    import numpy as np
    import pandas as pd
    import torch

    from benchmark.data.camels import forcing_path, list_basins, read_forcing
    from benchmark.data.pet import hargreaves_pet_series
    from benchmark.errors import DataError

    gauges = list_basins(raw_dir)
    if not gauges:
        raise DataError(f"no basin forcing files under {raw_dir}")
    start = pd.Timestamp(START_DATE)
    columns = []
    for gauge in gauges[:n_basins]:
        bf = read_forcing(forcing_path(raw_dir, gauge))
        data = bf.data.loc[start:]
        if len(data) < n_days:
            raise DataError(f"basin {gauge}: only {len(data)} days from {START_DATE} in {raw_dir}; "
                            f"--days asks for {n_days}")
        data = data.iloc[:n_days]
        pet = hargreaves_pet_series(data, bf.latitude).to_numpy()
        tmean = 0.5 * (data["tmax"].to_numpy() + data["tmin"].to_numpy())
        columns.append(np.stack([data["prcp"].to_numpy(), tmean, pet], axis=-1))
    block = torch.tensor(np.stack(columns, axis=1))  # [T, n_gauges, 3]
    reps = -(-n_basins // block.shape[1])
    return block.repeat(1, reps, 1)[:, :n_basins].contiguous(), gauges


def _leaves(spec, n_days: int, n_basins: int, nmul: int, dtype, device, seed: int):
    """Leaf tensors in [0.05, 0.95] standing in for a network's outputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_static, n_dynamic = len(spec.static_parameters), len(spec.dynamic_parameters)

    def uniform(*shape: int):
        u = 0.05 + 0.9 * torch.rand(shape, generator=g, dtype=torch.float64)
        return u.to(dtype=dtype, device=device).requires_grad_()

    return uniform(n_basins, nmul, n_static), uniform(n_days, n_basins, nmul, n_dynamic), uniform(n_basins, 2)


def _physical(spec, static_u, dynamic_u, routing_u):
    """Physical parameters and routing (a, b) from the leaves (differentiable; no routing for a
    structure with its own)."""
    from benchmark.models.parameters import ROUTING_PARAMETERS

    table = spec.structure.parameters
    params = {name: table[name].scale(static_u[..., i]) for i, name in enumerate(spec.static_parameters)}
    params.update({name: table[name].scale(dynamic_u[..., i]) for i, name in enumerate(spec.dynamic_parameters)})
    if static_u.shape[1] == 1:  # nmul == 1: simulate takes [B] / [T, B] without a component axis
        params = {name: value.squeeze(-1) for name, value in params.items()}
    if not spec.structure.routed:
        return params, None
    a = ROUTING_PARAMETERS["route_a"].scale(routing_u[:, 0])
    b = ROUTING_PARAMETERS["route_b"].scale(routing_u[:, 1])
    return params, (a, b)


# ----------------------------------------------------------------------------- one variant (child process)


def _rss_mb() -> float:
    """Current resident set size (MB) from /proc (Linux); 0 where unavailable."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def count_aten_ops(function: Any) -> int:
    """aten operations dispatched while ``function()`` runs (torch profiler, CPU activity).

    Every ``aten::`` event counts, nested ones included (a composite operation and the
    operations it calls): the profiler's own count, a machine-independent proxy for the
    dispatch cost of a CPU run and the kernel launches of a GPU run.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        function()
    return sum(1 for event in prof.profiler.kineto_results.events() if event.name().startswith("aten::"))


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time ``job["repeats"]`` training steps of one variant (after WARMUP_STEPS untimed ones)."""
    import torch

    from benchmark.models.registry import get_model_spec
    from benchmark.models.simulate import simulate

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    dtype = getattr(torch, job["dtype"])
    spec = get_model_spec(job["model"])
    forcing, _ = _real_forcing(Path(job["raw_dir"]), job["basins"], job["days"])
    forcing = forcing.to(dtype=dtype, device=device)
    leaves = _leaves(spec, job["days"], job["basins"], job["nmul"], dtype, device, job["seed"])
    options = {**spec.simulate_options(), "gradient": job["gradient"], "nmul": job["nmul"],
               "initial_state": INITIAL_STORAGE_MM}
    if job["compile"]:
        # fused daily kernels where the scheme has them (benchmark/solvers/fused.py), else autograd
        # through the compiled daily update
        options["solver_options"] = {"compile": True}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(days: int | None = None) -> tuple[float, float, float, dict]:
        for leaf in leaves:
            leaf.grad = None
        sync()
        c0 = time.process_time()
        t0 = time.perf_counter()
        static_u, dynamic_u, routing_u = leaves
        params, routing = _physical(spec, static_u, dynamic_u[:days], routing_u)
        out = simulate(forcing[:days], params, routing=routing, **options)
        loss = out["Q"].square().mean()
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        if not all(leaf.grad is not None and bool(torch.isfinite(leaf.grad).all()) for leaf in leaves[:2]):
            raise RuntimeError(f"{job['key']}: non-finite or missing gradient")
        return t1 - t0, t2 - t1, cpu, out["stats"]

    rss_before = _rss_mb()  # inputs are built; the peak over the steps is measured from here
    for _ in range(WARMUP_STEPS):  # allocator, caches (and compilation when --compile)
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    forward, backward, cpu, stats = [], [], [], {}
    for _ in range(job["repeats"]):
        f, b, c, stats = step()
        forward.append(f)
        backward.append(b)
        cpu.append(c)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        memory_kind = "CUDA max_memory_allocated"
    else:
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before, 0.0)
        memory_kind = "peak RSS increase"
    # after the timed steps and the memory reading: the profiler slows the step and keeps its events
    ops_days = min(job["days"], OPS_DAYS)
    step(ops_days)  # a warm step of this length first: with --compile, its new shapes compile here
    aten_ops = count_aten_ops(lambda: step(ops_days))
    totals = [f + b for f, b in zip(forward, backward)]
    return {
        "key": job["key"],
        "step_s": statistics.median(totals),
        "step_s_all": totals,
        "cpu_s": statistics.median(cpu),
        "cpu_s_all": cpu,
        "forward_s": statistics.median(forward),
        "backward_s": statistics.median(backward),
        "peak_memory_MB": peak_mb,
        "memory_kind": memory_kind,
        "aten_ops_per_day": aten_ops / ops_days,
        "solver_stats": {k: (v.item() if hasattr(v, "item") else v) for k, v in stats.items()
                         if k != "iterations_hist" and not (hasattr(v, "numel") and v.numel() != 1)}
                        | ({"iterations_hist": stats["iterations_hist"]} if "iterations_hist" in stats else {}),
    }


# ----------------------------------------------------------------------------- table and files


def _published() -> dict[str, dict]:
    try:
        from baselines.published import load_published

        table = load_published("tableA2")
    except Exception:  # the published table is a courtesy column; perf works without it
        return {}
    return {row["model"]: row for row in table.to_dict("records")}


def _markdown(rows: list[dict], config: dict, ratio: float | None) -> str:
    published = _published()
    rounds = int(config.get("rounds", 1))
    rounds_text = f"(medians over {rounds} interleaved rounds) " if rounds > 1 else ""
    lines = [
        "# Training-step cost per batch (Table A2 layout)",
        "",
        f"B = {config['basins']} basins, T = {config['days']} days, nmul = {config['nmul']}, "
        f"{config['dtype']}, device {config['device']} ({config['device_name']}), "
        f"{config['threads']} threads, compile {config['compile']}, median of {config['repeats']} steps "
        f"{rounds_text}after {WARMUP_STEPS} warm-up steps. Paper: Song et al. (2024) Table A2, Tesla V100.",
        "",
        "| Model | Numerical scheme | Time step | Memory usage per batch (MB) | Computational time per batch (s) "
        "| forward (s) | backward (s) | aten ops per simulated day | Paper memory (MB) | Paper time (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        paper = published.get(row["model"], {}) if row["gradient"] != "autograd" or row["model"] != "dhbv_adj" else {}
        pm = paper.get("memory_MB")
        pt = paper.get("time_per_batch_s")
        lines.append(
            f"| {row['label']} | {row['scheme_text']} | {row['time_step']} | {row['peak_memory_MB']:.0f} "
            f"| {row['step_s']:.3f} | {row['forward_s']:.3f} | {row['backward_s']:.3f} | {row['aten_ops_per_day']:.0f} "
            f"| {'' if pm is None or pm != pm else f'{pm:.0f}'} | {'' if pt is None or pt != pt else f'{pt:g}'} |"
        )
    lines += ["", f"Memory: {rows[0]['memory_kind'] if rows else ''}. aten ops per simulated day: torch profiler "
              f"events of one training step over the first min(T, {OPS_DAYS}) days (forward and backward, nested operations "
              "included) divided by its days."]
    if ratio is not None:
        lines += ["", f"Adjoint / sequential step time: **{ratio:.2f}** (paper: 19.5 s / 1.8 s = 10.8)."]
    by_model = {row["model"]: row for row in rows if row["gradient"] != "autograd" or row["model"] != "dhbv_adj"}
    for implicit, sequential in PAIRS:
        if implicit in by_model and sequential in by_model:
            a, b = by_model[implicit], by_model[sequential]
            lines += ["", f"{a['label']} / {b['label']} step time: {a['step_s'] / b['step_s']:.2f}."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command


def perf_config(raw_dir: Path, *, basins: int, days: int, nmul: int, dtype: str = "float32", device: str = "cpu",
                threads: int = 0, repeats: int = 3, rounds: int = 1, compile_: bool = False, seed: int = 0
                ) -> dict[str, Any]:
    """The measurement setting recorded with every result (``threads`` 0: torch's default)."""
    import torch

    return {
        "basins": basins, "days": days, "nmul": nmul, "dtype": dtype, "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda")
        else (platform.processor() or platform.machine()),
        "threads": threads or torch.get_num_threads(), "repeats": repeats, "rounds": rounds, "compile": compile_, "seed": seed,
        "raw_dir": str(raw_dir), "start": START_DATE, "torch": torch.__version__,
    }


def measure_variants(config: dict[str, Any], keys: list[str] | tuple[str, ...]) -> tuple[list[dict], float | None]:
    """Time the variants ``keys`` (each in its own spawned process) under ``config``.

    ``config`` holds ``basins``, ``days``, ``nmul``, ``dtype``, ``device``, ``threads``,
    ``repeats``, ``rounds``, ``compile``, ``seed`` and ``raw_dir``. With ``rounds > 1`` every variant is
    measured once per round, the variants interleaved, so that a slow spell of a shared
    machine hits all of them alike; a row's times are then the medians over the rounds.

    Returns
    -------
    rows
        One per variant: the variant's fields and its timings, memory and solver stats.
    ratio
        Median over the rounds of (adjoint step time / sequential step time), both measured
        in the same round; None unless both variants were measured.
    """
    ctx = multiprocessing.get_context("spawn")
    rounds = int(config.get("rounds", 1))
    selected = [v for v in variants() if v.key in keys]
    measured: dict[str, list[dict]] = {v.key: [] for v in selected}
    for round_ in range(rounds):
        for variant in selected:
            job = {**config, "key": variant.key, "model": variant.model, "gradient": variant.gradient}
            label = f" round {round_ + 1}/{rounds}" if rounds > 1 else ""
            print(f"perf: {variant.key} ({variant.model}, {variant.gradient}){label} ...", flush=True)
            # a worker that dies (e.g. killed for memory) raises BrokenProcessPool instead of hanging
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                result = pool.submit(_measure, job).result()
            measured[variant.key].append(result)
            print(f"perf: {variant.key}: {result['step_s']:.3f} s/step (forward {result['forward_s']:.3f}, "
                  f"backward {result['backward_s']:.3f}), {result['peak_memory_MB']:.0f} MB", flush=True)
    rows = [{**v.row(), **_combine_rounds(measured[v.key])} for v in selected]
    ratio = None
    if measured.get("adjoint") and measured.get("sequential"):
        ratio = statistics.median(a["step_s"] / s["step_s"] for a, s in zip(measured["adjoint"], measured["sequential"]))
    return rows, ratio


def _combine_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's result over several rounds: median times, largest memory, all step times."""
    if len(results) == 1:
        return results[0]
    out = dict(results[-1])
    for key in ("step_s", "forward_s", "backward_s"):
        out[key] = statistics.median(r[key] for r in results)
    out["peak_memory_MB"] = max(r["peak_memory_MB"] for r in results)
    out["step_s_all"] = [t for r in results for t in r["step_s_all"]]
    out["rounds"] = len(results)
    return out


def run_perf(args: argparse.Namespace) -> int:
    """Measure every requested variant, write ``perf.json`` / ``perf.md``, print ``ratio <x>`` last."""
    import torch

    from benchmark.config import load_params, resolve_path
    from benchmark.errors import ConfigError

    for name in ("basins", "days", "nmul", "repeats", "rounds"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is available here")
    known = [v.key for v in variants()]
    requested = args.variants or known
    unknown = [k for k in requested if k not in known]
    if unknown:
        raise ConfigError(f"--variants: unknown {unknown}; known: {', '.join(known)}")
    raw_dir = args.raw_dir
    if raw_dir is None:
        raw_dir = resolve_path(load_params(args.params).data.raw_dir)
    config = perf_config(raw_dir, basins=args.basins, days=args.days, nmul=args.nmul, dtype=args.dtype,
                         device=args.device, threads=args.threads or 0, repeats=args.repeats, rounds=args.rounds,
                         compile_=bool(args.compile),
                         seed=args.seed)
    rows, ratio = measure_variants(config, requested)
    out_dir = Path(args.out)
    table = _markdown(rows, config, ratio)
    from benchmark import atomic

    document = {"config": config, "results": rows, "ratio": ratio}
    atomic.write_text(out_dir / "perf.json", json.dumps(document, indent=2, default=str) + "\n")
    atomic.write_text(out_dir / "perf.md", table)
    print(table)
    print(f"wrote {out_dir / 'perf.json'} and {out_dir / 'perf.md'}")
    print(f"ratio {ratio:.3f}" if ratio is not None else "ratio n/a (needs both 'sequential' and 'adjoint')")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``perf`` subcommand."""
    parser = subparsers.add_parser(
        "perf", help="time a training step of every time scheme (Table A2 layout)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--basins", type=int, default=100, help="basins per batch (default 100)")
    parser.add_argument("--days", type=int, default=730, help="days per sequence (default 730)")
    parser.add_argument("--nmul", type=int, default=16, help="parallel components per basin (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant after the warm-up steps (default 3)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, interleaved; the ratio is the median "
                             "of the per-round ratios (default 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the per-day steps of every scheme")
    parser.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                        help=f"subset of the Table A2 rows ({', '.join(v.key for v in TABLE_A2)}) and the other "
                             "registry models by name (default: all)")
    parser.add_argument("--raw-dir", type=Path, default=None, help="CAMELS-US folder (default: params.yaml data.raw_dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default reports/perf/)")
    parser.set_defaults(func=run_perf)
